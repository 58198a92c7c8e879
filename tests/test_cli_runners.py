"""The study runners of ``tedepr run`` (`tedepr.cli.runners`), in process: the JAX runner builds,
compresses, trains and times the Flax NNX zoo model (the JAX zoo's default), and its records have
the torch runner's keys and kept counts for the same spec."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("jax")
nnx = pytest.importorskip("flax.nnx")
pytestmark = [pytest.mark.torch, pytest.mark.jax]

import jax  # noqa: E402
import numpy as np  # noqa: E402

import tedepr  # noqa: E402
from tedepr.backends.jax import Model, flax_zoo  # noqa: E402
from tedepr.cli import runners  # noqa: E402
from tedepr.cli.data import prepare_data  # noqa: E402
from tedepr.pruning.problem import canonical_name  # noqa: E402

RECIPE = {
    "optimizer": "adam",
    "lr": 0.003,
    "momentum": 0.9,
    "weight_decay": 0.0,
    "schedule": "cosine",
    "epochs": 1,
    "batch_size": 128,
}


@pytest.fixture(scope="module")
def data():
    return prepare_data("mnist10k", subset=300)


def _spec(backend, method="snip", sparsity=0.99, model="lenet300_100", **options):
    return {
        "method": method,
        "sparsity": sparsity,
        "seed": 0,
        "model": model,
        "model_options": options,
        "format": "tt",
        "backend": backend,
        "device": "cpu",
        "recipe": RECIPE,
    }


@pytest.fixture
def fitted(monkeypatch):
    """The models each runner class hands to ``fit``, by runner class name."""
    seen = []
    for cls in (runners.JaxRunner, runners.JaxModelRunner):
        original = cls.fit

        def spy(self, model, params, train, _original=original, _name=cls.__name__, **kw):
            seen.append((_name, model))
            return _original(self, model, params, train, **kw)

        monkeypatch.setattr(cls, "fit", spy)
    monkeypatch.setattr(runners, "_RUNNER_CACHE", {})
    return seen


def test_jax_runner_builds_the_flax_model_with_the_model_runners_weights(data):
    spec = _spec("jax")
    model, params = runners.JaxRunner().build(spec, data, 3)
    assert isinstance(model, nnx.Module) and params is None
    # rngs=seed: the Flax zoo fills the module with the Model's init(jax.random.key(seed))
    pure, init = runners.JaxModelRunner().build(spec, data, 3)
    assert isinstance(pure, Model)
    np.testing.assert_array_equal(model.hidden[0].kernel[...], init["hidden/0"]["weight"])
    np.testing.assert_array_equal(model.classifier.kernel[...], init["classifier"]["weight"])
    other, _ = runners.JaxRunner().build(spec, data, 4)
    assert not np.array_equal(other.hidden[0].kernel[...], model.hidden[0].kernel[...])


@pytest.mark.parametrize("method, sparsity", [("snip", 0.99), ("dense", None)])
def test_jax_record_is_the_torch_record_on_a_flax_model(data, fitted, method, sparsity):
    rec = {b: runners.run_one(_spec(b, method, sparsity), data) for b in ("torch", "jax")}
    torch_rec, jax_rec = rec["torch"], rec["jax"]
    assert torch_rec["status"] == jax_rec["status"] == "ok", (torch_rec, jax_rec)
    assert set(jax_rec) == set(torch_rec)
    assert set(jax_rec["report"]) == set(torch_rec["report"])
    budget = 266_200 if method == "dense" else round(0.01 * 266_200)
    assert jax_rec["kept"] == torch_rec["kept"] == budget
    assert jax_rec["dense_weights"] == torch_rec["dense_weights"] == 266_200
    rows = {b: [(canonical_name(r["name"]), r["kind"]) for r in rec[b]["report"]["layers"]]
            for b in rec}  # fmt: skip
    assert rows["jax"] == rows["torch"]
    # the JAX runner trained the NNX model compress returned (its masks in Mask variables)
    ((name, model),) = fitted
    assert name == "JaxRunner" and isinstance(model, nnx.Module)
    masks = nnx.state(model, tedepr.backends.jax.nnx.Mask)
    assert bool(jax.tree.leaves(masks)) == (method != "dense")
    hist = jax_rec["history"]
    assert len(hist) == 1 and np.isfinite(hist[0]["train_loss"])
    assert 0.0 < jax_rec["latency_seconds"] < 1.0 and jax_rec["file_bytes"] > 0
    if method == "dense":  # no file: the bytes of the trained state (float32 weights and biases)
        assert jax_rec["file_bytes"] == 4 * (266_200 + 300 + 100 + 10)


def test_jax_runner_trains_as_the_model_runner(data):
    """Same weights (rngs=seed), same masks, same batches: the Flax path's training is the
    `Model` path's, to float rounding."""
    spec = _spec("jax", "tedepr", 0.99)
    flax_rec = runners.JaxRunner().run(spec, data, False)
    model_rec = runners.JaxModelRunner().run(spec, data, False)
    assert flax_rec["report"]["kept_weights"] == model_rec["report"]["kept_weights"]
    for got, want in zip(flax_rec["history"], model_rec["history"], strict=True):
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-4)
        assert got["eval_acc"] == pytest.approx(want["eval_acc"], abs=0.01)


@pytest.mark.parametrize("refusal", ["name", "option"])
def test_a_model_the_flax_zoo_refuses_runs_as_the_model(data, fitted, monkeypatch, refusal):
    if refusal == "name":  # the Flax zoo's ValueError for a name it lacks
        monkeypatch.setitem(flax_zoo.NOT_IN_FLAX, "lenet300_100", "refused for this test")
    else:  # its NotImplementedError for options it lacks
        get = tedepr.models.get

        def refusing(name, backend="torch", **kw):
            if backend == "jax" and kw.get("flax", True):
                raise NotImplementedError("refused for this test")
            return get(name, backend, **kw)

        monkeypatch.setattr(tedepr.models, "get", refusing)
    rec = runners.run_one(_spec("jax"), data)
    assert rec["status"] == "ok" and rec["kept"] == 2662
    assert any("ran the JAX Model (flax=False)" in w for w in rec["warnings"]), rec["warnings"]
    assert any("refused for this test" in w for w in rec["warnings"])
    ((name, model),) = fitted
    assert name == "JaxModelRunner" and isinstance(model, Model)


def test_stacked_lstm_runs_on_the_jax_backend(data, fitted):
    """A 2-layer ``lstm`` with dropout: the Flax model (a `StackedLSTM`) where the Flax zoo builds
    one, else the `Model`; the torch runner's kept count either way."""
    options = {"hidden_size": 8, "num_layers": 2, "dropout": 0.25}
    try:
        tedepr.models.get("lstm", backend="jax", **options)
        refused = False
    except NotImplementedError:
        refused = True
    rec = runners.run_one(_spec("jax", model="lstm", **options), data)
    assert rec["status"] == "ok", rec.get("error")
    ((name, model),) = fitted
    assert (name == "JaxModelRunner") == refused
    assert isinstance(model, Model if refused else nnx.Module)
    assert any("ran the JAX Model" in w for w in rec["warnings"]) == refused
    torch_rec = runners.run_one(_spec("torch", model="lstm", **options), data)
    assert rec["kept"] == torch_rec["kept"]


def test_a_bad_model_option_is_not_hidden_by_the_fallback(data):
    with pytest.raises(ValueError, match="hidden"):
        runners.JaxRunner().run(_spec("jax", hidden=(300, 0)), data, False)


def test_the_jax_runner_checks_its_device():
    with pytest.raises(ValueError, match="--device for the jax backend must be cpu, gpu or tpu"):
        runners.JaxRunner("cuda:1")
