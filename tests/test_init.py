"""Exact variance-preserving initialisation (docs/method.md §3), checked empirically.

The reconstructed weight's empirical std, pooled over 1000 seeded draws, must be within 3% of the
target. Each check also verifies its own power: the standard error of the estimate (from the spread
between draws) must be small enough that 3% is at least 4 standard errors, so a wrong scale such as
tltorch's off-by-√∏r TT init (a factor ≥ 2 here) cannot pass by luck.
"""

from __future__ import annotations

import math

import array_api_compat
import numpy as np
import pytest
from conftest import factorized_specs, lib_name, to_numpy
from hypothesis import given

import tedepr
from tedepr.init import core_std, target_std

N_DRAWS = 1000
TOLERANCE = 0.03

# moderate sizes, chosen so that the estimate's relative standard error is <= 0.5%
LINEAR_CASES = {
    "tt": dict(in_features=64, out_features=64, rank=8, in_modes=(4, 4, 4), out_modes=(4, 4, 4)),
    "tr": dict(in_features=64, out_features=64, rank=4, in_modes=(4, 4, 4), out_modes=(4, 4, 4)),
    "tucker": dict(in_features=64, out_features=64, rank=8, in_modes=(8, 8), out_modes=(64,)),
    "cp": dict(in_features=64, out_features=64, rank=32, in_modes=(8, 8), out_modes=(8, 8)),
}


def pooled_std(make, n_draws=N_DRAWS):
    """Pooled std and mean of the reconstructed weights over seeds ``0..n_draws-1``, with the
    standard error of the std (delta method on the between-draw spread of the mean square)."""
    mean_squares, means = np.empty(n_draws), np.empty(n_draws)
    for seed in range(n_draws):
        w = np.asarray(make(seed).to_dense())
        mean_squares[seed] = np.mean(w**2)
        means[seed] = np.mean(w)
    var = mean_squares.mean()
    se_std = 0.5 * mean_squares.std() / math.sqrt(n_draws) / var  # relative
    return math.sqrt(var), means.mean(), se_std


def check_std(make, target):
    std, mean, rel_se = pooled_std(make)
    assert TOLERANCE >= 4 * rel_se, f"the estimate is too noisy to test 3% (rel. SE {rel_se:.4f})"
    assert abs(std / target - 1) <= TOLERANCE, f"empirical std {std:.5g}, target {target:.5g}"
    assert abs(mean) <= 0.01 * target, f"empirical mean {mean:.3g} (target std {target:.3g})"


@pytest.mark.parametrize("fmt", list(LINEAR_CASES))
def test_linear_init_std(fmt):
    kw = LINEAR_CASES[fmt]
    check_std(lambda seed: tedepr.random_factorized(fmt, std=0.05, seed=seed, **kw), 0.05)


@pytest.mark.parametrize("fmt", list(LINEAR_CASES))
@pytest.mark.parametrize("init", ["torch", "he", "glorot", "lecun"])
def test_named_init_is_the_std_of_the_dense_layer(fmt, init):
    kw = LINEAR_CASES[fmt]
    fan_in, fan_out = kw["in_features"], kw["out_features"]
    expected = {  # the dense layer's std under each scheme (PyTorch default: U(±1/√fan_in))
        "torch": 1 / math.sqrt(3 * fan_in),
        "he": math.sqrt(2 / fan_in),
        "glorot": math.sqrt(2 / (fan_in + fan_out)),
        "lecun": math.sqrt(1 / fan_in),
    }[init]
    assert math.isclose(target_std(init, fan_in, fan_out), expected, rel_tol=1e-15)
    # a named init draws exactly what std= draws (same seed, same scale)
    a = tedepr.random_factorized(fmt, init=init, seed=3, **kw)
    b = tedepr.random_factorized(fmt, std=expected, seed=3, **kw)
    for ca, cb in zip(a.cores, b.cores):
        np.testing.assert_allclose(np.asarray(ca), np.asarray(cb), rtol=1e-14, atol=0)


@pytest.mark.parametrize("init", ["torch", "he"])
def test_named_init_std_empirically(init):
    kw = LINEAR_CASES["tt"]
    target = 1 / math.sqrt(3 * 64) if init == "torch" else math.sqrt(2 / 64)
    check_std(lambda seed: tedepr.random_factorized("tt", init=init, seed=seed, **kw), target)


# (C_in, C_out, kernel, rank, options); two channel modes keep every TT/TR core large
CONV_CASES = {
    "tt": (16, 16, 3, 8, dict(d=2)),
    "tr": (16, 16, 3, 4, dict(d=2)),
    "tucker": (32, 32, 3, 8, {}),
    "cp": (16, 16, 3, 32, {}),
}


@pytest.mark.parametrize("fmt", list(CONV_CASES))
def test_conv_init_std(fmt):
    c_in, c_out, k, rank, options = CONV_CASES[fmt]
    target = 1 / math.sqrt(3 * c_in * k * k)  # PyTorch's nn.Conv2d default, fan_in = C_in·kh·kw

    def make(seed):
        return tedepr.random_factorized_conv(
            fmt, c_in, c_out, k, rank, init="torch", seed=seed, **options
        )

    f = make(0)
    assert f.kernel_size == (k, k) and f.shape == (c_in * k * k, c_out)
    check_std(make, target)


@given(spec=factorized_specs(max_rank=4))
def test_core_std_is_the_documented_closed_form(spec):
    # docs/method.md §3: Var(W_ij) = terms · s^(2·factors per term)
    fmt, ranks, n = spec.format, spec.ranks, len(spec.cores)
    if fmt == "tt":
        terms = math.prod(ranks[1:-1])
    elif fmt == "tr":
        terms = math.prod(ranks[:-1])
    elif fmt == "tucker":
        terms = math.prod(r for r in ranks if r is not None)
    else:
        terms = ranks[0]
    s = core_std(fmt, ranks, n, 0.07)
    assert math.isclose(terms * s ** (2 * n), 0.07**2, rel_tol=1e-12)


def test_cores_are_iid_with_the_core_std():
    f = tedepr.random_factorized(
        "tr", 64, 64, 4, std=0.05, seed=0, in_modes=(4, 4, 4), out_modes=(4, 4, 4)
    )
    s = core_std("tr", f.ranks, len(f.cores), 0.05)
    entries = np.concatenate([np.asarray(c).ravel() for c in f.cores])
    # 768 i.i.d. normal entries: the sample std is within 4 standard errors (~2.6%) of s
    assert abs(entries.std() / s - 1) <= 4 / math.sqrt(2 * entries.size)


def test_init_respects_namespace_and_dtype(xp):
    f = tedepr.random_factorized("tt", 12, 6, 2, std=0.1, seed=0, xp=xp, dtype=xp.float32)
    expected = tedepr.random_factorized("tt", 12, 6, 2, std=0.1, seed=0)  # NumPy float64
    for c, e in zip(f.cores, expected.cores):
        assert lib_name(array_api_compat.array_namespace(c)) == lib_name(xp)
        assert c.dtype == xp.float32
        # same seed, same numbers in every library (up to float32 rounding)
        np.testing.assert_allclose(to_numpy(c), e, rtol=1e-6)
