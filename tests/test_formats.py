"""Formats against the NumPy reference: dense reconstruction, parameter counts, ranks, kernels."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from conftest import DTYPES, assert_close, check_examples, factorized_specs, to_numpy, to_xp
from hypothesis import given
from hypothesis import strategies as st

import reference
import tedepr
from tedepr.shapes import count_params


def independent_num_params(spec) -> int:
    """Parameter count written from docs/method.md §2, not from any core's shape."""
    fmt, im, om, ranks = spec.format, spec.in_modes, spec.out_modes, spec.ranks
    if fmt in ("tt", "tr"):
        return sum(ranks[k] * im[k] * om[k] * ranks[k + 1] for k in range(len(im)))
    dims = im + om
    if fmt == "cp":
        return ranks[0] * sum(dims)
    core = 1
    factors = 0
    for dim, r in zip(dims, ranks):
        core *= dim if r is None else r
        factors += 0 if r is None else dim * r
    return core + factors


def test_to_dense_matches_reference(xp):
    def check(spec, dtype):
        f = spec.build(xp, dtype)
        expected = reference.to_dense(
            spec.format,
            spec.reference_cores(spec.rounded_cores(dtype)),
            spec.in_modes,
            spec.out_modes,
        )
        assert_close(f.to_dense(), expected, dtype, xp=xp)

    check_examples(xp, check, spec=factorized_specs(), dtype=st.sampled_from(DTYPES))


@given(spec=factorized_specs())
def test_structure_and_num_params(spec):
    f = spec.build(np, "float64")
    assert f.format == spec.format
    assert f.in_modes == spec.in_modes and f.out_modes == spec.out_modes
    assert f.shape == (spec.n_in, spec.n_out)
    assert tuple(f.ranks) == spec.ranks
    expected = independent_num_params(spec)
    assert f.num_params == expected
    assert count_params(spec.format, spec.in_modes, spec.out_modes, spec.ranks) == expected
    assert math.isclose(f.compression, spec.n_in * spec.n_out / expected)
    # the planned network holds exactly the drawn cores, in order, with their own shapes
    assert [tuple(c.shape) for c in f.cores] == [c.shape for c in spec.cores]
    assert len(f.network().operands) == len(spec.cores)
    # explicit ranks are validated and returned unchanged by the rank solver
    assert tedepr.solve_ranks(spec.format, spec.ranks, spec.in_modes, spec.out_modes) == spec.ranks


def test_with_cores_rebuilds_without_touching_the_original(xp):
    def check(spec, seed):
        f = spec.build(xp, "float64")
        new = [np.random.default_rng(seed).standard_normal(c.shape) for c in spec.cores]
        g = f.with_cores([to_xp(xp, c, "float64") for c in new])
        assert type(g) is type(f) and g.ranks == f.ranks and g is not f
        expected = reference.to_dense(
            spec.format, spec.reference_cores(new), spec.in_modes, spec.out_modes
        )
        assert_close(g.to_dense(), expected, "float64", xp=xp)
        for c, c0 in zip(f.cores, spec.cores):
            np.testing.assert_array_equal(to_numpy(c), c0)

    check_examples(xp, check, spec=factorized_specs(), seed=st.integers(0, 2**32 - 1))


def _conv_rank_is_capped(fmt, c_in, c_out, ks, rank) -> bool:
    im, om = tedepr.conv_modes(fmt, c_in, c_out, ks)
    if fmt == "tt":
        sizes = [n * m for n, m in zip(im, om)]
        return any(
            min(math.prod(sizes[:k]), math.prod(sizes[k:])) < rank for k in range(1, len(sizes))
        )
    if fmt == "tucker":
        return c_in < rank or c_out < rank
    return False


def test_to_kernel_matches_reference(xp):
    channels = st.sampled_from((1, 2, 3, 4, 6))

    def check(fmt, c_in, c_out, ks, rank, seed, dtype):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            f = tedepr.random_factorized_conv(
                fmt, c_in, c_out, ks, rank, std=1.0, seed=seed, xp=xp, dtype=getattr(xp, dtype)
            )
        # an int rank is capped with a warning exactly where the modes allow less, never silently
        capped = _conv_rank_is_capped(fmt, c_in, c_out, ks, rank)
        assert any("rank" in str(w.message) for w in caught) == capped
        assert f.kernel_size == ks
        cores = [to_numpy(c).astype(np.float64) for c in f.cores]
        if fmt == "tucker":  # Tucker-2: the spatial mode has no factor
            ref_cores = (cores[0], [cores[1], None, cores[2]])
        else:
            ref_cores = cores
        w = reference.to_dense(fmt, ref_cores, f.in_modes, f.out_modes)
        assert w.shape == (c_in * ks[0] * ks[1], c_out)
        assert_close(f.to_kernel(), reference.matrix_to_kernel(w, ks), dtype, xp=xp)
        kk = ks[0] * ks[1]  # the scheme layouts of docs/method.md §2
        if fmt in ("tt", "tr"):
            assert f.in_modes[-1] == kk and f.out_modes[-1] == 1
            assert math.prod(f.in_modes[:-1]) == c_in and math.prod(f.out_modes[:-1]) == c_out
        elif fmt == "tucker":
            assert (f.in_modes, f.out_modes) == ((c_in, kk), (c_out,)) and f.ranks[1] is None
        else:
            assert (f.in_modes, f.out_modes) == ((c_in,) + ks, (c_out,))

    check_examples(
        xp,
        check,
        fmt=st.sampled_from(("tt", "tr", "tucker", "cp")),
        c_in=channels,
        c_out=channels,
        ks=st.tuples(st.integers(1, 3), st.integers(1, 3)),
        rank=st.integers(1, 3),
        seed=st.integers(0, 2**32 - 1),
        dtype=st.sampled_from(DTYPES),
    )


def test_to_kernel_needs_kernel_size():
    f = tedepr.random_factorized("tt", 4, 4, 2, seed=0, in_modes=(2, 2), out_modes=(2, 2))
    with pytest.raises(ValueError, match="kernel_size"):
        f.to_kernel()


@pytest.mark.parametrize("fmt", ["tt", "tr"])
def test_one_core_train_and_ring(fmt):
    # prime sizes give one mode per side (auto_modes): a one-core TT, and a one-core ring whose
    # element is a trace over the ring bond
    f = tedepr.random_factorized(fmt, 7, 5, 3, std=1.0, seed=0)
    assert f.in_modes == (7,) and f.out_modes == (5,)
    cores = [np.asarray(c) for c in f.cores]
    expected = reference.to_dense(fmt, cores, (7,), (5,))
    if fmt == "tr":
        assert f.ranks == (3, 3)
        np.testing.assert_allclose(expected, np.trace(cores[0], axis1=0, axis2=3), rtol=1e-14)
    assert_close(f.to_dense(), expected, "float64", xp=tedepr.get_namespace(f.cores[0]))
