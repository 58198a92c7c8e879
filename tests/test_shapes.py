"""Mode factorisation and rank solving (tedepr.shapes) against independent closed forms."""

from __future__ import annotations

import math
import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tedepr import shapes
from tedepr.shapes import (
    auto_modes,
    axis_modes,
    balanced_modes,
    count_params,
    max_tt_ranks,
    prime_factors,
    solve_ranks,
)


def is_prime(p: int) -> bool:
    return p >= 2 and all(p % k for k in range(2, math.isqrt(p) + 1))


@given(n=st.integers(1, 10**6))
def test_prime_factors(n):
    factors = prime_factors(n)
    assert math.prod(factors) == n
    assert all(is_prime(p) for p in factors)
    assert factors == sorted(factors)


@given(n=st.integers(1, 5000), d=st.integers(1, 6))
def test_balanced_modes(n, d):
    modes = balanced_modes(n, d)
    assert len(modes) == d and math.prod(modes) == n
    assert list(modes) == sorted(modes, reverse=True)
    if len(prime_factors(n)) >= d:
        assert min(modes) >= 2  # no size-1 mode while primes are left to share
    else:
        assert modes.count(1) == d - len(prime_factors(n))
    # greedy largest-prime-first: no mode exceeds the smallest by more than a factor of the
    # largest prime (else that prime would have gone to the smaller mode)
    if min(modes) > 1:
        assert max(modes) <= min(modes) * max(prime_factors(n))


@given(n_in=st.integers(1, 4096), n_out=st.integers(1, 4096), d=st.none() | st.integers(1, 5))
def test_auto_modes(n_in, n_out, d):
    in_modes, out_modes = auto_modes(n_in, n_out, d)
    assert math.prod(in_modes) == n_in and math.prod(out_modes) == n_out
    expected_d = (
        d if d is not None else max(1, min(4, len(prime_factors(n_in)), len(prime_factors(n_out))))
    )
    assert len(in_modes) == len(out_modes) == expected_d


@given(shape=st.lists(st.integers(1, 64), min_size=1, max_size=4), d=st.integers(1, 6))
def test_axis_modes_never_mix_axes(shape, d):
    modes = axis_modes(shape, d)
    assert math.prod(modes) == math.prod(shape)
    axes = [a for a in shape if a > 1] or [1]
    caps = [max(1, len(prime_factors(a))) for a in axes]
    assert len(modes) == min(max(d, len(axes)), sum(caps))
    # the modes split, in order, into consecutive groups whose products are the axes
    i = 0
    for a in axes:
        prod, start = 1, i
        while i == start or prod < a:
            prod *= modes[i]
            i += 1
        assert prod == a and i > start, (shape, d, modes)
    assert i == len(modes)


def test_axis_modes_examples_and_errors():
    assert axis_modes((1, 28, 28), 4) == (7, 4, 7, 4)  # rows (coarse, fine), then columns
    assert balanced_modes(784, 4) == (7, 7, 4, 4)  # the axis-blind factorisation cuts across rows
    assert axis_modes((3, 32, 32), 5) == (3, 8, 4, 8, 4)
    assert axis_modes((1, 28, 28), 1) == (28, 28)  # one mode per axis at least
    with pytest.raises(ValueError, match="shape"):
        axis_modes((0, 28), 2)
    with pytest.raises(TypeError, match="shape"):
        axis_modes(28, 2)


modes_pair = st.integers(1, 3).flatmap(
    lambda d: st.tuples(
        st.lists(st.integers(1, 5), min_size=d, max_size=d).map(tuple),
        st.lists(st.integers(1, 5), min_size=d, max_size=d).map(tuple),
    )
)


def independent_tt_caps(in_modes, out_modes):
    sizes = [n * m for n, m in zip(in_modes, out_modes)]
    return tuple(
        [1] + [min(math.prod(sizes[:k]), math.prod(sizes[k:])) for k in range(1, len(sizes))] + [1]
    )


@given(modes=modes_pair)
def test_max_tt_ranks(modes):
    assert max_tt_ranks(*modes) == independent_tt_caps(*modes)


def independent_uniform(fmt, r, in_modes, out_modes, factored=None):
    """The uniform ranks an int ``r`` means (capped where modes allow less)."""
    if fmt == "tt":
        return tuple(
            min(r, c) if 0 < k < len(in_modes) else 1
            for k, c in enumerate(independent_tt_caps(in_modes, out_modes))
        )
    if fmt == "tr":
        return (r,) * (len(in_modes) + 1)
    if fmt == "tucker":
        dims = in_modes + out_modes
        factored = factored or (True,) * len(dims)
        return tuple(min(r, n) if f else None for n, f in zip(dims, factored))
    return (r,)


def independent_count(fmt, in_modes, out_modes, ranks):
    if fmt in ("tt", "tr"):
        return sum(
            ranks[k] * n * m * ranks[k + 1] for k, (n, m) in enumerate(zip(in_modes, out_modes))
        )
    dims = in_modes + out_modes
    if fmt == "cp":
        return ranks[0] * sum(dims)
    return math.prod(n if r is None else r for n, r in zip(dims, ranks)) + sum(
        n * r for n, r in zip(dims, ranks) if r is not None
    )


formats = st.sampled_from(shapes.FORMATS)


@given(fmt=formats, modes=modes_pair, r=st.integers(1, 30))
def test_int_rank_is_uniform_and_warns_only_when_capped(fmt, modes, r):
    in_modes, out_modes = modes
    expected = independent_uniform(fmt, r, in_modes, out_modes)
    capped = any(q is not None and q < r for q in expected[1:-1] if fmt == "tt") or (
        fmt == "tucker" and any(q < r for q in expected)
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ranks = solve_ranks(fmt, r, in_modes, out_modes)
    assert ranks == expected
    assert bool(caught) == capped
    if capped:
        assert str(ranks) in str(caught[0].message)  # the capped ranks are reported
    assert count_params(fmt, in_modes, out_modes, ranks) == independent_count(
        fmt, in_modes, out_modes, ranks
    )


@given(fmt=formats, modes=modes_pair, frac=st.floats(0.01, 1.0))
def test_float_budget_is_the_largest_uniform_rank_that_fits(fmt, modes, frac):
    in_modes, out_modes = modes
    budget = frac * math.prod(in_modes) * math.prod(out_modes)
    if (
        independent_count(
            fmt, in_modes, out_modes, independent_uniform(fmt, 1, in_modes, out_modes)
        )
        > budget
    ):
        with pytest.raises(ValueError, match="rank"):
            solve_ranks(fmt, frac, in_modes, out_modes)
        return
    ranks = solve_ranks(fmt, frac, in_modes, out_modes)
    assert independent_count(fmt, in_modes, out_modes, ranks) <= budget
    # scan: the solved ranks are those of the largest r that fits
    best, r = None, 1
    while True:
        cand = independent_uniform(fmt, r, in_modes, out_modes)
        if independent_count(fmt, in_modes, out_modes, cand) > budget or cand == best:
            break
        best, r = cand, r + 1
    assert ranks == best


@given(modes=modes_pair, r=st.integers(1, 6))
def test_tucker_factored_modes(modes, r):
    in_modes, out_modes = modes
    n = len(in_modes + out_modes)
    factored = tuple(k % 2 == 0 for k in range(n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ranks = solve_ranks("tucker", r, in_modes, out_modes, factored=factored)
    assert ranks == independent_uniform("tucker", r, in_modes, out_modes, factored)
