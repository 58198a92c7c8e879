"""The stronger PaI baselines (erk, prospr, ntksap) against the independent NumPy oracles in
reference/baselines.py, on a tiny dense MLP and a tiny TT MLP, in both backends (float64)."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
pytestmark = [pytest.mark.torch, pytest.mark.jax]

import jax.numpy as jnp  # noqa: E402

import reference  # noqa: E402
from tedepr.backends.jax import JaxScoringProblem  # noqa: E402
from tedepr.backends.jax import interchange as jx  # noqa: E402
from tedepr.backends.jax import models as jmodels  # noqa: E402
from tedepr.backends.jax import tensorize as jtensorize  # noqa: E402
from tedepr.backends.torch import TorchScoringProblem  # noqa: E402
from tedepr.backends.torch import interchange as tx  # noqa: E402
from tedepr.backends.torch import tensorize as ttensorize  # noqa: E402
from tedepr.backends.torch.models import LeNet300_100  # noqa: E402
from tedepr.namespace import to_numpy  # noqa: E402
from tedepr.pruning import Guards, compute_scores, prune  # noqa: E402
from tedepr.pruning.problem import canonical_name  # noqa: E402
from tedepr.pruning.scores import NTKSAP, ProsPr, erk_counts, get  # noqa: E402

RTOL = 1e-6
BACKENDS = ("torch", "jax")
FORMATS = (None, "tt")
_SIZES = {None: (2, 3, (4,)), "tt": (4, 4, (6,))}  # image size, classes, hidden widths


def _rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def _setup(backend, fmt, data=None, seed=0):
    """The same MLP (dense 4 -> 4 -> 3, or 16 -> 6 -> 4 with every layer TT rank 2) as a scoring
    problem of either backend, and its prunable weights, reference layers and biases in the
    reference layout."""
    size, classes, hidden = _SIZES[fmt]
    torch.manual_seed(seed)
    tmodel = LeNet300_100(num_classes=classes, image_size=size, hidden=hidden).double()
    if fmt is not None:
        tmodel = ttensorize(tmodel, fmt, rank=2, min_params=0)
    if backend == "torch":
        problem = TorchScoringProblem(tmodel, data, num_batches=2, input_shape=(1, size, size))
    else:
        jmodel = jmodels.lenet300_100(num_classes=classes, image_size=size, hidden=hidden)
        if fmt is not None:
            jmodel = jtensorize(jmodel, fmt, rank=2, min_params=0)
        params, _ = jx.import_arrays(jmodel, tx.export_arrays(tmodel), dtype=jnp.float64)
        problem = JaxScoringProblem(jmodel, params, data, num_batches=2)
    layers, theta, biases = [], {}, {}
    for prefix, layer in (("hidden.0", tmodel.hidden[0]), ("classifier", tmodel.classifier)):
        biases[f"{prefix}.bias"] = layer.bias.detach().numpy().copy()
        if hasattr(layer, "factorized"):
            assert layer.factorized().format == "tt"
            names = [f"{prefix}.core_{k}" for k in range(len(layer.factorized().cores))]
            for n in names:
                theta[n] = getattr(layer, n.rpartition(".")[2]).detach().numpy().copy()
            layers.append(("tt", names, f"{prefix}.bias"))
        else:
            theta[f"{prefix}.weight"] = layer.weight.detach().numpy().T.copy()
            layers.append(("dense", f"{prefix}.weight", f"{prefix}.bias"))
    return problem, layers, theta, biases


def _to_reference(problem, arrays):
    """Backend arrays -> ``{torch name: array in the reference layout}`` (dense weights (in, out))."""
    structure = problem.structure()
    out = {}
    for n, a in arrays.items():
        a = to_numpy(a)
        if structure[n].format == "dense" and isinstance(problem, TorchScoringProblem):
            a = a.T  # torch stores (out, in); JAX already stores (in, out)
        out[canonical_name(n)] = a
    return out


def _from_reference(problem, arrays):
    """The inverse of `_to_reference`: the backend's arrays (torch tensors or NumPy), its names."""
    structure = problem.structure()
    out = {}
    for n in problem.weights():
        a = arrays[canonical_name(n)]
        if structure[n].format == "dense" and isinstance(problem, TorchScoringProblem):
            a = a.T
        a = np.ascontiguousarray(a)
        out[n] = torch.from_numpy(a) if isinstance(problem, TorchScoringProblem) else a
    return out


def _batches(fmt, n_batches=2, n=5, seed=0):
    size, classes, _ = _SIZES[fmt]
    rng = np.random.default_rng(seed)
    return [
        (rng.standard_normal((n, 1, size, size)), rng.integers(0, classes, n))
        for _ in range(n_batches)
    ]


def _losses(layers, biases, batches):
    def make(x, y):
        return lambda w: reference.cross_entropy(
            reference.mlp_forward(layers, {**w, **biases}, x), y
        )

    return [make(x, y) for x, y in batches]


def _random_masks(theta, seed=7, p=0.7):
    rng = np.random.default_rng(seed)
    return {n: (rng.random(v.shape) < p) for n, v in theta.items()}


# ----------------------------------------------------------------------------- ERK
def test_erk_counts_by_hand():
    # LeNet-300-100 at 1% kept: no cap; density ∝ (in + out) / (in · out)
    shapes = {"fc1": (300, 784), "fc2": (100, 300), "fc3": (10, 100)}
    counts = erk_counts(shapes, 2662)
    eps = 2662 / (1084 + 400 + 110)
    real = {"fc1": eps * 1084, "fc2": eps * 400, "fc3": eps * 110}  # 1810.2, 668.0, 183.7
    assert sum(counts.values()) == 2662
    assert all(abs(counts[n] - real[n]) < 1 for n in shapes), (counts, real)
    # a (4, 1) array would get density 1.24: it is kept dense and the rest re-solved
    counts = erk_counts({"a": (4, 1), "b": (100, 100)}, 204)
    assert counts == {"a": 4, "b": 200}
    # conv kernels: the kernel form sum(shape) / prod(shape) over all four axes
    counts = erk_counts({"conv": (8, 3, 3, 3), "fc": (10, 72)}, 100)
    r_conv, r_fc = 17 / 216, 82 / 720
    e = 100 / (17 + 82)
    assert abs(counts["conv"] - e * r_conv * 216) < 1 and sum(counts.values()) == 100
    assert abs(counts["fc"] - e * r_fc * 720) < 1


def test_erk_counts_match_the_bisection_oracle():
    rng = np.random.default_rng(0)
    for _ in range(30):
        shapes = {
            f"w{i}": tuple(int(d) for d in rng.integers(1, 12, rng.integers(1, 5)))
            for i in range(rng.integers(1, 6))
        }
        total = sum(math.prod(s) for s in shapes.values())
        keep = int(rng.integers(0, total + 1))
        counts = erk_counts(shapes, keep)
        real = reference.erk_real_counts(shapes, keep) if keep else {n: 0.0 for n in shapes}
        assert sum(counts.values()) == keep
        for n, s in shapes.items():
            assert 0 <= counts[n] <= math.prod(s)
            assert abs(counts[n] - real[n]) < 1 + 1e-9, (shapes, keep, counts, real)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_erk_masks_match_reference(backend, fmt):
    problem, _, theta, _ = _setup(backend, fmt)
    total = sum(v.size for v in theta.values())
    keep = total // 3
    masks = _to_reference(problem, prune(problem, "erk", keep, seed=11, guards=Guards.none()))
    real = reference.erk_real_counts({n: v.shape for n, v in theta.items()}, keep)
    assert sum(int(m.sum()) for m in masks.values()) == keep
    # the same uniform draws, in canonical name order and the torch layout, by hand
    rng = np.random.default_rng(11)
    for n in sorted(theta):
        torch_layout = masks[n].T if n.endswith(".weight") else masks[n]
        u = rng.random(torch_layout.shape).reshape(-1)
        count = int(torch_layout.sum())
        assert abs(count - real[n]) < 1, (n, count, real[n])
        expected = np.zeros(u.size, bool)
        expected[np.argsort(-u)[:count]] = True
        np.testing.assert_array_equal(torch_layout.reshape(-1), expected, err_msg=n)
    # with the default guards the total is still exact
    guarded = prune(problem, "erk", keep, seed=11)
    assert sum(int(to_numpy(m).sum()) for m in guarded.values()) == keep


# ----------------------------------------------------------------------------- ProsPr
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_prospr_matches_finite_differences_through_the_steps(backend, fmt):
    batches = _batches(fmt)
    problem, layers, theta, biases = _setup(backend, fmt, data=batches)
    losses = _losses(layers, biases, batches)
    ones = {n: np.ones(v.shape) for n, v in theta.items()}
    got = _to_reference(problem, compute_scores(problem, "prospr", lr=0.5))
    expected = reference.prospr_scores(losses, theta, ones, steps=3, lr=0.5)
    for n in theta:
        assert _rel(got[n], expected[n]) < RTOL, n
    # the steps matter: with M = 0 the score is SNIP's, far from the look-ahead one
    snip = reference.prospr_scores(losses, theta, ones, steps=0, lr=0.5)
    assert max(_rel(snip[n], expected[n]) for n in theta) > 1e-2
    got0 = _to_reference(problem, compute_scores(problem, "prospr", steps=0))
    assert max(_rel(got0[n], snip[n]) for n in theta) < RTOL
    # at a pruned mask (a later round): w_0 = θ ⊙ m, still differentiated at m
    masks = _random_masks(theta)
    backend_masks = _from_reference(problem, masks)
    got_m = _to_reference(
        problem, ProsPr(lr=0.5).importance(problem, backend_masks, np.random.default_rng(0))
    )
    expected_m = reference.prospr_scores(losses, theta, masks, steps=3, lr=0.5)
    for n in theta:
        assert _rel(got_m[n], expected_m[n]) < RTOL, n


# ----------------------------------------------------------------------------- NTK-SAP
def _ntk_draws(theta, seed, samples, size, eps=0.01):
    """NTK-SAP's documented draws, by hand: θ' per array (σ = std of its weights), then Δ per
    array, then the inputs — canonical name order, torch layout."""
    rng = np.random.default_rng(seed)
    names = sorted(theta)

    def torch_shape(n):
        return theta[n].T.shape if n.endswith(".weight") else theta[n].shape

    def to_ref(n, a):
        return a.T if n.endswith(".weight") else a

    new = {n: to_ref(n, rng.standard_normal(torch_shape(n)) * np.std(theta[n])) for n in names}
    pert = {n: new[n] + eps * to_ref(n, rng.standard_normal(torch_shape(n))) for n in names}
    x = rng.standard_normal((samples, 1, size, size))
    return new, pert, x


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_ntksap_matches_the_complex_step_oracle(backend, fmt):
    problem, layers, theta, biases = _setup(backend, fmt)  # data-free

    def forward(w, x):
        return reference.mlp_forward(layers, {**w, **biases}, x)

    new, pert, x = _ntk_draws(theta, seed=4, samples=6, size=_SIZES[fmt][0])
    got = _to_reference(problem, compute_scores(problem, "ntksap", seed=4, samples=6))
    ones = {n: np.ones(v.shape) for n, v in theta.items()}
    expected = reference.ntk_sap_scores(forward, new, pert, ones, x)
    for n in theta:
        assert _rel(got[n], expected[n]) < RTOL, n
    # the raw gradient at a pruned mask, and the score: pruned entries score 0
    masks = _random_masks(theta, seed=3)
    g = problem.ntk_perturbation_gradient(
        _from_reference(problem, masks),
        _from_reference(problem, new),
        _from_reference(problem, pert),
        x,
    )
    g = _to_reference(problem, g)
    fm = {n: m.astype(np.float64) for n, m in masks.items()}
    g_ref = reference.complex_step_grad(
        lambda m: reference.ntk_sap_objective(forward, new, pert, m, x), fm
    )
    for n in theta:
        assert _rel(g[n], g_ref[n]) < RTOL, n
    s = NTKSAP(samples=6).importance(
        problem, _from_reference(problem, masks), np.random.default_rng(4)
    )
    s = _to_reference(problem, s)
    s_ref = reference.ntk_sap_scores(forward, new, pert, fm, x)
    for n in theta:
        assert not np.any(s[n][~masks[n]])
        assert _rel(s[n], s_ref[n]) < RTOL, n


# ----------------------------------------------------------------------------- options and errors
def test_defaults_and_bad_options():
    assert (get("prospr").steps, get("prospr").lr, get("prospr").rounds) == (3, 0.1, 1)
    assert (get("ntksap").eps, get("ntksap").rounds, get("ntksap").samples) == (0.01, 20, 100)
    assert not get("erk").needs_data and not get("ntksap").needs_data and get("prospr").needs_data
    with pytest.raises(ValueError, match="steps"):
        get("prospr", steps=-1)
    with pytest.raises(ValueError, match="lr"):
        get("prospr", lr=0.0)
    with pytest.raises(ValueError, match="eps"):
        get("ntksap", eps=-1.0)
    with pytest.raises(ValueError, match="samples"):
        get("ntksap", samples=0)
    with pytest.raises(ValueError, match="density"):
        get("erk", density=1.5)
    problem, _, _, _ = _setup("torch", None)
    with pytest.raises(ValueError, match="density="):
        compute_scores(problem, "erk")
    with pytest.raises(ValueError, match="needs data"):
        compute_scores(problem, "prospr")
    scores = compute_scores(problem, "erk", density=0.5, seed=0)
    assert (
        sum(int((to_numpy(s) >= 1).sum()) for s in scores.values()) == 14
    )  # half of the 16 + 12 weights
