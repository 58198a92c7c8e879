"""Bad input gets a clear ValueError/TypeError naming the argument and what is allowed; an int rank
that the modes cannot hold is capped with a warning (never silently), and the result reports it."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tedepr

W12x6 = np.random.default_rng(0).standard_normal((12, 6))
MODES = dict(in_modes=(3, 4), out_modes=(2, 3))


def tt():
    return tedepr.random_factorized("tt", 12, 6, 2, std=0.1, seed=0, **MODES)


# ----------------------------------------------------------------------------- formats
@pytest.mark.parametrize(
    "call",
    [
        lambda: tedepr.random_factorized("ttm", 12, 6, 2),
        lambda: tedepr.random_factorized_conv("block", 4, 4, 3, 2),
        lambda: tedepr.decompose(W12x6, "TTT", rank=2),
        lambda: tedepr.from_cores("mps", [np.ones((1, 2, 2, 1))], (2,), (2,)),
        lambda: tedepr.solve_ranks("hierarchical", 2, (2,), (2,)),
    ],
    ids=["random_factorized", "random_factorized_conv", "decompose", "from_cores", "solve_ranks"],
)
def test_unknown_format(call):
    with pytest.raises(ValueError, match=r"format must be one of 'tt', 'tr', 'tucker', 'cp'"):
        call()


# ----------------------------------------------------------------------------- modes
@pytest.mark.parametrize(
    "call, name",
    [
        (
            lambda: tedepr.random_factorized("tt", 12, 6, 2, in_modes=(3, 3), out_modes=(2, 3)),
            "in_modes",
        ),
        (
            lambda: tedepr.random_factorized("tucker", 12, 6, 2, in_modes=(3, 4), out_modes=(7,)),
            "out_modes",
        ),
        (lambda: tedepr.decompose(W12x6, "tt", in_modes=(2, 2, 2), out_modes=(2, 3)), "in_modes"),
    ],
)
def test_modes_must_multiply_to_the_dimension(call, name):
    with pytest.raises(ValueError, match=rf"{name}=\(.*\) multiply to \d+, but the dimension is"):
        call()


def test_modes_must_be_positive():
    with pytest.raises(ValueError, match="in_modes must be a non-empty sequence of positive ints"):
        tedepr.random_factorized("tt", 12, 6, 2, in_modes=(12, 1, 0), out_modes=(2, 3, 1))


def test_tt_needs_as_many_in_as_out_modes():
    with pytest.raises(ValueError, match=r"as many in_modes as out_modes.*pad the shorter side"):
        tedepr.random_factorized("tt", 12, 6, 2, in_modes=(3, 4), out_modes=(6,))


# ----------------------------------------------------------------------------- ranks
@pytest.mark.parametrize("fmt", tedepr.FORMATS)
@pytest.mark.parametrize("rank", [0, -3])
def test_rank_below_one(fmt, rank):
    with pytest.raises(ValueError, match=rf"rank must be >= 1; got {rank}"):
        tedepr.random_factorized(fmt, 12, 6, rank, **MODES)


def test_explicit_rank_tuple_entries_below_one():
    with pytest.raises(ValueError, match=r"rank for format 'tt' with 2 cores must be 3 positive"):
        tedepr.random_factorized("tt", 12, 6, (1, 0, 1), **MODES)
    with pytest.raises(ValueError, match=r"rank for format 'cp' must be one positive int"):
        tedepr.random_factorized("cp", 12, 6, (0,), **MODES)


def test_explicit_tt_ranks_above_the_maximum():
    # in (3, 4), out (2, 3): bond 1 can hold at most min(3·2, 4·3) = 6
    with pytest.raises(
        ValueError,
        match=r"rank=\(1, 7, 1\) exceeds the largest ranks the modes "
        r"allow, \(1, 6, 1\), at bonds \[1\]",
    ):
        tedepr.random_factorized("tt", 12, 6, (1, 7, 1), **MODES)
    assert tedepr.random_factorized("tt", 12, 6, (1, 6, 1), **MODES).ranks == (1, 6, 1)


def test_explicit_tucker_rank_above_the_mode_size():
    with pytest.raises(ValueError, match=r"rank\[1\]=5 must be between 1 and the mode size 4"):
        tedepr.random_factorized("tucker", 12, 6, (2, 5, 2, 2), **MODES)


def test_tt_boundary_ranks_must_be_one():
    with pytest.raises(ValueError, match=r"rank for format 'tt' must start and end with 1"):
        tedepr.random_factorized("tt", 12, 6, (2, 2, 2), **MODES)
    with pytest.raises(ValueError, match=r"TT-matrix needs boundary ranks r_0 = r_d = 1"):
        tedepr.TTMatrix([np.ones((2, 3, 2, 2)), np.ones((2, 4, 3, 2))])


def test_tr_boundary_ranks_must_agree():
    with pytest.raises(ValueError, match=r"rank for format 'tr' must have equal boundary ranks"):
        tedepr.random_factorized("tr", 12, 6, (2, 3, 3), **MODES)
    with pytest.raises(ValueError, match=r"tensor ring needs equal boundary ranks r_0 == r_d"):
        tedepr.TRMatrix([np.ones((2, 3, 2, 2)), np.ones((2, 4, 3, 3))])


def test_cores_must_chain():
    with pytest.raises(ValueError, match=r"cores\[0\] ends with rank 2 but cores\[1\] starts with"):
        tedepr.TTMatrix([np.ones((1, 3, 2, 2)), np.ones((3, 4, 3, 1))])


@pytest.mark.parametrize("frac", [0.0, -0.5, 1.5, math.inf, math.nan])
def test_float_rank_outside_the_unit_interval(frac):
    with pytest.raises(
        ValueError,
        match=r"rank as a float is a parameter budget and must be in "
        r"\(0, 1\]",
    ):
        tedepr.random_factorized("tt", 12, 6, frac, **MODES)


def test_float_budget_too_small_for_rank_one():
    with pytest.raises(ValueError, match=r"rank=0.001 allows 0 parameters, but even rank 1 needs"):
        tedepr.random_factorized("tt", 12, 6, 0.001, **MODES)


@pytest.mark.parametrize("rank", [None, True, 2.0j])
def test_rank_of_the_wrong_type(rank):
    with pytest.raises(TypeError, match="rank must be an int, a tuple of ints or a float budget"):
        tedepr.solve_ranks("tt", rank, (3, 4), (2, 3))
    with pytest.raises(TypeError, match=r"rank must hold ints; got \('8', 2, 1\)"):
        tedepr.solve_ranks("tt", ("8", 2, 1), (3, 4), (2, 3))


@pytest.mark.parametrize(
    "fmt, rank, expected",
    [
        ("tt", 10, (1, 6, 1)),
        ("tucker", 4, (3, 4, 2, 3)),
    ],
)
def test_int_rank_that_must_be_capped_warns(fmt, rank, expected):
    with pytest.warns(
        UserWarning,
        match=rf"rank={rank} exceeds what the modes .* allow on some "
        rf"bonds; using ranks {expected!r}".replace("(", r"\(").replace(")", r"\)"),
    ):
        f = tedepr.random_factorized(fmt, 12, 6, rank, **MODES)
    assert f.ranks == expected
    with pytest.warns(UserWarning, match="exceeds what the modes"):
        g = tedepr.decompose(W12x6, fmt, rank=rank, **MODES)
    assert g.ranks == expected  # a generic W has full-rank unfoldings: the caps are reached
    np.testing.assert_allclose(np.asarray(g.to_dense()), W12x6, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- contraction
def test_x_last_dim_must_be_n_in():
    with pytest.raises(
        ValueError,
        match=r"x must have shape \(\.\.\., 12\) to multiply a 12x6 TT "
        r"matrix; got shape \(5, 11\)",
    ):
        tedepr.contract(np.ones((5, 11)), tt())
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 12\)"):
        tedepr.contract(np.float64(1.0), tt())


def test_f_must_be_factorized():
    with pytest.raises(TypeError, match="f must be a tedepr Factorized matrix; got ndarray"):
        tedepr.contract(np.ones((5, 12)), np.ones((12, 6)))


@pytest.mark.torch
def test_mixed_array_libraries():
    torch = pytest.importorskip("torch")
    f = tedepr.random_factorized("tt", 12, 6, 2, seed=0, xp=torch, **MODES)
    with pytest.raises(
        TypeError,
        match=r"x and f.cores must come from the same array library.*"
        r"numpy\.ndarray, torch\.Tensor",
    ):
        tedepr.contract(np.ones((5, 12)), f)
    with pytest.raises(TypeError, match=r"different array libraries cannot be mixed"):
        tedepr.TTMatrix([np.ones((1, 3, 2, 2)), torch.ones((2, 4, 3, 1))])


@pytest.mark.parametrize("strategy", ["fast", "Chain", None])
def test_unknown_strategy(strategy):
    with pytest.raises(
        ValueError,
        match=r"strategy must be one of 'auto', 'chain', 'optimal', "
        r"'reconstruct'",
    ):
        tedepr.contract(np.ones((5, 12)), tt(), strategy=strategy)


def test_negative_batch():
    with pytest.raises(ValueError, match="batch must be a non-negative int; got -1"):
        tedepr.plan_contraction(tt(), -1)


# ----------------------------------------------------------------------------- decompositions
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_decompose_rejects_non_finite_input(bad):
    w = W12x6.copy()
    w[3, 2] = bad
    with pytest.raises(ValueError, match="w contains NaN or infinite values"):
        tedepr.decompose(w, "tt", **MODES)
    kernel = np.ones((4, 2, 3, 3))
    kernel[0, 0, 0, 0] = bad
    with pytest.raises(ValueError, match="kernel contains NaN or infinite values"):
        tedepr.decompose_conv(kernel, "tucker")


def test_decompose_rejects_integer_and_non_matrix_input():
    with pytest.raises(TypeError, match="w must have a real floating dtype"):
        tedepr.decompose(np.ones((12, 6), dtype=np.int64), "tt")
    with pytest.raises(ValueError, match=r"w must be a matrix \(N_in, N_out\)"):
        tedepr.decompose(np.ones((2, 6, 6)), "tt")
    with pytest.raises(TypeError, match="w must be an array; got list"):
        tedepr.decompose([[1.0, 2.0]], "tt")


@pytest.mark.parametrize("rtol", [-0.1, 1.0, math.nan])
def test_decompose_rtol_range(rtol):
    with pytest.raises(ValueError, match=r"rtol must be in \[0, 1\)"):
        tedepr.decompose(W12x6, "tt", rtol=rtol, **MODES)


def test_decompose_required_arguments():
    with pytest.raises(ValueError, match="rank is required for format 'tr'"):
        tedepr.decompose(W12x6, "tr", **MODES)
    with pytest.raises(ValueError, match="rank is required for format 'cp'"):
        tedepr.decompose(W12x6, "cp", **MODES)
    with pytest.raises(ValueError, match="method applies to format 'tucker' only"):
        tedepr.decompose(W12x6, "tt", method="hooi", **MODES)
    with pytest.raises(ValueError, match="method must be 'hosvd' or 'hooi'"):
        tedepr.decompose(W12x6, "tucker", method="als", **MODES)


def test_tr_boundary_rank_larger_than_the_first_unfolding():
    # in (3, 4), out (2, 3): the first unfolding has 6 rows, so r_0 = 7 cannot split its rank
    with pytest.raises(ValueError, match="rank: boundary rank r_0=7 exceeds the rank 6"):
        tedepr.decompose(W12x6, "tr", rank=7, **MODES)


# ----------------------------------------------------------------------------- init
def test_init_arguments():
    with pytest.raises(ValueError, match=r"std must be a positive finite number; got -0.1"):
        tedepr.random_factorized("tt", 12, 6, 2, std=-0.1, **MODES)
    with pytest.raises(ValueError, match=r"init must be one of 'torch', 'he', 'glorot', 'lecun'"):
        tedepr.random_factorized("tt", 12, 6, 2, init="xavier", **MODES)
    with pytest.raises(ValueError, match="kernel_size must be a positive int or a pair of them"):
        tedepr.random_factorized_conv("tt", 4, 4, (3, 0), 2)
    with pytest.raises(ValueError, match="in_features must be a positive int; got 0"):
        tedepr.random_factorized("tt", 0, 6, 2)
