"""One compress pipeline, thin backends (issue 11): one signature for the front door and both
backends, one `CompressionResult`, one argument validation, one fallback rule, and the drifts the
issue lists — each checked on both backends at once."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from pathlib import Path

import numpy as np
import pytest

import tedepr
from tedepr.pipeline import CompressAdapter, CompressionResult

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
pytestmark = [pytest.mark.torch, pytest.mark.jax]

import jax.numpy as jnp  # noqa: E402

import tedepr.backends.jax as bj  # noqa: E402
import tedepr.backends.torch as bt  # noqa: E402
from tedepr.backends.jax import interchange as jx  # noqa: E402
from tedepr.backends.torch import interchange as tx  # noqa: E402
from tedepr.pruning.problem import canonical_name  # noqa: E402

BACKENDS = {"torch": bt, "jax": bj}


def _models(hidden=(6,), image_size=4, num_classes=4):
    """The same MLP in both backends with the same float64 weights (torch's, copied to JAX)."""
    torch.manual_seed(0)
    kw = dict(num_classes=num_classes, image_size=image_size, hidden=hidden)
    tmodel = bt.models.LeNet300_100(**kw).double()
    jmodel = bj.models.lenet300_100(**kw)
    params, _ = jx.import_arrays(jmodel, tx.export_arrays(tmodel), dtype=jnp.float64)
    return tmodel, jmodel, params


def _data(n=8, image_size=4, num_classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1, image_size, image_size)), rng.integers(0, num_classes, n)


# ----------------------------------------------------------------------------- one signature
@pytest.mark.parametrize("entry", ["compress", "score"])
def test_front_door_and_both_backends_share_one_signature(entry):
    front = inspect.signature(getattr(tedepr, entry))
    assert front.parameters["backend"].kind is inspect.Parameter.KEYWORD_ONLY
    want = [p for p in front.parameters.values() if p.name != "backend"]
    for mod in BACKENDS.values():
        got = list(inspect.signature(getattr(mod, entry)).parameters.values())
        assert [(p.name, p.kind, p.default) for p in got] == [
            (p.name, p.kind, p.default) for p in want
        ], mod.__name__
    names = list(front.parameters)
    positional = [
        n for n in names if front.parameters[n].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    ]
    if entry == "compress":
        assert positional == ["model", "data", "sparsity", "format", "score"]
        for name in ("rank", "oversample", "guards", "rounds", "num_batches", "seed"):
            assert front.parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert {"params", "dtype", "input_shape", "loss_fn", "rescale", "progress"} <= set(names)
    else:
        assert positional == ["model", "data", "method"]


def test_the_fifth_positional_argument_is_the_score_everywhere():
    """Drift of issue 11: ``backends.torch.compress`` took ``rank`` fifth, ``tedepr.compress``
    ``score``. Now a rank given fifth is a bad score in every entry point, and a sixth positional
    argument is refused."""
    tmodel, jmodel, params = _models()
    calls = {
        "front": lambda *a: tedepr.compress(tmodel, None, 0.5, "tt", *a, backend="torch"),
        "torch": lambda *a: bt.compress(tmodel, None, 0.5, "tt", *a),
        "jax": lambda *a: bj.compress(jmodel, None, 0.5, "tt", *a, params=params),
    }
    for call in calls.values():
        with pytest.raises(TypeError, match=r"score must be a registered score name.*int 4"):
            call(4)
        with pytest.raises(TypeError, match="positional"):
            call("random", 4)
    res = bt.compress(tmodel, None, 0.5, None, "magnitude")
    assert res.report.method == "magnitude"


# ----------------------------------------------------------------------------- one result type
def test_one_compression_result_in_one_field_order():
    assert [f.name for f in dataclasses.fields(CompressionResult)] == [
        "model",
        "report",
        "masks",
        "params",
    ]
    assert bt.CompressionResult is bj.CompressionResult is tedepr.compression.CompressionResult
    tmodel, jmodel, params = _models()
    x, y = _data()
    rt = bt.compress(tmodel, (x, y), 0.5, None, "magnitude")
    rj = bj.compress(jmodel, (x, y), 0.5, None, "magnitude", params=params)
    for r in (rt, rj):
        assert isinstance(r, CompressionResult)
        assert r.report.kept_weights == round(0.5 * r.report.dense_weights) and r.masks
    assert rt.params is None and rj.params is not None
    np.testing.assert_allclose(
        rt.apply(torch.tensor(x)).detach().numpy(), np.asarray(rj.apply(jnp.asarray(x))), rtol=1e-10
    )


def test_both_adapters_implement_the_protocol():
    for backend in BACKENDS:
        adapter = importlib.import_module(f"tedepr.backends.{backend}.compress").ADAPTER
        assert isinstance(adapter, CompressAdapter) and adapter.name == backend


# ----------------------------------------------------------------------------- same masks, end to end
@pytest.mark.parametrize("method", ["snip", "magnitude", "synflow", "grasp"])
def test_compress_end_to_end_gives_the_same_masks_and_weights_in_both_backends(method):
    """The whole pipeline (budget, score, prune, rescale, masks, report), not just `prune`: the
    same weights and batch give the same masks, rescaled weights and report in both backends."""
    tmodel, jmodel, params = _models(hidden=(12, 8))
    data = _data()
    kw = dict(
        sparsity=0.7, format=None, score=method, seed=5, rounds=3 if method == "synflow" else None
    )
    rt = tedepr.compress(tmodel, data, backend="torch", **kw)
    rj = tedepr.compress(jmodel, data, backend="jax", params=params, **kw)
    assert {canonical_name(n) for n in rj.masks} == set(rt.masks)
    structure = bj.JaxScoringProblem(rj.model, rj.params).structure()
    tweights = bt.prunable_parameters(rt.model)
    jweights = bj.prunable_leaves(rj.params)
    for n, m in rj.masks.items():
        t = canonical_name(n)
        layout = structure[n].layout or tuple(range(np.ndim(m)))
        np.testing.assert_array_equal(np.transpose(np.asarray(m), layout), rt.masks[t].numpy())
        np.testing.assert_allclose(
            np.transpose(np.asarray(jweights[n]), layout),
            (tweights[t] * rt.masks[t]).detach().numpy(),
            rtol=1e-10,
            atol=1e-12,
        )
    assert [(r.name, r.kept, r.total) for r in rt.report.layers] == [
        (canonical_name(r.name), r.kept, r.total) for r in rj.report.layers
    ]  # the rows in the model's layer order in both
    assert rt.report.kept_weights == rj.report.kept_weights == round(0.3 * rt.report.dense_weights)


# ----------------------------------------------------------------------------- one validation
_BAD = [
    ({"score": 3}, TypeError, "score must be a registered score name"),
    ({"format": "block-tt"}, ValueError, "format must be one of"),
    ({"rank": "8"}, TypeError, "rank must be None"),
    ({"guards": "on"}, TypeError, "guards must be a tedepr.Guards"),
    ({"rounds": 0}, ValueError, "rounds must be an int >= 1"),
    ({"num_batches": 1.5}, TypeError, "num_batches must be an int"),
    ({"seed": -1}, ValueError, "seed must be an int >= 0"),
    ({"seed": "0"}, TypeError, "seed must be an int >= 0"),
    ({"input_shape": (0,)}, ValueError, "input_shape"),
    ({"loss_fn": "mse"}, ValueError, "loss_fn must be None, one of 'cross_entropy'"),
    ({"rescale": "yes"}, TypeError, "rescale must be True or False"),
    ({"tensorize_options": 3}, TypeError, "tensorize_options must be a dict"),
    ({"progress": 3}, TypeError, "progress must be None or a callable"),
    ({"sparsity": 1.0}, ValueError, r"sparsity must be a number in \[0, 1\)"),
    ({"dtype": "int32"}, ValueError, "dtype must be a real floating dtype"),
]


@pytest.mark.parametrize(("kw", "exc", "match"), _BAD, ids=[next(iter(k)) for k, _, _ in _BAD])
def test_every_argument_is_checked_once_the_same_way_in_both_backends(kw, exc, match):
    tmodel, jmodel, params = _models()
    messages = []
    for backend, model, extra in (("torch", tmodel, {}), ("jax", jmodel, {"params": params})):
        with pytest.raises(exc, match=match) as info:
            tedepr.compress(model, None, **{"score": "magnitude", **kw}, backend=backend, **extra)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


def test_backend_specific_arguments_are_named():
    tmodel, jmodel, _ = _models()
    with pytest.raises(ValueError, match="params= is for JAX models"):
        bt.compress(tmodel, None, score="magnitude", params={"w": 1})
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        bt.compress(jmodel, None, score="magnitude")
    with pytest.raises(TypeError, match="model must be a tedepr.backends.jax Model"):
        bj.score(tmodel, None, "magnitude")
    # dtype: the compressed torch model's dtype; the fresh JAX params' dtype
    rt = bt.compress(tmodel.float(), None, 0.9, "tt", "magnitude", dtype="float64")
    assert {p.dtype for p in rt.model.parameters()} == {torch.float64}
    rj = bj.compress(jmodel, None, 0.9, "tt", "magnitude", dtype=jnp.float32)
    assert {a.dtype for a in jax.tree.leaves(rj.params)} == {jnp.dtype("float32")}


def test_integer_scoring_inputs_are_refused_alike():
    """Drift of issue 11: torch cast integer inputs to float, JAX raised. Both raise now."""
    tmodel, jmodel, params = _models()
    x, y = _data()
    xi = (x * 10).astype(np.int64)
    messages = []
    for call in (
        lambda: tedepr.score(tmodel, (xi, y), backend="torch"),
        lambda: tedepr.score(jmodel, (xi, y), backend="jax", params=params),
        lambda: tedepr.compress(tmodel, (xi, y), 0.5, None, "snip", backend="torch"),
        lambda: tedepr.compress(jmodel, (xi, y), 0.5, None, "snip", backend="jax", params=params),
    ):
        with pytest.raises(ValueError, match=r"data \(batch 0\): inputs x must be floating point"):
            call()
    for call in (
        lambda: tedepr.score(tmodel, (torch.tensor(xi), torch.tensor(y)), backend="torch"),
        lambda: tedepr.score(jmodel, (jnp.asarray(xi), jnp.asarray(y)), backend="jax"),
    ):
        with pytest.raises(ValueError) as info:
            call()
        messages.append(re.sub(r"got \S+", "got <dtype>", str(info.value)))
    assert messages[0] == messages[1]


# ----------------------------------------------------------------------------- one fallback rule
def test_a_float_rank_below_rank_one_leaves_that_layer_dense_in_both_backends():
    """Drift of issue 11: torch retried the whole model at rank 1 (on the error text "even rank
    1"), JAX left the one layer dense. One rule now: that layer stays dense, with a warning; the
    others are tensorized; a layer built directly raises `RankBudgetError`."""
    tmodel, jmodel, _ = _models(hidden=(64,), image_size=16, num_classes=10)
    rank = 0.02  # hidden/0 (256 x 64) fits at rank 1; the classifier (64 x 10) does not
    with pytest.warns(UserWarning, match=r"leaves classifier dense: .*even rank 1"):
        tt = bt.tensorize(tmodel, "tt", rank=rank, min_params=0)
    with pytest.warns(UserWarning, match=r"leaves classifier dense: .*even rank 1"):
        tj = bj.tensorize(jmodel, "tt", rank=rank, min_params=0)
    assert isinstance(tt.hidden[0], bt.TTLinear) and isinstance(tt.classifier, torch.nn.Linear)
    assert isinstance(tj.layers["hidden/0"], bj.TTLinear)
    assert isinstance(tj.layers["classifier"], bj.Dense)
    for make in (lambda: bt.TTLinear(64, 10, rank=rank), lambda: bj.TTLinear(64, 10, rank=rank)):
        with pytest.raises(tedepr.shapes.RankBudgetError, match="even rank 1"):
            make()
    # the rule is decided on the exception's type, nowhere on its text
    backends = Path(tedepr.__file__).parent / "backends"
    for path in backends.rglob("*.py"):
        assert "even rank 1" not in path.read_text(), path


def test_other_layer_errors_name_the_layer_in_both_backends():
    tmodel, jmodel, _ = _models()
    for call in (
        lambda: bt.tensorize(tmodel, "tt", rank=(1, 0, 1), min_params=0),
        lambda: bj.tensorize(jmodel, "tt", rank=(1, 0, 1), min_params=0),
    ):
        with pytest.raises(ValueError, match=r"tensorize could not replace hidden[./]0 \("):
            call()
