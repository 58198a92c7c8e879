"""The layer contract, once for both backends: tensorized Linear and Conv2d layers compute what the
NumPy reference computes (float64 ≤ 1e-10, float32 ≤ 1e-5), gradients reach every core and never
a pruned entry, the init is exactly variance-preserving, and bad arguments are named."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _backends import backend, per_backend  # noqa: F401  (the fixture)

import reference

FORMATS = ("tt", "tr", "tucker", "cp")
DTYPES = ("float64", "float32")
RTOL = {"float64": 1e-10, "float32": 1e-5}


def rel_error(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _random_arrays(layer, seed, scale=1.0):
    """Float64 cores of the layer's shapes and a bias: the one input of both sides."""
    rng = np.random.default_rng(seed)
    f = layer.factorized()
    cores = [scale * rng.standard_normal(np.shape(c)) for c in f.cores]
    n_out = getattr(layer, "out_features", None) or layer.out_channels
    has_bias = bool(layer.bias) if isinstance(layer.bias, bool) else layer.bias is not None
    return cores, (rng.standard_normal(n_out) if has_bias else None)


def _ref_dense(layer, cores):
    f = layer.factorized()
    if f.format == "tucker":
        it = iter(cores[1:])
        cores = (cores[0], [next(it) if r is not None else None for r in f.ranks])
    return reference.to_dense(f.format, cores, f.in_modes, f.out_modes)


# ----------------------------------------------------------------------------- Linear
LINEAR_CASES = [  # (format, in, out, rank, in_modes, out_modes, strategy, bias)
    ("tt", 12, 20, 3, (3, 2, 2), (5, 2, 2), "auto", True),
    ("tt", 24, 6, (1, 2, 3, 1), (2, 3, 4), (1, 3, 2), "chain", True),
    ("tr", 12, 20, 2, None, None, "optimal", True),
    ("tr", 8, 9, (2, 3, 2), (4, 2), (3, 3), "reconstruct", True),
    ("tucker", 12, 20, 2, (3, 4), (4, 5), "auto", True),
    ("tucker", 6, 10, (2, None, 3), (2, 3), (10,), "chain", True),
    ("cp", 12, 20, 3, None, None, "auto", True),
    ("cp", 30, 4, 2, (5, 6), (2, 2), "reconstruct", True),
    # every format and strategy on automatic modes
    *[
        (f, 24, 30, 3, None, None, s, True)
        for f in FORMATS
        for s in ("auto", "chain", "optimal", "reconstruct")
    ],
    # explicit modes, no bias
    ("tucker", 24, 30, 2, (4, 6), (30,), "auto", False),
    ("cp", 24, 30, 2, (2, 3, 4), (5, 6), "auto", False),
    ("tt", 24, 30, 2, (2, 12), (6, 5), "auto", False),
    ("tr", 24, 30, 2, (4, 6), (5, 6), "auto", False),
]


# torch runs every case (its layers are cheap to build); JAX the first eight (each case is a jit
# compilation), the ones its suite always ran
LINEAR_RUNS = per_backend(
    {
        "torch": [(c, d) for c in LINEAR_CASES for d in DTYPES],
        "jax": [(c, d) for c in LINEAR_CASES[:8] for d in DTYPES],
    }
)


@pytest.mark.parametrize("backend, case, dtype", LINEAR_RUNS, indirect=["backend"])
def test_linear_forward_matches_reference(backend, case, dtype):
    fmt, n_in, n_out, rank, in_modes, out_modes, strategy, bias = case
    handle = backend.linear(fmt, n_in, n_out, rank, in_modes, out_modes, bias, strategy=strategy)
    layer = handle[0]
    assert layer.format == fmt and layer.factorized().format == fmt
    if in_modes is not None:
        assert tuple(layer.in_modes) == in_modes and tuple(layer.out_modes) == out_modes
    cores, b = _random_arrays(layer, seed=n_in + n_out)
    assert (b is not None) == bias
    handle = backend.set_arrays(handle, cores, b, dtype)
    exact = [backend.rounded(c, dtype) for c in cores]
    x64 = np.random.default_rng(1).standard_normal((2, 3, n_in))
    y, y_dtype = backend.forward(handle, backend.rounded(x64, dtype))
    expected = reference.matmul_reference(backend.rounded(x64, dtype), _ref_dense(layer, exact))
    if bias:
        expected = expected + backend.rounded(b, dtype)
    assert y_dtype == dtype and y.shape == (2, 3, n_out)
    assert rel_error(y, expected) <= RTOL[dtype]
    # the reconstructed weight is the reference's too
    assert rel_error(backend.weight(handle), _ref_dense(layer, exact)) <= RTOL[dtype]


@pytest.mark.parametrize("fmt", FORMATS)
def test_default_dtype_is_float32(backend, fmt):
    handle = backend.linear(fmt, 24, 30, 3)
    y, y_dtype = backend.forward(handle, np.ones((7, 24), np.float32))
    assert y_dtype == "float32" and y.shape == (7, 30)


@pytest.mark.parametrize(
    "backend, fmt, size",
    per_backend(
        {
            "torch": [(f, s) for f in FORMATS for s in ((12, 20, 2), (24, 30, 3))],
            "jax": [(f, (12, 20, 2)) for f in FORMATS],
        }
    ),
    indirect=["backend"],
)
def test_linear_gradients_reach_every_core_and_never_a_pruned_entry(backend, fmt, size):
    n_in, n_out, rank = size
    handle = backend.linear(fmt, n_in, n_out, rank)
    cores, b = _random_arrays(handle[0], 3)
    handle = backend.set_arrays(handle, cores, b, "float64")
    x = np.random.default_rng(0).standard_normal((4, n_in))
    grads, bias_grad = backend.grads(handle, x)
    for k, g in enumerate(grads):
        assert np.all(np.isfinite(g)) and np.linalg.norm(g) > 0, f"no gradient reaches core {k}"
    assert np.all(np.isfinite(bias_grad)) and np.abs(bias_grad).sum() > 0
    masks = [np.random.default_rng(k).random(np.shape(c)) < 0.6 for k, c in enumerate(cores)]
    pruned = backend.set_arrays(
        handle, [np.where(m, c, 0.0) for m, c in zip(masks, cores)], b, "float64"
    )
    np.testing.assert_allclose(
        backend.forward(handle, x, masks)[0], backend.forward(pruned, x)[0], rtol=1e-12
    )
    for m, g in zip(masks, backend.grads(handle, x, masks)[0], strict=True):
        assert np.all(g[~m] == 0.0), "a gradient reaches a pruned entry"


INIT_CASES = [  # (format-independent args, kwargs, draws)
    ((12, 8, 2, (3, 4), (2, 4)), {}, 3000),
    ((64, 64, 4), {"d": 2}, 300),
]


@pytest.mark.parametrize(
    "backend, fmt, case",
    # each backend its own case: a torch layer is built once per draw (300 draws of 64x64), a JAX
    # init is vmapped (3000 draws of 12x8)
    per_backend({"torch": [(f, 1) for f in FORMATS], "jax": [(f, 0) for f in FORMATS]}),
    indirect=["backend"],
)
def test_init_std_is_exact_over_draws(backend, fmt, case):
    """Core entries are N(0, s²) with tedepr.core_std's s, and the reconstructed weight's elements
    have exactly the target variance (nn.Linear's default 1/(3·fan_in)): pooled within 5%, and per
    draw within 5 standard errors. A bias of √∏r (the tltorch bug) would be off by ≥ 2×."""
    args, kw, draws = INIT_CASES[case]
    cores, w, bias, core_std = backend.init_draws(fmt, args, kw, draws)
    fan_in = args[0]
    target = 1.0 / math.sqrt(3 * fan_in)
    assert abs(np.std(cores) / core_std - 1) < 0.01
    assert abs(math.sqrt(np.mean(w**2)) / target - 1) < 0.05
    per_draw = np.mean(w**2, axis=1) / target**2  # independent across draws
    se = np.std(per_draw) / math.sqrt(draws)
    assert abs(np.mean(per_draw) - 1.0) < 5 * se, (np.mean(per_draw), se)
    assert abs(np.mean(w)) < 5 * np.std(np.mean(w, axis=1)) / math.sqrt(draws) + 1e-12
    assert np.all(np.abs(bias) <= 1 / math.sqrt(fan_in))


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(in_features=0), "in_features"),
        (dict(strategy="fast"), "strategy must be one of"),
        (dict(weight_init="xavier"), "weight_init"),
        (dict(in_modes=(5, 2)), "in_modes"),
        (dict(in_modes=(5, 5)), "in_modes"),
    ],
)
def test_linear_bad_arguments_name_the_argument(backend, bad, match):
    kwargs = dict(in_features=12, out_features=20, rank=2)
    kwargs.update(bad)
    with pytest.raises(ValueError, match=match):
        backend.module().TTLinear(**kwargs)


def test_unknown_format_is_named(backend):
    with pytest.raises(ValueError, match="format must be one of"):
        backend.module().linear_class("ttx")
    with pytest.raises(ValueError, match="format must be one of"):
        backend.module().conv_class("block")


# ----------------------------------------------------------------------------- Conv2d
CONV_CONFIGS = [  # (kernel_size, stride, padding, dilation, groups)
    (3, 1, 0, 1, 1),
    (3, 2, 1, 1, 1),
    ((3, 2), (1, 2), (2, 1), 2, 1),
    ((2, 3), 1, "same", 1, 1),  # asymmetric padding
    (3, 1, "valid", (2, 1), 2),
    (3, 2, 1, 1, 2),
    ((3, 2), 1, 1, 1, 1),
    ((3, 2), (2, 1), (1, 2), (1, 2), 1),
    ((3, 2), 1, "same", 2, 1),
    ((3, 2), 2, 0, 1, 2),
]


def _strategies(fmt, groups, backend="torch"):
    """Every strategy on torch; on JAX (a compilation each) every distinct code path: ``auto``
    only dispatches to one of the others."""
    if groups != 1:
        return ["auto", "reconstruct"] if backend == "torch" else ["reconstruct"]
    factorized = ["factorized"] if fmt in ("tucker", "cp") else []
    if backend == "torch":
        return ["auto", "reconstruct", "unfold"] + factorized
    return ["reconstruct"] + (["unfold"] if fmt != "tucker" else []) + factorized


# torch: float64 on every configuration, float32 on one; JAX: its four configurations in both
CONV_RUNS = per_backend(
    {
        "torch": [(f, c, "float64") for f in FORMATS for c in range(len(CONV_CONFIGS))]
        + [(f, 1, "float32") for f in FORMATS],
        "jax": [(f, c, d) for f in FORMATS for c in (6, 7, 8, 9) for d in DTYPES],
    }
)


@pytest.mark.parametrize("backend, fmt, config, dtype", CONV_RUNS, indirect=["backend"])
def test_conv_forward_matches_reference_on_every_strategy(backend, fmt, config, dtype):
    kernel_size, stride, padding, dilation, groups = CONV_CONFIGS[config]
    x64 = np.random.default_rng(7 + config).standard_normal((2, 4, 9, 8))
    x = backend.rounded(x64, dtype)
    for strategy in _strategies(fmt, groups, backend.name):
        handle = backend.conv(
            fmt, 4, 6, kernel_size, stride, padding, dilation, groups, rank=2, strategy=strategy
        )
        layer = handle[0]
        cores, b = _random_arrays(layer, 11)
        handle = backend.set_arrays(handle, cores, b, dtype)
        exact = [backend.rounded(c, dtype) for c in cores]
        kernel = reference.matrix_to_kernel(_ref_dense(layer, exact), layer.kernel_size)
        expected = reference.conv2d_reference(
            x, kernel, stride, padding, dilation, groups, backend.rounded(b, dtype)
        )
        y, y_dtype = backend.forward(handle, x)
        assert y_dtype == dtype and y.shape == expected.shape, strategy
        assert rel_error(y, expected) <= RTOL[dtype], (strategy, rel_error(y, expected))


@pytest.mark.parametrize("fmt", FORMATS)
def test_conv_gradients_reach_every_core_on_every_strategy(backend, fmt):
    x = np.random.default_rng(0).standard_normal((2, 4, 6, 6))
    for strategy in _strategies(fmt, 1, backend.name):
        handle = backend.conv(fmt, 4, 6, 3, padding=1, rank=2, strategy=strategy)
        cores, b = _random_arrays(handle[0], 2)
        handle = backend.set_arrays(handle, cores, b, "float64")
        grads, bias_grad = backend.grads(handle, x)
        for k, g in enumerate(grads):
            assert np.all(np.isfinite(g)) and np.linalg.norm(g) > 0, (strategy, k)
        assert np.abs(bias_grad).sum() > 0, strategy


def test_conv_bad_arguments_are_named(backend):
    m = backend.module()
    with pytest.raises(ValueError, match="padding_mode.*'zeros'"):
        m.TTConv2d(4, 6, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="padding must be"):
        m.TTConv2d(4, 6, 3, padding="full", rank=2)
    with pytest.raises(ValueError, match="stride 1"):
        m.TTConv2d(4, 6, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="strategy"):
        m.TTConv2d(4, 6, 3, rank=2, strategy="fast")
    with pytest.raises(ValueError, match="groups"):
        m.CPConv2d(4, 6, 3, groups=2, rank=2, strategy="factorized")
    with pytest.raises(ValueError, match="factorized"):
        m.TTConv2d(4, 6, 3, rank=2, strategy="factorized")


def test_tensorize_layer_defaults_reach_every_new_layer(backend):
    # d / strategy / conv_strategy / tensorize_hidden: tensorize's defaults for the new layers
    mlp = backend.zoo("lenet300_100", num_classes=3, image_size=4, hidden=(16,))
    new = backend.tensorize(mlp, "tt", 2, min_params=0, d=2, strategy="chain")
    layer = backend.layer(new, "hidden.0")
    assert len(layer.in_modes) == 2 and backend.strategy(layer) == "chain"
    plain = backend.layer(backend.tensorize(mlp, "tt", 2, min_params=0), "hidden.0")
    assert backend.strategy(plain) == "auto"
    # overrides still win over the defaults
    over = backend.tensorize(
        mlp, "tt", 2, min_params=0, d=2, overrides={"hidden*": {"d": 3}}, exclude="classifier"
    )
    assert len(backend.layer(over, "hidden.0").in_modes) == 3
    with pytest.raises(ValueError, match="conv_strategy"):
        backend.tensorize(mlp, conv_strategy="fast")
