"""Torch and JAX agree: same cores and batch -> same outputs, gradients, scores for every registered
score, same masks; weights and masks move between the backends losslessly; both match the NumPy
reference."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
pytestmark = [pytest.mark.torch, pytest.mark.jax]

import jax.numpy as jnp  # noqa: E402

import reference  # noqa: E402
import tedepr  # noqa: E402
from tedepr.backends.jax import JaxScoringProblem  # noqa: E402
from tedepr.backends.jax import interchange as jx  # noqa: E402
from tedepr.backends.jax import models as jmodels  # noqa: E402
from tedepr.backends.jax import tensorize as jtensorize  # noqa: E402
from tedepr.backends.torch import TorchScoringProblem, apply_masks  # noqa: E402
from tedepr.backends.torch import interchange as tx  # noqa: E402
from tedepr.backends.torch import tensorize as ttensorize  # noqa: E402
from tedepr.backends.torch.models import LeNet300_100  # noqa: E402
from tedepr.pruning import compute_scores, prune  # noqa: E402
from tedepr.pruning.problem import canonical_name  # noqa: E402

FORMATS = ("tt", "tr", "tucker", "cp")


def _pair(fmt, seed=0):
    """The same TT/TR/Tucker/CP MLP 16 -> 6 -> 4 (every layer tensorized) in both backends, same weights."""
    torch.manual_seed(seed)
    tmodel = ttensorize(
        LeNet300_100(num_classes=4, image_size=4, hidden=(6,)).double(), fmt, rank=2, min_params=0
    )
    jmodel = jtensorize(
        jmodels.lenet300_100(num_classes=4, image_size=4, hidden=(6,)), fmt, rank=2, min_params=0
    )
    params, masks = jx.import_arrays(jmodel, tx.export_arrays(tmodel), dtype=jnp.float64)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((5, 1, 4, 4))
    y = rng.integers(0, 4, 5)
    return tmodel, jmodel, params, (x, y)


def _torch_layout(jp, name, a):
    """A JAX array in the torch layout: dense weights are stored (in, out) in JAX, (out, in) in torch."""
    a = np.asarray(a)
    return a.T if jp.structure()[name].format == "dense" else a


def _rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


def _reference_logits(tmodel, x):
    """Dense reconstruction of every tensorized layer by the NumPy reference, then a plain MLP."""
    h = x.reshape(len(x), -1)
    layers = [tmodel.hidden[0], tmodel.classifier]
    for k, layer in enumerate(layers):
        if hasattr(layer, "factorized"):
            f = layer.factorized()
            cores = [c.detach().numpy() for c in f.cores]
            if f.format == "tucker":
                it = iter(cores[1:])
                cores = (cores[0], [next(it) if r is not None else None for r in f.ranks])
            w = reference.to_dense(f.format, cores, f.in_modes, f.out_modes)
        else:  # a layer tensorize left dense (its factorisation would not be smaller)
            w = layer.weight.detach().numpy().T
        h = reference.matmul_reference(h, w) + layer.bias.detach().numpy()
        if k < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return h


@pytest.mark.parametrize("fmt", FORMATS)
def test_same_outputs_and_gradients(fmt):
    tmodel, jmodel, params, (x, y) = _pair(fmt)
    t_out = tmodel(torch.tensor(x)).detach().numpy()
    j_out = np.asarray(jmodel.apply(params, jnp.asarray(x)))
    ref = _reference_logits(tmodel, x)
    assert _rel(t_out, ref) <= 1e-10
    assert _rel(j_out, ref) <= 1e-10
    tp, jp = TorchScoringProblem(tmodel, (x, y)), JaxScoringProblem(jmodel, params, (x, y))
    t_ones = {n: torch.ones_like(w, dtype=torch.bool) for n, w in tp.weights().items()}
    j_ones = {n: np.ones(np.shape(w), bool) for n, w in jp.weights().items()}
    tg, jg = tp.loss_gradient(t_ones), jp.loss_gradient(j_ones)
    assert {canonical_name(n) for n in jg} == set(tg)
    for n, g in jg.items():
        assert _rel(_torch_layout(jp, n, g), tg[canonical_name(n)].numpy()) <= 1e-10, n


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("method", tedepr.scores.available())
def test_same_scores_and_masks_for_every_score(fmt, method):
    tmodel, jmodel, params, data = _pair(fmt, seed=1)
    tp, jp = TorchScoringProblem(tmodel, data), JaxScoringProblem(jmodel, params, data)
    coarse = set(getattr(tedepr.pruning.scores.get(method), "coarse", ()))
    if coarse - {"hidden.0", "classifier"}:
        # an ablation score naming a layer this one-hidden-layer model lacks: the same clear error
        for problem in (tp, jp):
            with pytest.raises(ValueError, match="coarse: no layer named 'hidden.1'"):
                compute_scores(problem, method, seed=3)
        return
    # erk needs its target outside prune (prune passes keep=)
    opts = (
        {"density": 0.5} if getattr(tedepr.pruning.scores.get(method), "needs_keep", False) else {}
    )
    ts, js = compute_scores(tp, method, seed=3, **opts), compute_scores(jp, method, seed=3, **opts)
    for n, s in js.items():
        assert _rel(_torch_layout(jp, n, s), ts[canonical_name(n)].numpy()) <= 1e-10, (method, n)
    total = sum(int(np.prod(np.shape(w))) for w in jp.weights().values())
    keep = total // 2
    rounds = 3 if tedepr.pruning.scores.get(method).rounds > 1 else None
    tm = prune(tp, method, keep, rounds=rounds, seed=3)
    jm = prune(jp, method, keep, rounds=rounds, seed=3)
    for n, m in jm.items():
        np.testing.assert_array_equal(
            _torch_layout(jp, n, m), tm[canonical_name(n)].numpy(), err_msg=f"{method} {n}"
        )


@pytest.mark.parametrize("fmt", FORMATS)
def test_weights_and_masks_round_trip_between_backends(fmt):
    tmodel, jmodel, params, (x, _) = _pair(fmt, seed=2)
    rng = np.random.default_rng(0)
    masks = {
        n: torch.tensor(rng.random(tuple(p.shape)) < 0.5)
        for n, p in tedepr.backends.torch.prunable_parameters(tmodel).items()
    }
    apply_masks(tmodel, masks)
    exported = tx.export_arrays(tmodel)
    jparams, jmasks = jx.import_arrays(jmodel, exported, dtype=jnp.float64)
    j_out = np.asarray(jmodel.apply(jparams, jnp.asarray(x), masks=jmasks))
    t_out = tmodel(torch.tensor(x)).detach().numpy()
    assert _rel(j_out, t_out) <= 1e-12
    # and back: a fresh torch model of the same architecture gets the same weights, masks and outputs
    back = jx.export_arrays(jmodel, jparams, jmasks)
    torch.manual_seed(99)
    fresh = ttensorize(
        LeNet300_100(num_classes=4, image_size=4, hidden=(6,)).double(), fmt, rank=2, min_params=0
    )
    tx.import_arrays(fresh, back)
    np.testing.assert_array_equal(fresh(torch.tensor(x)).detach().numpy(), t_out)
    again = tx.export_arrays(fresh)
    for kind in ("params", "masks"):
        assert set(again[kind]) == set(exported[kind])
        for n in exported[kind]:
            np.testing.assert_array_equal(again[kind][n], exported[kind][n])
