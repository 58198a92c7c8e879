"""Decompositions: exactness at full rank, a-priori error bounds, agreement with the textbook
reference (loop TT-SVD, HOSVD), HOOI never worse than HOSVD, CP-ALS recovering an exact CP tensor,
conv kernels."""

from __future__ import annotations

import math

import array_api_compat
import numpy as np
import pytest
from conftest import (
    DTYPES,
    RTOL,
    assert_close,
    check_examples,
    draw_array,
    lib_name,
    rel_error,
    rounded,
    to_numpy,
    to_xp,
)
from hypothesis import strategies as st

import reference
import tedepr

# Rounding slack of an a-priori bound that may be exactly 0 (nothing discarded): the bound holds in
# exact arithmetic, the computed reconstruction carries float64 rounding on top.
BOUND_SLACK = 1e-12


@st.composite
def matrices(draw, min_modes=1, max_modes=3, equal=True, min_mode=1, max_mode=4):
    """``(W, in_modes, out_modes)``: a standard-normal NumPy float64 matrix over drawn modes."""
    p = draw(st.integers(min_modes, max_modes))
    q = p if equal else draw(st.integers(min_modes, max_modes))
    mode = st.integers(min_mode, max_mode)
    in_modes = tuple(draw(st.lists(mode, min_size=p, max_size=p)))
    out_modes = tuple(draw(st.lists(mode, min_size=q, max_size=q)))
    w = draw_array(draw, (math.prod(in_modes), math.prod(out_modes)))
    return w, in_modes, out_modes


def frobenius(a) -> float:
    return float(np.linalg.norm(np.asarray(to_numpy(a), dtype=np.float64)))


def reference_dense(f) -> np.ndarray:
    """The reference reconstruction of a tedepr result, from its cores copied to NumPy float64."""
    cores = [to_numpy(c).astype(np.float64) for c in f.cores]
    if f.format == "tucker":
        it = iter(cores[1:])
        cores = (cores[0], [None if r is None else next(it) for r in f.ranks])
    return reference.to_dense(f.format, cores, f.in_modes, f.out_modes)


def tt_caps(in_modes, out_modes):
    sizes = [n * m for n, m in zip(in_modes, out_modes)]
    return [min(math.prod(sizes[:k]), math.prod(sizes[k:])) for k in range(1, len(sizes))]


# ----------------------------------------------------------------------------- full rank is exact
@st.composite
def full_rank_cases(draw):
    fmt = draw(st.sampled_from(("tt", "tr", "tucker")))
    w, im, om = draw(matrices(min_modes=2 if fmt == "tr" else 1, equal=fmt != "tucker"))
    if fmt == "tr":
        # TR-SVD splits the first unfolding's rank as r_0·r_1: exact when r_0 divides it
        rank1 = min(im[0] * om[0], w.size // (im[0] * om[0]))
        r0 = draw(st.sampled_from([r for r in range(1, rank1 + 1) if rank1 % r == 0]))
        options = dict(rank=(r0,) + (10**6,) * (len(im) - 1) + (r0,))
    elif fmt == "tucker":
        factored = draw(
            st.lists(st.booleans(), min_size=len(im + om), max_size=len(im + om)).filter(any)
        )
        options = dict(rank=tuple(d if f else None for d, f in zip(im + om, factored)))
    else:
        options = {}
    return fmt, w, im, om, options


def test_full_rank_decompositions_reproduce_the_input(xp):
    def check(case, dtype):
        fmt, w, im, om, options = case
        f = tedepr.decompose(to_xp(xp, w, dtype), fmt, in_modes=im, out_modes=om, **options)
        assert f.format == fmt and f.in_modes == im and f.out_modes == om
        expected = rounded(w, dtype)
        assert_close(f.to_dense(), expected, dtype, xp=xp)
        assert_close(f.to_dense(), reference_dense(f), dtype, xp=xp)
        measured = frobenius(reference_dense(f) - expected) / frobenius(expected)
        assert f.error <= RTOL[dtype] and abs(f.error - measured) <= RTOL[dtype]

    check_examples(xp, check, jax=3, case=full_rank_cases(), dtype=st.sampled_from(DTYPES))


# ----------------------------------------------------------------------------- TT-SVD
def test_tt_svd_bound_and_reference(xp):
    def check(case, max_rank, rtol):
        w, im, om = case
        ranks = (1,) + tuple(min(max_rank, c) for c in tt_caps(im, om)) + (1,)
        f, bound = tedepr.tt_svd(to_xp(xp, w, "float64"), im, om, ranks, rtol)
        ref_cores, discarded_sq = reference.tt_svd(w, im, om, ranks, rtol)
        # Oseledets (2011, Thm 2.2): ‖W − Ŵ‖_F ≤ sqrt(Σ discarded σ²)
        err = frobenius(reference_dense(f) - w)
        assert err <= bound * (1 + 1e-9) + BOUND_SLACK * frobenius(w)
        assert math.isclose(bound, math.sqrt(discarded_sq), rel_tol=1e-10, abs_tol=1e-12)
        assert f.ranks == tuple(c.shape[0] for c in ref_cores) + (1,)
        assert_close(f.to_dense(), reference.tt_to_dense(ref_cores), "float64", xp=xp)
        assert math.isclose(f.error, err / frobenius(w), rel_tol=1e-9, abs_tol=1e-13)
        if rtol is not None and all(r < c for r, c in zip(f.ranks[1:-1], ranks[1:-1])):
            assert f.error <= rtol * (1 + 1e-9)  # no cap was binding: the target is met

    check_examples(
        xp,
        check,
        jax=3,
        case=matrices(min_modes=2, min_mode=2),
        max_rank=st.integers(1, 4),
        rtol=st.none() | st.sampled_from((0.05, 0.3, 0.6)),
    )


# ----------------------------------------------------------------------------- TR-SVD
def test_tr_svd_bound(xp):
    def check(case, r0, interior):
        w, im, om = case
        rank = (r0,) + (interior,) * (len(im) - 1) + (r0,)
        f, bound = tedepr.tr_svd(to_xp(xp, w, "float64"), im, om, rank)
        assert f.ranks[0] == f.ranks[-1] == r0
        assert all(r <= interior for r in f.ranks[1:-1])
        err = frobenius(reference_dense(f) - w)
        assert err <= bound * (1 + 1e-9) + BOUND_SLACK * frobenius(w)
        assert_close(f.to_dense(), reference_dense(f), "float64", xp=xp)

    # modes >= 2 keep the first unfolding's rank >= 4 >= r_0 (a larger r_0 is a documented error)
    check_examples(
        xp,
        check,
        jax=3,
        case=matrices(min_modes=2, min_mode=2),
        r0=st.integers(1, 2),
        interior=st.integers(1, 4),
    )


# ----------------------------------------------------------------------------- Tucker
@st.composite
def tucker_cases(draw):
    w, im, om = draw(matrices(max_modes=2, equal=False, min_mode=2))
    dims = im + om
    ranks = tuple(draw(st.none() | st.integers(1, d)) for d in dims)
    if all(r is None for r in ranks):
        ranks = (1,) + ranks[1:]
    return w, im, om, ranks


def test_hosvd_bound_and_reference(xp):
    def check(case):
        w, im, om, ranks = case
        factored = tuple(r is not None for r in ranks)
        f, bound = tedepr.hosvd(to_xp(xp, w, "float64"), im, om, ranks, factored=factored)
        # ranks are upper bounds: a generic W's mode-k unfolding has rank min(dim_k, Π other dims)
        dims = im + om
        assert f.ranks == tuple(
            None if r is None else min(r, math.prod(dims) // dims[k]) for k, r in enumerate(ranks)
        )
        core, factors = reference.hosvd(w.reshape(im + om), list(ranks))
        expected = reference.tucker_to_dense(core, factors, im, om)  # same projections: same Ŵ
        assert_close(f.to_dense(), expected, "float64", xp=xp)
        err = frobenius(expected - w)
        assert err <= bound * (1 + 1e-9) + BOUND_SLACK * frobenius(w)  # De Lathauwer et al. 2000
        assert math.isclose(f.error, err / frobenius(w), rel_tol=1e-9, abs_tol=1e-13)

    check_examples(xp, check, jax=3, case=tucker_cases())


def test_hooi_is_never_worse_than_hosvd(xp):
    def check(case):
        w, im, om, ranks = case
        factored = tuple(r is not None for r in ranks)
        wx = to_xp(xp, w, "float64")
        h, _ = tedepr.hosvd(wx, im, om, ranks, factored=factored)
        o = tedepr.decompose(wx, "tucker", ranks, method="hooi", in_modes=im, out_modes=om)
        assert all((r is None) == (q is None) for r, q in zip(o.ranks, ranks))
        assert all(r is None or r <= q for r, q in zip(o.ranks, ranks))
        measured = frobenius(reference_dense(o) - w) / frobenius(w)
        assert math.isclose(o.error, measured, rel_tol=1e-9, abs_tol=1e-13)
        assert measured <= h.error * (1 + 1e-9) + 1e-13
        # HOOI's factors stay orthonormal: UᵀU = I
        for u in o.factors:
            if u is not None:
                u = to_numpy(u)
                np.testing.assert_allclose(u.T @ u, np.eye(u.shape[1]), atol=1e-12)

    check_examples(xp, check, n=15, jax=2, case=tucker_cases())


# ----------------------------------------------------------------------------- CP-ALS
@st.composite
def exact_cp_tensors(draw):
    """A matrix that is exactly rank-R CP over its modes, with well-separated factor columns.

    Each factor is an orthonormal basis times a unit-upper-triangular mixing (column congruence
    bounded away from 1) times column weights in [0.5, 2]: ALS then converges to rounding level
    (Gaussian factors can sit in an ALS swamp for thousands of sweeps, which tests nothing useful).
    """
    p, q = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    mode = st.integers(3, 4)
    im = tuple(draw(st.lists(mode, min_size=p, max_size=p)))
    om = tuple(draw(st.lists(mode, min_size=q, max_size=q)))
    rank = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    factors = []
    for n in im + om:
        basis, _ = np.linalg.qr(rng.standard_normal((n, rank)))
        mixing = np.eye(rank) + 0.5 * np.triu(rng.uniform(-1, 1, (rank, rank)), 1)
        factors.append(basis @ mixing * rng.uniform(0.5, 2.0, rank))
    return reference.cp_to_dense(factors, im, om), im, om, rank


def test_cp_als_recovers_an_exact_cp_tensor(xp):
    def check(case):
        w, im, om, rank = case
        f = tedepr.decompose(
            to_xp(xp, w, "float64"), "cp", rank, in_modes=im, out_modes=om, n_iter=500
        )
        assert f.ranks == (rank,) and f.num_params == rank * sum(im + om)
        assert_close(f.to_dense(), w, "float64", xp=xp)
        measured = frobenius(reference_dense(f) - w) / frobenius(w)
        assert measured <= RTOL["float64"] and abs(f.error - measured) <= RTOL["float64"]

    check_examples(xp, check, n=15, jax=2, case=exact_cp_tensors())


def test_cp_als_rank_above_a_mode_size(xp):
    # R = 5 exceeds the modes 2 and 3: the SVD start has fewer columns than R and is padded with
    # random ones, created on the input's device (array_api_strict: a second device)
    device = xp.Device("device1") if lib_name(xp) == "array_api_strict" else None
    w = np.random.default_rng(0).standard_normal((6, 4))
    wx = to_xp(xp, w, "float64", device=device)
    f = tedepr.decompose(wx, "cp", 5, in_modes=(2, 3), out_modes=(4,), n_iter=30)
    assert f.ranks == (5,) and [tuple(c.shape) for c in f.cores] == [(2, 5), (3, 5), (4, 5)]
    if device is not None:
        assert all(array_api_compat.device(c) == device for c in f.cores)
    measured = frobenius(reference_dense(f) - w) / frobenius(w)
    # each ALS update is a least-squares solve, so it never does worse than all-zero factors
    assert measured < 1 and math.isclose(f.error, measured, rel_tol=1e-9)


# ----------------------------------------------------------------------------- conv kernels
@st.composite
def kernels(draw):
    c_out, c_in = draw(st.sampled_from((1, 2, 4, 6))), draw(st.sampled_from((1, 2, 3, 4)))
    ks = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return draw_array(draw, (c_out, c_in) + ks)


def test_decompose_conv_full_rank_reproduces_the_kernel(xp):
    def check(kernel, fmt, dtype):
        k = to_xp(xp, kernel, dtype)
        f = tedepr.decompose_conv(k, fmt)
        assert f.kernel_size == kernel.shape[2:]
        expected = rounded(kernel, dtype)
        assert_close(f.to_kernel(), expected, dtype, xp=xp)
        # the kernel's matrix view is the reference's, and the reference rebuilds the same kernel
        assert_close(f.to_dense(), reference.kernel_to_matrix(expected), dtype, xp=xp)
        np.testing.assert_allclose(
            reference.matrix_to_kernel(reference_dense(f), f.kernel_size),
            expected,
            rtol=0,
            atol=RTOL[dtype] * np.abs(expected).max(),
        )
        if fmt == "tucker":
            assert f.ranks[1] is None  # Tucker-2: the spatial mode stays in the core
        assert rel_error(f.to_kernel(), expected) <= RTOL[dtype]

    check_examples(
        xp,
        check,
        jax=3,
        kernel=kernels(),
        fmt=st.sampled_from(("tt", "tucker")),
        dtype=st.sampled_from(DTYPES),
    )


def test_tr_svd_is_exact_when_the_boundary_rank_does_not_divide_the_unfolding_rank():
    # first unfolding (3*5) x (4*2) has rank 8; r_0 = 3 does not divide it: r_1 rounds up to 3
    w = np.random.default_rng(7).standard_normal((12, 10))
    f = tedepr.decompose(w, "tr", (3, 4, 3), in_modes=(3, 4), out_modes=(5, 2))
    assert f.ranks == (3, 3, 3)
    assert f.error < 1e-12
    np.testing.assert_allclose(np.asarray(f.to_dense()), w, atol=1e-12)


def test_hosvd_warns_when_a_mode_cannot_hold_the_requested_rank():
    # mode 0 (size 8) of an 8x2 matrix has only 2 singular vectors: rank 6 cannot be honoured silently
    w = np.random.default_rng(0).standard_normal((8, 2))
    with pytest.warns(UserWarning, match="mode 0 can hold at most rank 2"):
        f, _ = tedepr.hosvd(w, (8,), (2,), rank=(6, 2))
    assert f.ranks == (2, 2)
