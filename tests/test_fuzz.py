"""Fuzz suite (issue 10): hypothesis draws bad inputs for every public entry point, core and both
backends, and checks that each ends in the right kind of exception (`TypeError` for a wrong type,
`ValueError` for a wrong value) whose message names the argument; and that finite input never
gives a non-finite result.

Each entry point has a table ``argument -> (strategy of bad values, expected exception)``; one
example corrupts one argument of an otherwise valid call. Every drawn case is counted by entry
point and outcome; `test_fuzz_counts` (last in the file) prints the table and checks that the
suite drew at least 1,000 cases (run this file whole to see it: ``pytest tests/test_fuzz.py -s``).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tedepr

COUNTS: Counter = Counter()  # (entry point, outcome) -> drawn cases, in this process

# Under pytest-xdist (the README runs `-n auto`; pyproject sets `--dist loadgroup`) the whole file runs
# on one worker, so that `test_fuzz_counts` sees every case drawn by the tests above it.
pytestmark = pytest.mark.xdist_group("fuzz")
RAN: set[str] = set()

# ----------------------------------------------------------------------------- bad values
NOT_NUMBERS = st.sampled_from([None, "3", b"3", [3], (3,), {"n": 3}, object(), 3j])
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
NEGATIVE_INTS = st.integers(-(10**9), -1)
NON_POSITIVE_INTS = st.integers(-(10**6), 0)
BAD_STRINGS = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=0, max_size=8
)
NOT_ARRAYS = st.sampled_from([None, "array", 3, 2.5, [[1.0, 2.0]], {"x": 1}, object()])
NOT_INT_TYPES = st.sampled_from([1.5, "2", None, [2], object(), 2.0])


def _strings_except(*allowed):
    return BAD_STRINGS.filter(lambda s: s.lower() not in allowed)


def _run(entry: str, call, arg: str, expected: type[Exception], extra_names=()) -> None:
    """Call, expect ``expected`` naming ``arg`` (or one of ``extra_names``), count the outcome."""
    RAN.add(entry)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call()
    except (TypeError, ValueError) as exc:
        COUNTS[(entry, type(exc).__name__)] += 1
        assert isinstance(exc, expected), (
            f"{entry}: bad {arg!r} raised {type(exc).__name__}, expected {expected.__name__}: {exc}"
        )
        names = (arg, *extra_names)
        assert any(n in str(exc) for n in names), f"{entry}: message does not name {arg!r}: {exc}"
        return
    except Exception as exc:  # the wrong kind: counted, then failed
        COUNTS[(entry, type(exc).__name__)] += 1
        raise AssertionError(
            f"{entry}: bad {arg!r} raised {type(exc).__name__} (not TypeError/ValueError): {exc}"
        ) from exc
    COUNTS[(entry, "no error")] += 1
    raise AssertionError(f"{entry}: bad {arg!r} was accepted")


def _table_case(data, table: dict[str, tuple[Any, type[Exception]]]):
    arg = data.draw(st.sampled_from(sorted(table)), label="argument")
    strategy, expected = table[arg]
    return arg, data.draw(strategy, label=arg), expected


# ----------------------------------------------------------------------------- core
RF_VALID = dict(format="tt", in_features=12, out_features=6, rank=2)
RF_BAD = {
    "format": (st.one_of(_strings_except(*tedepr.FORMATS)), ValueError),
    "format ": (st.sampled_from([None, 3, ["tt"]]), TypeError),
    "in_features": (NON_POSITIVE_INTS, ValueError),
    "in_features ": (NOT_INT_TYPES, TypeError),
    "out_features": (NON_POSITIVE_INTS, ValueError),
    "rank": (st.one_of(NON_POSITIVE_INTS, st.floats(1.0001, 1e9), st.floats(-1e9, 0.0)), ValueError),
    "rank ": (st.sampled_from([None, "2", object(), {"r": 2}]), TypeError),
    "std": (st.one_of(NON_FINITE, st.floats(-1e9, 0.0)), ValueError),
    "std ": (st.sampled_from(["0.1", [0.1], object()]), TypeError),
    "init": (_strings_except("torch", "he", "glorot", "lecun"), ValueError),
    "seed": (NEGATIVE_INTS, ValueError),
    "seed ": (st.sampled_from([1.5, "0", [0], object()]), TypeError),
    "d": (st.integers(-100, 0), ValueError),
    "d ": (st.sampled_from([1.5, "2", [2], object()]), TypeError),
    "dtype": (st.sampled_from(["int", "bool", "object", np.int32, np.bool_, "complex64"]), ValueError),
    "dtype ": (st.sampled_from(["nope", 3, object()]), TypeError),
    "xp": (st.sampled_from(["numpy", 3, object(), [np]]), TypeError),
    "in_modes": (st.sampled_from([(3, 3), (12, 0), (5,), (-3, -4)]), ValueError),
}  # fmt: skip


@settings(max_examples=150)
@given(data=st.data())
def test_fuzz_random_factorized(data):
    arg, value, expected = _table_case(data, RF_BAD)
    kw = dict(RF_VALID)
    if arg.strip() == "in_modes":
        kw["out_modes"] = (2, 3)
    kw[arg.strip()] = value
    _run("random_factorized", lambda: tedepr.random_factorized(**kw), arg.strip(), expected)


W = np.random.default_rng(0).standard_normal((12, 6))
DEC_BAD = {
    "w": (NOT_ARRAYS, TypeError),
    "w ": (st.sampled_from([W[:, :, None], W[0], np.where(W > 1, np.nan, W)]), ValueError),
    "format": (_strings_except(*tedepr.FORMATS), ValueError),
    "rank": (st.one_of(NON_POSITIVE_INTS, st.floats(1.0001, 1e9)), ValueError),
    "rank ": (st.sampled_from(["2", object(), {"r": 2}]), TypeError),
    "rtol": (st.one_of(NON_FINITE, st.floats(-1e9, -1e-9), st.floats(1.0, 1e9)), ValueError),
    "rtol ": (st.sampled_from(["0.1", [0.1], object()]), TypeError),
    "method": (_strings_except("hosvd", "hooi"), ValueError),
    "n_iter": (NON_POSITIVE_INTS, ValueError),
    "n_iter ": (NOT_INT_TYPES.filter(lambda v: v is not None), TypeError),
    "tol": (st.one_of(NON_FINITE, st.floats(-1e9, -1e-12)), ValueError),
    "tol ": (st.sampled_from(["1e-9", [1e-9], object()]), TypeError),
    "seed": (NEGATIVE_INTS, ValueError),
    "in_modes": (st.sampled_from([(3, 3), (12, 0), (5, 7)]), ValueError),
    "d": (st.integers(-100, 0), ValueError),
}


@settings(max_examples=150)
@given(data=st.data())
def test_fuzz_decompose(data):
    arg, value, expected = _table_case(data, DEC_BAD)
    arg = arg.strip()
    kw: dict[str, Any] = {"format": "tt", "rank": 2}
    if arg in ("method",):
        kw["format"] = "tucker"
    if arg in ("n_iter", "tol", "seed"):
        kw["format"] = "cp"
    w = W
    if arg == "w":
        w = value
    elif arg == "in_modes":
        kw["in_modes"], kw["out_modes"] = value, (2, 3)
    else:
        kw[arg] = value
    _run("decompose", lambda: tedepr.decompose(w, **kw), arg, expected)


F = tedepr.random_factorized("tt", 12, 6, 2, seed=0, in_modes=(3, 4), out_modes=(2, 3))
X = np.random.default_rng(1).standard_normal((5, 12))
CONTRACT_BAD = {
    "x": (NOT_ARRAYS, TypeError),
    "x ": (st.sampled_from([X[:, :5], X[0, 0], np.ones((2, 3, 11))]), ValueError),
    "f": (st.sampled_from([None, W, "tt", [F], object()]), TypeError),
    "strategy": (_strings_except("auto", "chain", "optimal", "reconstruct"), ValueError),
    "xp": (st.sampled_from(["numpy", 3, object()]), TypeError),
}


@settings(max_examples=100)
@given(data=st.data())
def test_fuzz_contract(data):
    arg, value, expected = _table_case(data, CONTRACT_BAD)
    arg = arg.strip()
    kw: dict[str, Any] = {"x": X, "f": F}
    kw[arg] = value
    _run("contract", lambda: tedepr.contract(kw.pop("x"), kw.pop("f"), **kw), arg, expected)


PLAN_BAD = {
    "f": (st.sampled_from([None, W, "tt", [F], object()]), TypeError),
    "batch": (NEGATIVE_INTS, ValueError),
    "batch ": (st.sampled_from([1.5, "2", None, [2]]), TypeError),
    "strategy": (_strings_except("auto", "chain", "optimal", "reconstruct"), ValueError),
}


@settings(max_examples=60)
@given(data=st.data())
def test_fuzz_plan_contraction(data):
    arg, value, expected = _table_case(data, PLAN_BAD)
    arg = arg.strip()
    kw: dict[str, Any] = {"f": F, "batch": 4}
    kw[arg] = value
    _run("plan_contraction", lambda: tedepr.plan_contraction(**kw), arg, expected)


CORES = list(F.cores)
FROM_CORES_BAD = {
    "format": (_strings_except(*tedepr.FORMATS), ValueError),
    "cores": (st.sampled_from(["ab", None, 3, ["a", "b"], [CORES[0], None], [1.0, 2.0]]), TypeError),
    "cores ": (st.sampled_from([[], [CORES[0]], [CORES[0][..., 0], CORES[1]]]), ValueError),
    "in_modes": (st.sampled_from([(3, 5), (4, 3, 1)]), ValueError),
}  # fmt: skip


@settings(max_examples=60)
@given(data=st.data())
def test_fuzz_from_cores(data):
    arg, value, expected = _table_case(data, FROM_CORES_BAD)
    arg = arg.strip()
    kw: dict[str, Any] = {"format": "tt", "cores": CORES, "in_modes": (3, 4), "out_modes": (2, 3)}
    kw[arg] = value
    _run(
        "from_cores", lambda: tedepr.from_cores(**kw), arg, expected, extra_names=("modes", "core")
    )


SOLVE_BAD = {
    "format": (_strings_except(*tedepr.FORMATS), ValueError),
    "rank": (st.one_of(NON_POSITIVE_INTS, st.floats(1.0001, 1e9), NON_FINITE), ValueError),
    "rank ": (st.sampled_from([None, "2", object(), True]), TypeError),
}


@settings(max_examples=60)
@given(data=st.data())
def test_fuzz_solve_ranks(data):
    arg, value, expected = _table_case(data, SOLVE_BAD)
    arg = arg.strip()
    kw: dict[str, Any] = {"format": "tt", "rank": 2}
    kw[arg] = value
    _run(
        "solve_ranks",
        lambda: tedepr.solve_ranks(kw["format"], kw["rank"], (3, 4), (2, 3)),
        arg,
        expected,
    )


CONV_VALID = dict(format="tucker", in_channels=4, out_channels=8, kernel_size=3, rank=2)
CONV_BAD = {
    "format": (_strings_except(*tedepr.FORMATS), ValueError),
    "in_channels": (NON_POSITIVE_INTS, ValueError),
    "out_channels": (NON_POSITIVE_INTS, ValueError),
    "kernel_size": (st.sampled_from([0, -3, (3, 0), (0, 0), (-1, 3)]), ValueError),
    "rank": (st.one_of(NON_POSITIVE_INTS, st.floats(1.0001, 1e9)), ValueError),
    "std": (st.one_of(NON_FINITE, st.floats(-1e9, 0.0)), ValueError),
    "seed": (NEGATIVE_INTS, ValueError),
    "dtype": (st.sampled_from(["int", "bool", np.int8]), ValueError),
}
KERNEL = np.random.default_rng(5).standard_normal((8, 4, 3, 3))
DEC_CONV_BAD = {
    "kernel": (NOT_ARRAYS, TypeError),
    "kernel ": (st.sampled_from([KERNEL[0], KERNEL[..., 0], np.where(KERNEL > 1, np.inf, KERNEL)]), ValueError),
    "format": (_strings_except(*tedepr.FORMATS), ValueError),
    "rank": (st.one_of(NON_POSITIVE_INTS, st.floats(1.0001, 1e9)), ValueError),
    "rtol": (st.one_of(NON_FINITE, st.floats(-1e9, -1e-9), st.floats(1.0, 1e9)), ValueError),
    "n_iter": (NON_POSITIVE_INTS, ValueError),
    "tol": (st.one_of(NON_FINITE, st.floats(-1e9, -1e-12)), ValueError),
}  # fmt: skip


@settings(max_examples=80)
@given(data=st.data(), entry=st.sampled_from(["random_factorized_conv", "decompose_conv"]))
def test_fuzz_conv_entry_points(data, entry):
    if entry == "random_factorized_conv":
        arg, value, expected = _table_case(data, CONV_BAD)
        kw = {**CONV_VALID, arg.strip(): value}
        _run(entry, lambda: tedepr.random_factorized_conv(**kw), arg.strip(), expected)
        return
    arg, value, expected = _table_case(data, DEC_CONV_BAD)
    arg = arg.strip()
    kw: dict[str, Any] = {"format": "cp" if arg in ("n_iter", "tol") else "tucker", "rank": 2}
    kernel = value if arg == "kernel" else KERNEL
    if arg != "kernel":
        kw[arg] = value
    _run(entry, lambda: tedepr.decompose_conv(kernel, **kw), arg, expected)


# ----------------------------------------------------------------------------- data batches
XB = np.random.default_rng(2).standard_normal((6, 8)).astype(np.float32)
YB = np.array([0, 1, 2, 3, 0, 1])


def _bad_batches():
    """(x, y, expected exception, what the message must name) of a corrupted batch."""
    nan_x = XB.copy()
    nan_x[1, 2] = np.nan
    return st.sampled_from(
        [
            (XB.astype(np.int64), YB, ValueError, "inputs x"),
            (XB, YB.astype(np.float32), ValueError, "labels y"),
            (XB, YB.astype(bool), ValueError, "labels y"),
            (XB, YB + 4, ValueError, "labels y"),
            (XB, YB - 1, ValueError, "labels y"),
            (XB, np.full(6, 10**6), ValueError, "labels y"),
            (XB[:0], YB[:0], ValueError, "empty"),
            (XB, YB[:4], ValueError, "same length"),
            (nan_x, YB, ValueError, "NaN"),
            (np.where(XB > 1, np.inf, XB), YB, ValueError, "NaN"),
            (XB[:, :5], YB, ValueError, "x"),
            (None, YB, TypeError, "x"),
            (XB, "labels", TypeError, "y"),
        ]
    )


@settings(max_examples=80)
@given(case=_bad_batches(), index=st.integers(0, 5))
def test_fuzz_check_batch(case, index):
    x, y, expected, what = case
    from tedepr.validation import check_batch

    _run(
        "check_batch",
        lambda: check_batch(x, y, name="data", index=index, num_classes=4, input_shape=(8,)),
        "data",
        expected,
    )
    try:
        check_batch(x, y, name="data", index=index, num_classes=4, input_shape=(8,))
    except (TypeError, ValueError) as exc:
        assert what in str(exc) and f"batch {index}" in str(exc)


# ----------------------------------------------------------------------------- finite in, finite out
@settings(max_examples=60)
@given(
    fmt=st.sampled_from(["tt", "tr", "tucker", "cp"]),
    exponent=st.integers(-300, 300),
    seed=st.integers(0, 2**16),
)
def test_fuzz_finite_input_gives_finite_decomposition(fmt, exponent, seed):
    w = np.random.default_rng(seed).standard_normal((12, 6)) * 10.0**exponent
    COUNTS[("decompose (finite input)", "finite result")] += 1
    RAN.add("decompose (finite input)")
    f = tedepr.decompose(w, fmt, rank=2, in_modes=(3, 4), out_modes=(2, 3))
    assert math.isfinite(f.error) and 0.0 <= f.error <= 1.0 + 1e-9
    assert all(np.all(np.isfinite(c)) for c in f.cores)


@settings(max_examples=50)
@given(
    fmt=st.sampled_from(["tt", "tr", "tucker", "cp"]),
    rank=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    batch=st.integers(0, 7),
)
def test_fuzz_finite_input_gives_finite_contraction(fmt, rank, seed, batch):
    f = tedepr.random_factorized(fmt, 12, 6, rank, seed=seed, in_modes=(3, 4), out_modes=(2, 3))
    x = np.random.default_rng(seed + 1).standard_normal((batch, 12))
    COUNTS[("contract (finite input)", "finite result")] += 1
    RAN.add("contract (finite input)")
    y = tedepr.contract(x, f)
    assert y.shape == (batch, 6) and np.all(np.isfinite(y))


# ----------------------------------------------------------------------------- torch backend
@pytest.fixture(scope="module")
def torch_net():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))


TT_LAYER_BAD = {
    "in_features": (NON_POSITIVE_INTS, ValueError),
    "out_features": (NON_POSITIVE_INTS, ValueError),
    "rank": (st.one_of(NON_POSITIVE_INTS, st.floats(1.0001, 1e6)), ValueError),
    "rank ": (st.sampled_from(["2", None, object()]), TypeError),
    "strategy": (_strings_except("auto", "chain", "optimal", "reconstruct"), ValueError),
}


@pytest.mark.torch
@settings(max_examples=60)
@given(data=st.data())
def test_fuzz_torch_layer_arguments(data):
    pytest.importorskip("torch")
    from tedepr.backends.torch import TTLinear

    arg, value, expected = _table_case(data, TT_LAYER_BAD)
    arg = arg.strip()
    kw: dict[str, Any] = {"in_features": 12, "out_features": 6, "rank": 2}
    kw[arg] = value
    _run("torch TTLinear()", lambda: TTLinear(**kw), arg, expected)


@pytest.mark.torch
@settings(max_examples=40)
@given(
    x=st.sampled_from(
        [np.ones((2, 12), np.float32), [[1.0] * 12], None, 3.0, "x", np.ones((2, 11), np.float32)]
    )
)
def test_fuzz_torch_layer_input(x):
    torch = pytest.importorskip("torch")
    from tedepr.backends.torch import TTLinear

    layer = TTLinear(12, 6, rank=2)
    if isinstance(x, np.ndarray) and x.shape[-1] == 11:
        _run("torch TTLinear.forward", lambda: layer(torch.as_tensor(x)), "input", ValueError)
    else:
        _run("torch TTLinear.forward", lambda: layer(x), "input", TypeError)


@pytest.mark.torch
@settings(max_examples=80)
@given(
    case=_bad_batches(),
    as_tensor=st.booleans(),
    entry=st.sampled_from(["score", "compress"]),
    position=st.integers(0, 3),
)
def test_fuzz_torch_data(torch_net, case, as_tensor, entry, position):
    torch = pytest.importorskip("torch")
    x, y, expected, _ = case
    if as_tensor:
        x = torch.as_tensor(x) if isinstance(x, np.ndarray) else x
        y = torch.as_tensor(y) if isinstance(y, np.ndarray) else y
    if (
        isinstance(x, np.ndarray)
        and x.shape[1:] == (5,)
        or (hasattr(x, "shape") and tuple(x.shape[1:]) == (5,))
    ):
        expected = ValueError  # the forward pass at the door cannot take 5 features
    data = [(XB, YB)] * position + [(x, y)]  # the bad batch after `position` good ones
    n = position + 1
    call = {
        "score": lambda: tedepr.score(
            torch_net, data, method="snip", num_batches=n, backend="torch"
        ),
        "compress": lambda: tedepr.compress(
            torch_net, data, sparsity=0.5, format=None, score="snip", num_batches=n,
            backend="torch",
        ),
    }[entry]  # fmt: skip
    _run(f"torch {entry}(data)", call, f"batch {position}", expected)


LOADER_BAD = {
    "batch_size": (NON_POSITIVE_INTS, ValueError),
    "seed": (NEGATIVE_INTS, ValueError),
}


@pytest.mark.torch
@settings(max_examples=60)
@given(data=st.data())
def test_fuzz_torch_make_loader(data):
    pytest.importorskip("torch")
    from tedepr.backends.torch import make_loader

    if data.draw(st.booleans(), label="corrupt the data"):
        x, y, expected, what = data.draw(_bad_batches(), label="batch")
        if (x is XB and what == "labels y" and y.dtype.kind == "i" and y.min() >= 0) or (
            x is not None and x.shape[1:] == (5,)
        ):
            return  # labels >= 4 and 5 features are fine for a loader: it knows no model
        _run(
            "torch make_loader",
            lambda: make_loader(x, y, 2),
            "x",
            expected,
            extra_names=("y", "make_loader"),
        )
        return
    arg, value, expected = _table_case(data, LOADER_BAD)
    kw = {"batch_size": 2, "seed": 0, arg: value}
    _run("torch make_loader", lambda: make_loader(XB, YB, **kw), arg, expected)


# ----------------------------------------------------------------------------- JAX backend
@pytest.fixture(scope="module")
def jax_net():
    jax = pytest.importorskip("jax")
    from tedepr.backends.jax import Dense, Model

    def forward(call, x):
        return call("out", jax.nn.relu(call("hidden", x)))

    model = Model({"hidden": Dense(8, 16), "out": Dense(16, 4)}, forward, (8,), "tiny")
    return model, model.init(jax.random.key(0))


@pytest.mark.jax
@settings(max_examples=80)
@given(case=_bad_batches(), entry=st.sampled_from(["score", "problem"]), position=st.integers(0, 3))
def test_fuzz_jax_data(jax_net, case, entry, position):
    pytest.importorskip("jax")
    from tedepr.backends.jax.scoring import JaxScoringProblem

    model, params = jax_net
    x, y, expected, _ = case
    data = [(XB, YB)] * position + [(x, y)]  # the bad batch after `position` good ones
    n = position + 1
    call = {
        "score": lambda: tedepr.score(
            model, data, method="snip", params=params, num_batches=n, backend="jax"
        ),
        "problem": lambda: JaxScoringProblem(model, params, data, num_batches=n),
    }[entry]
    _run(f"jax {entry}(data)", call, f"batch {position}", expected)


JAX_LAYER_BAD = {
    "in_features": (NON_POSITIVE_INTS, ValueError),
    "out_features": (NON_POSITIVE_INTS, ValueError),
    "rank": (st.one_of(NON_POSITIVE_INTS, st.floats(1.0001, 1e6)), ValueError),
    "rank ": (st.sampled_from(["2", None, object()]), TypeError),
}


@pytest.mark.jax
@settings(max_examples=50)
@given(data=st.data())
def test_fuzz_jax_layer_arguments(data):
    pytest.importorskip("jax")
    from tedepr.backends.jax import TTLinear

    arg, value, expected = _table_case(data, JAX_LAYER_BAD)
    arg = arg.strip()
    kw: dict[str, Any] = {"in_features": 12, "out_features": 6, "rank": 2}
    kw[arg] = value
    _run("jax TTLinear()", lambda: TTLinear(**kw), arg, expected)


@pytest.mark.jax
@settings(max_examples=40)
@given(
    params=st.sampled_from(
        [{}, {"bias": np.zeros(6)}, [], None, "params", {"cores": None}, {"cores": ()}]
    )
)
def test_fuzz_jax_layer_params(params):
    pytest.importorskip("jax")
    import jax.numpy as jnp

    from tedepr.backends.jax import TTLinear

    layer = TTLinear(12, 6, rank=2)
    expected = (
        TypeError if not isinstance(params, dict) or params.get("cores", 0) is None else ValueError
    )
    _run("jax TTLinear.apply", lambda: layer.apply(params, jnp.ones((2, 12))), "params", expected)


COMPRESS_BAD = {
    "sparsity": (st.one_of(NON_FINITE, st.floats(-1e9, -1e-9), st.floats(1.0, 1e9)), ValueError),
    "format": (_strings_except(*tedepr.FORMATS), ValueError),
    "score": (_strings_except(*tedepr.scores.available()), ValueError),
    "rank": (st.one_of(NON_POSITIVE_INTS, st.floats(1.0001, 1e9)), ValueError),
    "num_batches": (NON_POSITIVE_INTS, ValueError),
    "seed": (NEGATIVE_INTS, ValueError),
    "input_shape": (st.sampled_from([(-1,), (0,), (8, -2)]), ValueError),
}
FIT_BAD = {
    "epochs": (NON_POSITIVE_INTS, ValueError),
    "lr": (st.one_of(NON_FINITE, st.floats(-1e9, 0.0)), ValueError),
    "momentum": (st.one_of(NON_FINITE, st.floats(-1e9, -1e-9)), ValueError),
    "weight_decay": (st.one_of(NON_FINITE, st.floats(-1e9, -1e-9)), ValueError),
    "optimizer": (_strings_except("sgd", "adam", "adamw"), ValueError),
    "schedule": (_strings_except("cosine", "constant", "step", "none"), ValueError),
    "loss": (_strings_except("cross_entropy"), ValueError),
}


def _backend_net(backend, request):
    return request.getfixturevalue("torch_net" if backend == "torch" else "jax_net")


@settings(max_examples=80)
@given(
    data=st.data(),
    backend=st.sampled_from(["torch", "jax"]),
    entry=st.sampled_from(["compress", "fit"]),
)
def test_fuzz_compress_and_fit_options(request, data, backend, entry):
    pytest.importorskip(backend)
    net = _backend_net(backend, request)
    model, params = (net, None) if backend == "torch" else net
    table = COMPRESS_BAD if entry == "compress" else FIT_BAD
    arg, value, expected = _table_case(data, table)
    if entry == "compress":
        kw: dict[str, Any] = {"sparsity": 0.5, "format": None, "score": "snip"}
        if arg in ("format", "rank"):  # the tiny layers are tensorized only with min_params=0
            kw.update(format="tt", rank=2, tensorize_options={"min_params": 0})
        kw[arg] = value
        if arg == "input_shape":
            kw.update(score="synflow", data=None)
        kw.setdefault("data", [(XB, YB)])
        call = lambda: tedepr.compress(model, backend=backend, **kw)  # noqa: E731
    elif backend == "torch":
        from tedepr.backends.torch import fit

        call = lambda: fit(model, [(XB, YB)], progress=False, **{"epochs": 1, arg: value})  # noqa: E731
    else:
        from tedepr.backends.jax import fit

        call = lambda: fit(model, params, (XB, YB), progress=False, **{"epochs": 1, arg: value})  # noqa: E731
    _run(f"{backend} {entry}()", call, arg, expected)


# ----------------------------------------------------------------------------- both backends
ZOO_BAD = [
    ("lenet300_100", "hidden", st.sampled_from([(0,), (300, -1), (0, 0)]), ValueError),
    ("lenet300_100", "hidden", st.sampled_from([3, "300"]), TypeError),
    ("lstm", "hidden_size", NON_POSITIVE_INTS, ValueError),
    ("vit", "depth", NON_POSITIVE_INTS, ValueError),
    ("vit", "dim", NON_POSITIVE_INTS, ValueError),
    ("lenet5", "num_classes", NON_POSITIVE_INTS, ValueError),
    ("lenet5", "image_size", NON_POSITIVE_INTS, ValueError),
]


@settings(max_examples=60)
@given(data=st.data())
def test_fuzz_model_zoo(data):
    backend = data.draw(st.sampled_from(["torch", "jax"]), label="backend")
    pytest.importorskip(backend)
    name, arg, strategy, expected = data.draw(st.sampled_from(ZOO_BAD), label="case")
    value = data.draw(strategy, label=arg)
    _run(
        f"models.get ({backend})",
        lambda: tedepr.models.get(name, backend=backend, **{arg: value}),
        arg,
        expected,
    )


PATTERN_ARGS = ["include", "exclude", "overrides"]


@settings(max_examples=60)
@given(
    backend=st.sampled_from(["torch", "jax"]),
    arg=st.sampled_from(PATTERN_ARGS),
    glob=st.text(alphabet="abcdefhnrslo_.", min_size=1, max_size=9),
)
def test_fuzz_tensorize_patterns(backend, arg, glob):
    pytest.importorskip(backend)
    if backend == "torch":
        from tedepr.backends.torch import tensorize

        names = ["hidden", "hidden.0", "hidden.1", "classifier"]
    else:
        from tedepr.backends.jax import tensorize

        names = ["hidden/0", "hidden/1", "classifier"]
    import fnmatch

    if any(fnmatch.fnmatchcase(n, glob) for n in names):
        return  # a pattern that matches is not a bad input
    model = _zoo(backend)
    value = {glob: {"rank": 2}} if arg == "overrides" else glob
    _run(f"tensorize ({backend})", lambda: tensorize(model, **{arg: value}), arg, ValueError)


_ZOO_CACHE: dict[str, Any] = {}


def _zoo(backend):
    if backend not in _ZOO_CACHE:
        _ZOO_CACHE[backend] = tedepr.models.get("lenet300_100", backend=backend)
    return _ZOO_CACHE[backend]


# ----------------------------------------------------------------------------- the counts
MIN_CASES = 1000


def test_fuzz_counts(request):
    """The table of drawn cases by entry point and outcome; at least 1,000 when the file ran whole."""
    fuzz_tests = [
        item for item in request.session.items if item.name.startswith("test_fuzz_")
        and item.name != "test_fuzz_counts" and item.module is request.module
    ]  # fmt: skip
    total = sum(COUNTS.values())
    by_kind: Counter = Counter()
    for (_, outcome), n in COUNTS.items():
        by_kind[outcome] += n
    lines = [f"{'entry point':32s} {'outcome':16s} cases"]
    lines += [f"{e:32s} {o:16s} {n:5d}" for (e, o), n in sorted(COUNTS.items())]
    lines.append(f"total {total} drawn cases; by outcome: {dict(sorted(by_kind.items()))}")
    print("\n" + "\n".join(lines))
    assert not by_kind.keys() - {"TypeError", "ValueError", "finite result"}, dict(by_kind)
    if len(fuzz_tests) == len(FUZZ_TEST_NAMES):
        assert total >= MIN_CASES, f"only {total} cases drawn"
    else:
        pytest.skip(f"a subset of the fuzz tests ran ({total} cases); run the whole file to count")


FUZZ_TEST_NAMES = [n for n in dir() if n.startswith("test_fuzz_") and n != "test_fuzz_counts"]
