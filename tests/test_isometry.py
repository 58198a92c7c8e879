"""The ``trainability-isometry`` score (docs/method.md §10, Round 6): the layer-wise log
participation ratio and its gradient against the SVD oracle of reference/isometry.py and central
differences, anchored by hand-computed values, and a bond removal it must choose."""

from __future__ import annotations

import numpy as np
import pytest

import reference
from tedepr.pruning.isometry import isometry_gradient, isometry_objective, log_participation
from tedepr.pruning.problem import CoreInfo
from tedepr.pruning.structured import select_bonds


def _orthogonal(n, seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return q


def test_log_participation_anchors():
    # an isometry (orthonormal columns) has PR = its width; diag(1, 2): (1 + 4)² / (1 + 16)
    q = _orthogonal(5, 0)[:, :3]
    assert log_participation(3.0 * q) == pytest.approx(np.log(3.0), abs=1e-12)
    assert log_participation(np.diag([1.0, 2.0])) == pytest.approx(np.log(25 / 17), abs=1e-12)
    assert log_participation(np.zeros((2, 3))) == -np.inf
    # the gradient vanishes at an isometry (a maximum of PR) and not elsewhere
    info = {"w": CoreInfo("w", "dense")}
    g = isometry_gradient({"w": 2.0 * q.T}, info)["w"]
    assert np.abs(g).max() < 1e-12
    g = isometry_gradient({"w": np.diag([1.0, 2.0])}, {"w": CoreInfo("w", "dense")})["w"]
    assert np.abs(g).max() > 0.1


@pytest.mark.torch
@pytest.mark.parametrize("fmt", ["tt", "tr", "tucker", "cp"])
def test_score_is_theta_times_the_gradient_of_the_svd_oracle(fmt):
    """θ ⊙ ∂J/∂w (the score) against θ ⊙ central differences of Σ log PR computed from singular
    values of the reference reconstructions; a dense weight (JAX layout too) included."""
    torch = pytest.importorskip("torch")
    from tedepr.backends.torch import TorchScoringProblem, tensorize
    from tedepr.backends.torch.models import LeNet300_100
    from tedepr.pruning import compute_scores

    torch.manual_seed(1)
    model = LeNet300_100(num_classes=4, image_size=4, hidden=(6,)).double()
    model = tensorize(model, fmt, rank=2, min_params=0)
    problem = TorchScoringProblem(model, None, input_shape=(1, 4, 4))
    theta = {n: w.numpy().copy() for n, w in problem.weights().items()}
    structure = problem.structure()

    builders = []
    for prefix, layer in (("hidden.0", model.hidden[0]), ("classifier", model.classifier)):
        if hasattr(layer, "factorized"):
            f = layer.factorized()
            names = [f"{prefix}.core_{k}" for k in range(len(f.cores))]

            def build(p, f=f, names=names):
                cores = [p[n] for n in names]
                if f.format == "tucker":
                    it = iter(cores[1:])
                    cores = (cores[0], [next(it) if r is not None else None for r in f.ranks])
                return reference.to_dense(f.format, cores, f.in_modes, f.out_modes)

        else:

            def build(p, name=f"{prefix}.weight"):
                return p[name]

        builders.append(build)

    def objective(p):
        return reference.isometry_objective_reference(p, builders)

    assert isometry_objective(theta, structure) == pytest.approx(objective(theta), rel=1e-12)
    fd = reference.central_difference_grad(objective, theta)
    scores = compute_scores(problem, "trainability-isometry")
    top = max(np.abs(theta[n] * fd[n]).max() for n in theta)
    for n in theta:
        err = np.abs(scores[n].numpy() - theta[n] * fd[n]).max() / top
        assert err < 1e-7, (fmt, n, err)
    # a dense weight stored (in, out) with layout (1, 0) (the JAX convention) scores the same
    dense = [n for n in theta if structure[n].format == "dense"]
    for n in dense:
        flipped = {**theta, n: theta[n].T}
        info = {**structure, n: CoreInfo(structure[n].layer, "dense", layout=(1, 0))}
        g = isometry_gradient(flipped, info)
        ref = isometry_gradient(theta, structure)
        np.testing.assert_allclose(g[n].T, ref[n], rtol=1e-12, atol=1e-15)


def test_the_bond_that_spoils_an_isometry_goes_first():
    """W = Q1 ⊗ Q2 + ε (u vᵀ) ⊗ B (a TT of rank 2): removing bond index 1 restores the isometry
    (J rises), removing index 0 leaves a rank-1 matrix (J falls to 0): a score of the wrong sign, or
    one blind to the spectrum, removes index 0."""
    rng = np.random.default_rng(0)
    n1, n2 = 3, 4
    c0 = np.zeros((1, n1, n1, 2))
    c1 = np.zeros((2, n2, n2, 1))
    c0[0, :, :, 0], c1[0, :, :, 0] = _orthogonal(n1, 1), _orthogonal(n2, 2)
    c0[0, :, :, 1] = 0.3 * np.outer(rng.standard_normal(n1), rng.standard_normal(n1))
    c1[1, :, :, 0] = rng.standard_normal((n2, n2))
    weights = {"L.core_0": c0, "L.core_1": c1}
    structure = {
        f"L.core_{k}": CoreInfo("L", "tt", k, (1, 2), (0, 3), in_modes=(n1, n2), out_modes=(n1, n2))
        for k in range(2)
    }
    grads = isometry_gradient(weights, structure)
    scores = {n: weights[n] * grads[n] for n in weights}
    keep = c0.size + c1.size - (n1 * n1 + n2 * n2)
    masks = select_bonds(scores, keep, structure)
    assert not masks["L.core_0"][..., 1].any() and not masks["L.core_1"][1].any()
    assert masks["L.core_0"][..., 0].all() and masks["L.core_1"][0].all()
    kept = {n: weights[n] * masks[n] for n in weights}
    assert isometry_objective(kept, structure) == pytest.approx(np.log(n1 * n2), abs=1e-12)
    assert isometry_objective(kept, structure) > isometry_objective(weights, structure)


def test_a_layer_without_modes_is_a_clear_error():
    weights = {"L.core_0": np.ones((3, 2)), "L.core_1": np.ones((4, 2))}
    structure = {n: CoreInfo("L", "cp", k, (0,), (1,)) for k, n in enumerate(weights)}
    with pytest.raises(ValueError, match="needs the modes of layer 'L'"):
        isometry_gradient(weights, structure)
    # TT/TR cores carry their modes in their shapes
    tt = {"L.core_0": np.ones((1, 2, 3, 2)), "L.core_1": np.ones((2, 2, 2, 1))}
    info = {n: CoreInfo("L", "tt", k, (1, 2), (0, 3)) for k, n in enumerate(tt)}
    assert set(isometry_gradient(tt, info)) == set(tt)


def test_exact_greedy_removes_the_cheapest_bond_per_entry_by_brute_force():
    """``trainability-isometry-exact``'s selection (`select_bonds(unit_cost=removal_cost)`) against
    a brute-force greedy on the SVD oracle: at each step remove the bond index whose removal
    lowers Σ log PR least per kept entry it holds."""
    from tedepr.pruning.isometry import removal_cost

    rng = np.random.default_rng(3)
    shapes = [(1, 3, 2, 3), (3, 2, 3, 4), (4, 2, 2, 1)]
    cores = [rng.standard_normal(s) for s in shapes]
    names = [f"L.core_{k}" for k in range(3)]
    weights = dict(zip(names, cores))
    structure = {
        n: CoreInfo("L", "tt", k, (1, 2), (0, 3), in_modes=(3, 2, 2), out_modes=(2, 3, 2))
        for k, n in enumerate(names)
    }
    units = [(1, a) for a in range(3)] + [(2, a) for a in range(4)]  # (bond, index)

    def zeroed(masks, bond, a):
        out = {n: m.copy() for n, m in masks.items()}
        out[names[bond - 1]][..., a] = False
        out[names[bond]][a] = False
        return out

    def objective(masks):
        dense = reference.tt_to_dense([weights[n] * masks[n] for n in names])
        return reference.log_participation_svd(dense)

    masks = {n: np.ones(s, bool) for n, s in zip(names, shapes)}
    live = {1: 3, 2: 4}
    for _step in range(3):
        best = None
        for bond, a in units:
            trial = zeroed(masks, bond, a)
            cnt = sum(int(masks[n].sum() - trial[n].sum()) for n in names)
            if cnt == 0 or live[bond] <= 1:
                continue
            per_entry = (objective(masks) - objective(trial)) / cnt
            if best is None or per_entry < best[0]:
                best = (per_entry, bond, a)
        masks = zeroed(masks, best[1], best[2])
        live[best[1]] -= 1
    keep = sum(int(m.sum()) for m in masks.values())
    grads = isometry_gradient(weights, structure)
    scores = {n: weights[n] * grads[n] for n in names}
    got = select_bonds(scores, keep, structure, unit_cost=removal_cost(weights, structure))
    for n in names:
        np.testing.assert_array_equal(got[n], masks[n], err_msg=n)
    # the first-order ranking is a different rule: on this draw it picks other bonds
    first_order = select_bonds(scores, keep, structure)
    assert any((first_order[n] != masks[n]).any() for n in names)


@pytest.mark.torch
def test_tucker_layers_stay_live_under_the_signed_isometry_score():
    """A Tucker layer's units are single entries; a signed score (removing some entries raises PR)
    could leave no complete path (before the reservation, 7 of these 24 selections killed a layer)."""
    torch = pytest.importorskip("torch")
    from tedepr.backends.torch import TorchScoringProblem, tensorize
    from tedepr.backends.torch.models import LeNet300_100
    from tedepr.pruning import prune
    from tedepr.pruning.connectivity import analyse

    dead = []
    for seed in range(6):
        torch.manual_seed(seed)
        model = LeNet300_100(num_classes=4, image_size=8, hidden=(12,)).double()
        model = tensorize(model, "tucker", rank=3, min_params=0)
        problem = TorchScoringProblem(model, None, input_shape=(1, 8, 8))
        structure = problem.structure()
        total = sum(int(np.prod(w.shape)) for w in problem.weights().values())
        for frac in (0.1, 0.2, 0.33, 0.5):
            keep = int(total * frac)
            masks = prune(problem, "trainability-isometry", keep)
            assert sum(int(m.sum()) for m in masks.values()) == keep
            live = analyse({n: m.numpy() for n, m in masks.items()}, structure)
            dead += [(seed, frac, name) for name, info in live.items() if not info.live]
    assert not dead


@pytest.mark.torch
@pytest.mark.parametrize("method", ["trainability-isometry", "trainability-isometry-exact"])
def test_coarse_layers_keep_every_entry_under_both_isometry_scores(method):
    torch = pytest.importorskip("torch")
    from tedepr.backends.torch import TorchScoringProblem, tensorize
    from tedepr.backends.torch.models import LeNet300_100
    from tedepr.pruning import prune
    from tedepr.pruning.scores import get

    torch.manual_seed(0)
    model = tensorize(
        LeNet300_100(num_classes=4, image_size=8, hidden=(12, 8)).double(),
        "tt",
        rank=3,
        min_params=0,
    )
    problem = TorchScoringProblem(model, None, input_shape=(1, 8, 8))
    weights = problem.weights()
    hidden1 = sum(w.numel() for n, w in weights.items() if n.startswith("hidden.1."))
    total = sum(w.numel() for w in weights.values())
    keep = hidden1 + (total - hidden1) // 3
    plain = prune(problem, method, keep)
    masks = prune(problem, get(method, coarse=("hidden.1",)), keep)
    assert sum(int(m.sum()) for m in masks.values()) == keep
    assert all(bool(m.all()) for n, m in masks.items() if n.startswith("hidden.1."))
    assert not all(bool(m.all()) for n, m in plain.items() if n.startswith("hidden.1."))
