"""Backend-neutral pruning math: global selection, guards, schedules, the score registry and driver."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tedepr
from tedepr.pruning import (
    CoreInfo,
    Guards,
    count_kept,
    effective_ranks,
    exponential_schedule,
    prune,
    select,
)
from tedepr.pruning.selection import reserved_entries
from tedepr.report import keep_count, low_rank_budget

xp = tedepr.get_namespace(np.zeros(1))


@given(
    st.integers(0, 2**32 - 1),
    st.lists(st.tuples(st.integers(1, 4), st.integers(1, 5)), min_size=1, max_size=4),
    st.floats(0.0, 1.0),
)
def test_select_keeps_exactly_the_top_entries(seed, shapes, frac):
    rng = np.random.default_rng(seed)
    scores = {f"p{k}": rng.integers(0, 5, size=s).astype(np.float64) for k, s in enumerate(shapes)}
    total = sum(math.prod(s) for s in shapes)
    keep = round(frac * total)
    masks = select(scores, keep)
    assert count_kept(masks) == keep
    flat_scores = np.concatenate([scores[n].ravel() for n in scores])
    flat_masks = np.concatenate([masks[n].ravel() for n in scores])
    # every kept score >= every pruned score
    if 0 < keep < total:
        assert flat_scores[flat_masks].min() >= flat_scores[~flat_masks].max()
    # deterministic tie-breaking: among equal scores, earlier entries are kept first
    order = sorted(range(total), key=lambda i: (-flat_scores[i], i))
    expected = np.zeros(total, bool)
    expected[order[:keep]] = True
    np.testing.assert_array_equal(flat_masks, expected)


def test_select_hand_computed():
    scores = {"a": np.array([[3.0, 1.0], [2.0, 2.0]]), "b": np.array([2.0, 5.0, 0.0])}
    masks = select(scores, 3)
    # ranking: b[1]=5, a[0,0]=3, then ties at 2 in order a[1,0], a[1,1], b[0] -> a[1,0] wins
    np.testing.assert_array_equal(masks["a"], [[True, False], [True, False]])
    np.testing.assert_array_equal(masks["b"], [False, True, False])


def test_select_errors():
    with pytest.raises(ValueError, match="keep"):
        select({"a": np.ones(3)}, 4)
    with pytest.raises(ValueError, match="parameter 'a'"):
        select({"a": np.array([1.0, np.nan])}, 1)
    with pytest.raises(ValueError, match="empty"):
        select({}, 0)


def _tt_structure(names):
    return {
        n: CoreInfo("layer", "tt", k, slice_axes=(1, 2), bond_axes=(0, 3))
        for k, n in enumerate(names)
    }


def test_guards_keep_every_slice_even_when_scores_say_otherwise():
    rng = np.random.default_rng(0)
    # core_0's scores dominate core_1's: one-shot ranking would empty core_1 completely
    scores = {"c0": rng.random((1, 3, 2, 2)) + 10.0, "c1": rng.random((2, 2, 2, 1))}
    structure = _tt_structure(scores)
    unguarded = select(scores, 12)
    assert not unguarded["c1"].any()
    guarded = select(scores, 12, structure=structure, guards=Guards(keep_slices=True))
    assert count_kept(guarded) == 12
    for n, m in guarded.items():
        per_slice = m.any(axis=(0, 3))
        assert per_slice.all(), n
    # the reserved entries are the best of each slice
    res = reserved_entries(scores, structure, Guards(keep_slices=True, keep_path=False))
    best = scores["c1"].reshape(2, 4, 1).transpose(1, 0, 2).reshape(4, 2).argmax(axis=1)
    got = res["c1"].transpose(1, 2, 0, 3).reshape(4, 2).argmax(axis=1)
    np.testing.assert_array_equal(best, got)


def test_guards_min_density_and_impossible_target():
    scores = {
        "c0": np.arange(8.0).reshape(1, 2, 2, 2),
        "c1": np.arange(8.0).reshape(2, 2, 2, 1) + 100,
    }
    structure = _tt_structure(scores)
    masks = select(
        scores, 9, structure=structure, guards=Guards(min_density=0.5, keep_slices=False)
    )
    assert masks["c0"].sum() == 4 and count_kept(masks) == 9
    np.testing.assert_array_equal(masks["c0"].ravel(), [False] * 4 + [True] * 4)
    with pytest.raises(ValueError, match="guards need 16"):
        select(scores, 7, structure=structure, guards=Guards(min_density=1.0, keep_slices=False))
    with pytest.raises(ValueError, match="min_density"):
        Guards(min_density=1.5)


def test_dense_weights_are_never_guarded():
    scores = {"w": np.arange(6.0).reshape(2, 3)}
    structure = {"w": CoreInfo("fc", "dense")}
    masks = select(scores, 1, structure=structure, guards=Guards(min_density=0.9))
    assert count_kept(masks) == 1 and masks["w"][1, 2]


def test_exponential_schedule():
    s = exponential_schedule(0.01, 4)
    np.testing.assert_allclose(s, [0.01**0.25, 0.01**0.5, 0.01**0.75, 0.01])
    with pytest.raises(ValueError, match="rounds"):
        exponential_schedule(0.1, 0)


def test_effective_ranks_counts_live_bond_indices():
    m = np.zeros((1, 2, 2, 3), bool)
    m[0, 0, 0, 0] = m[0, 1, 1, 2] = True
    out = effective_ranks({"c": m}, _tt_structure(["c"]))
    assert out == {"c": (1, 2)}


def test_keep_count_and_budget():
    assert keep_count(0.995, 266_200) == 1331
    assert keep_count(0.0, 10) == 10
    for bad in (1.0, -0.1, float("nan"), "0.9", True):
        with pytest.raises(ValueError, match="sparsity"):
            keep_count(bad, 100)
    with pytest.raises(ValueError, match="at least one"):
        keep_count(0.9999, 100)
    assert low_rank_budget(0.99, 4.0) == pytest.approx(0.04)
    assert low_rank_budget(0.5, 4.0) == 1.0
    with pytest.raises(ValueError, match="oversample"):
        low_rank_budget(0.9, 0.5)


class _Quadratic:
    """L(w) = ½ Σ a_i w_i² − Σ b_i w_i: gradients and Hessian known by hand (∂L/∂w = a w − b, H = diag a)."""

    xp = xp

    def __init__(self, theta, a, b, data=True):
        self.theta, self.a, self.b, self._data = theta, a, b, data

    @property
    def has_data(self):
        return self._data

    def weights(self):
        return dict(self.theta)

    def structure(self):
        return {n: CoreInfo("l", "dense") for n in self.theta}

    def loss_gradient(self, masks):
        return {n: self.a[n] * self.theta[n] * masks[n] - self.b[n] for n in self.theta}

    def hessian_gradient_product(self, masks):
        g = self.loss_gradient(masks)
        return {n: self.a[n] * g[n] for n in self.theta}

    def synflow_gradient(self, masks):
        return {n: np.ones_like(t) for n, t in self.theta.items()}


def _problem(data=True):
    theta = {"w": np.array([1.0, -2.0, 0.5, 3.0])}
    a = {"w": np.array([1.0, 2.0, 3.0, 0.1])}
    b = {"w": np.array([0.0, 1.0, -1.0, 2.0])}
    return _Quadratic(theta, a, b, data)


def test_scores_hand_computed():
    p = _problem()
    # magnitude |θ|
    np.testing.assert_array_equal(
        tedepr.pruning.compute_scores(p, "magnitude")["w"], [1.0, 2.0, 0.5, 3.0]
    )
    # snip |θ ⊙ (aθ − b)|: g = [1, -5, 2.5, -1.7] -> [1, 10, 1.25, 5.1]
    np.testing.assert_allclose(
        tedepr.pruning.compute_scores(p, "snip")["w"], [1.0, 10.0, 1.25, 5.1]
    )
    # grasp importance θ ⊙ H g = θ ⊙ a ⊙ g -> [1, 20, 3.75, -0.51]
    np.testing.assert_allclose(
        tedepr.pruning.compute_scores(p, "grasp")["w"], [1.0, 20.0, 3.75, -0.51]
    )
    masks = prune(p, "snip", 2)
    np.testing.assert_array_equal(masks["w"], [False, True, False, True])


def test_iterative_scores_rescore_the_pruned_network():
    p = _problem()
    # FORCE at the final round sees the pruned network: gradients change with the masks
    masks = prune(p, "force", 1, rounds=3)
    assert count_kept(masks) == 1
    # synflow with constant gradient reduces to magnitude; pruned entries never return
    masks = prune(p, "synflow", 2, rounds=5)
    np.testing.assert_array_equal(masks["w"], [False, True, False, True])


def test_registry_and_data_errors():
    assert set(tedepr.scores.available()) >= {
        "random",
        "magnitude",
        "snip",
        "grasp",
        "synflow",
        "force",
        "trainability",
    }
    with pytest.raises(ValueError, match="score must be one of"):
        prune(_problem(), "nope", 1)
    with pytest.raises(ValueError, match="needs data"):
        prune(_problem(data=False), "snip", 1)
    masks = prune(_problem(data=False), "magnitude", 1)
    assert count_kept(masks) == 1
    with pytest.raises(ValueError, match="keep"):
        prune(_problem(), "magnitude", 0)


def test_nonfinite_scores_are_an_error():
    p = _problem()
    p.theta = {"w": np.array([1.0, np.inf, 0.0, 1.0])}
    with pytest.raises(FloatingPointError, match="NaN or infinite"):
        prune(p, "magnitude", 1)


def test_random_score_is_seeded():
    a = prune(_problem(), "random", 2, seed=3)
    b = prune(_problem(), "random", 2, seed=3)
    np.testing.assert_array_equal(a["w"], b["w"])
