"""The coarse/fine split chosen by a training probe (`tedepr.probe`, `compress(oversample=(…))`)."""

from __future__ import annotations

import numpy as np
import pytest

import tedepr
from tedepr.datasets import load_mnist10k, normalize

N = 384


@pytest.fixture(scope="module")
def digits():
    x, y = load_mnist10k()
    return normalize(x[:N]).astype(np.float32)[:, None], y[:N].astype(np.int64)


def _mlp_torch(seed):
    torch = pytest.importorskip("torch")
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(784, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)
    )


RECIPE = {"optimizer": "adam", "lr": 3e-3, "weight_decay": 0.0, "batch_size": 64}


@pytest.mark.torch
def test_probe_returns_the_untrained_candidate_of_lowest_probe_loss(digits):
    torch = pytest.importorskip("torch")
    from tedepr.backends.torch import fit

    x, y = digits
    data = (x[:128], y[:128])
    common = dict(sparsity=0.98, format="tt", backend="torch", seed=3)
    res = tedepr.compress(
        _mlp_torch(0), data, score="trainability", oversample=(1.0, 2.0, 3.0),
        probe_data=(x, y), probe_epochs=1, probe_fit=RECIPE, **common,
    )  # fmt: skip
    probe = res.report.probe
    assert [p["oversample"] for p in probe] == [1.0, 2.0, 3.0]
    budget = round(0.02 * (784 * 64 + 64 * 10))
    assert all(p["kept"] <= budget for p in probe)  # every candidate holds at most the budget
    # each probe loss is exactly what one epoch of the recipe gives that candidate alone
    fresh = {}
    for split in (1.0, 2.0, 3.0):
        score = None if split == 1.0 else "trainability"
        extra = {} if split == 1.0 else {"oversample": split}
        cand = tedepr.compress(_mlp_torch(0), data, score=score, **extra, **common)
        fresh[split] = {k: v.detach().clone() for k, v in cand.model.state_dict().items()}
        out = fit(
            cand.model, (x, y), epochs=1, seed=3, progress=False, schedule="constant", **RECIPE
        )
        loss = next(p["probe_loss"] for p in probe if p["oversample"] == split)
        assert loss == pytest.approx(out.history[-1]["train_loss"], rel=1e-5)
    best = min(probe, key=lambda p: p["probe_loss"])["oversample"]
    # the returned model is the chosen candidate at its initialisation (the probe trained a copy)
    state = res.model.state_dict()
    assert state.keys() == fresh[best].keys()
    for k, v in fresh[best].items():
        torch.testing.assert_close(state[k], v, rtol=0, atol=0)
    chose = "the low-rank network alone" if best == 1.0 else f"oversample {best:g}"
    assert any(f"chose {chose}, seed 3" in n for n in res.report.notes)
    assert res.report.to_dict()["probe"] == probe


@pytest.mark.jax
@pytest.mark.slow  # trains every candidate for its probe epochs (~25 s)
def test_probe_in_jax_matches_its_own_candidates(digits):
    pytest.importorskip("jax")
    import jax

    from tedepr.backends.jax import fit

    x, y = digits
    model = tedepr.models.get("lenet300_100", backend="jax", flax=False, hidden=(32, 16))
    params = model.init(jax.random.key(0))
    common = dict(sparsity=0.97, format="tt", backend="jax", seed=1, params=params)
    res = tedepr.compress(
        model, (x[:128], y[:128]), score="snip", oversample=(1.0, 2.0), probe_data=(x, y),
        probe_epochs=1, probe_fit=RECIPE, **common,
    )  # fmt: skip
    low = tedepr.compress(model, (x[:128], y[:128]), score=None, **common)
    out = fit(low.model, low.params, (x, y), epochs=1, seed=1, progress=False, schedule="constant",
              **RECIPE)  # fmt: skip
    assert res.report.probe[0]["probe_loss"] == pytest.approx(
        out.history[-1]["train_loss"], rel=1e-5
    )
    best = min(res.report.probe, key=lambda p: p["probe_loss"])["oversample"]
    assert res.report.kept_weights == next(
        p["kept"] for p in res.report.probe if p["oversample"] == best
    )


@pytest.mark.torch
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"oversample": (2.0,)}, ValueError, "at least two"),
        ({"oversample": (1.0, 0.5)}, ValueError, "finite float >= 1"),
        ({"oversample": (2.0, 2.0)}, ValueError, "distinct"),
        ({"oversample": "12"}, TypeError, "oversample"),
        ({"oversample": (1.0, 2.0)}, ValueError, "needs probe_data"),
        ({"probe_epochs": 2}, TypeError, "only apply with candidates to probe"),
        ({"oversample": (1.0, 2.0), "score": None}, ValueError, "need a score"),
        ({"oversample": (1.0, 2.0), "format": None}, ValueError, "tensor format"),
        ({"oversample": (1.0, 2.0), "probe_data": "x", "probe_epochs": 0}, ValueError,
         "probe_epochs"),
        ({"oversample": (1.0, 2.0), "probe_data": "x", "probe_fit": {"epochs": 3}}, ValueError,
         "must not set 'epochs'"),
    ],
)  # fmt: skip
def test_probe_bad_arguments_name_the_argument(digits, kwargs, error, match):
    x, y = digits
    kw = {"format": "tt", "score": "trainability", **kwargs}
    with pytest.raises(error, match=match):
        tedepr.compress(_mlp_torch(0), (x[:64], y[:64]), sparsity=0.98, backend="torch", **kw)


@pytest.mark.torch
def test_tedepr_probe_method_runs_in_a_study(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from tedepr.cli.methods import PROBE_SPLITS, compress_options, expand_methods

    assert expand_methods("tedepr-probe", "tt") == ["tedepr-probe"]
    assert compress_options("tedepr-probe", "tr") == {
        "format": "tr", "score": "trainability", "oversample": PROBE_SPLITS,
    }  # fmt: skip
    out = tmp_path / "study"
    args = ["run", "--methods", "tedepr-probe", "--sparsities", "0.99", "--seeds", "0",
            "--epochs", "1", "--subset", "600", "--no-progress", "--workers", "1", "--out", str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    res = subprocess.run([sys.executable, "-m", "tedepr", *args], capture_output=True, text=True,
                         env=env, timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    (record,) = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    probe = record["report"]["probe"]
    assert [p["oversample"] for p in probe] == list(PROBE_SPLITS)
    assert record["kept"] == min(probe, key=lambda p: p["probe_loss"])["kept"]
    assert record["kept"] <= record["report"]["dense_weights"] // 100 + 1


@pytest.mark.torch
def test_probe_draws_pick_the_initialisation_of_lowest_probe_loss(digits):
    torch = pytest.importorskip("torch")
    from tedepr.probe import DRAW_STRIDE

    x, y = digits
    data = (x[:128], y[:128])
    common = dict(sparsity=0.98, format="tt", backend="torch", score=None)
    res = tedepr.compress(
        _mlp_torch(0), data, seed=2, probe_draws=3, probe_data=(x, y), probe_epochs=1,
        probe_fit=RECIPE, **common,
    )  # fmt: skip
    probe = res.report.probe
    assert [p["seed"] for p in probe] == [2, 2 + DRAW_STRIDE, 2 + 2 * DRAW_STRIDE]
    assert len({p["probe_loss"] for p in probe}) == 3  # different initialisations, different losses
    best = min(probe, key=lambda p: p["probe_loss"])
    fresh = tedepr.compress(_mlp_torch(0), data, seed=best["seed"], **common)
    for (k, v), (k2, v2) in zip(res.model.state_dict().items(), fresh.model.state_dict().items()):
        assert k == k2
        torch.testing.assert_close(v, v2, rtol=0, atol=0)
    assert any(f"seed {best['seed']}" in n for n in res.report.notes)
    with pytest.raises(ValueError, match="probe_draws"):
        tedepr.compress(_mlp_torch(0), data, probe_draws=0, probe_data=(x, y), **common)
    with pytest.raises(ValueError, match="needs probe_data"):
        tedepr.compress(_mlp_torch(0), data, probe_draws=2, **common)
