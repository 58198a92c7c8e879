"""JAX backend layers against the NumPy reference: forward (float64 ≤ 1e-10, float32 ≤ 1e-5, under
jax.jit), gradients reaching every core, exact init std, masks, vmap."""

from __future__ import annotations

import math

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

from conftest import RTOL, rel_error  # noqa: E402

import reference  # noqa: E402
from tedepr.backends.jax import (  # noqa: E402
    CPConv2d,
    CPLinear,
    Dense,
    TensorizedLSTM,
    TensorizedMultiheadAttention,
    TensorizedTransformerEncoderLayer,
    TRConv2d,
    TRLinear,
    TTConv2d,
    TTLinear,
    TuckerConv2d,
    TuckerLinear,
)

pytestmark = pytest.mark.jax

LINEARS = {"tt": TTLinear, "tr": TRLinear, "tucker": TuckerLinear, "cp": CPLinear}
CONVS = {"tt": TTConv2d, "tr": TRConv2d, "tucker": TuckerConv2d, "cp": CPConv2d}
DTYPES = ("float64", "float32")


def _random_params(layer, seed, scale=1.0):
    """NumPy float64 cores of the layer's shapes (plus a bias): the one input of both sides."""
    rng = np.random.default_rng(seed)
    params = {"cores": tuple(scale * rng.standard_normal(s) for s in layer.core_shapes)}
    n_out = getattr(layer, "out_features", None) or layer.out_channels
    if layer.bias:
        params["bias"] = rng.standard_normal(n_out)
    return params


def _to_jax(params, dtype):
    """The params as JAX arrays of ``dtype``, and the same values (rounded to ``dtype``) as
    float64 NumPy."""
    as_jax = jax.tree.map(lambda a: jnp.asarray(a, dtype=getattr(jnp, dtype)), params)
    rounded = jax.tree.map(lambda a: np.asarray(a, dtype=np.float64), as_jax)
    return as_jax, rounded


def _ref_cores(layer, cores):
    """Cores in the argument form of ``reference.to_dense``."""
    if layer.format != "tucker":
        return list(cores)
    it = iter(cores[1:])
    return cores[0], [next(it) if r is not None else None for r in layer.ranks]


def _ref_dense(layer, cores):
    t = layer.factorized()
    return reference.to_dense(layer.format, _ref_cores(layer, cores), t.in_modes, t.out_modes)


# ----------------------------------------------------------------------------- linear
LINEAR_CASES = [  # (format, in, out, rank, in_modes, out_modes, strategy)
    ("tt", 12, 20, 3, (3, 2, 2), (5, 2, 2), "auto"),
    ("tt", 24, 6, (1, 2, 3, 1), (2, 3, 4), (1, 3, 2), "chain"),
    ("tr", 12, 20, 2, None, None, "optimal"),
    ("tr", 8, 9, (2, 3, 2), (4, 2), (3, 3), "reconstruct"),
    ("tucker", 12, 20, 2, (3, 4), (4, 5), "auto"),
    ("tucker", 6, 10, (2, None, 3), (2, 3), (10,), "chain"),
    ("cp", 12, 20, 3, None, None, "auto"),
    ("cp", 30, 4, 2, (5, 6), (2, 2), "reconstruct"),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", LINEAR_CASES, ids=lambda c: f"{c[0]}-{c[1]}x{c[2]}-{c[6]}")
def test_linear_forward_matches_reference(case, dtype):
    fmt, n_in, n_out, rank, in_modes, out_modes, strategy = case
    layer = LINEARS[fmt](n_in, n_out, rank, in_modes, out_modes, strategy=strategy)
    assert layer.format == fmt and layer.factorized().format == fmt
    params, exact = _to_jax(_random_params(layer, seed=n_in + n_out), dtype)
    x64 = np.random.default_rng(1).standard_normal((2, 3, n_in))
    x, x_exact = _to_jax(x64, dtype)
    y = jax.jit(layer.apply)(params, x)
    expected = (
        reference.matmul_reference(x_exact, _ref_dense(layer, exact["cores"])) + exact["bias"]
    )
    assert y.dtype == getattr(jnp, dtype) and y.shape == (2, 3, n_out)
    assert rel_error(y, expected) <= RTOL[dtype]
    # the reconstructed weight is the reference's too
    assert rel_error(layer.weight(params), _ref_dense(layer, exact["cores"])) <= RTOL[dtype]


def test_linear_gradient_reaches_every_core_and_masks_zero_it():
    for fmt, cls in LINEARS.items():
        layer = cls(12, 20, 2)
        params = jax.tree.map(jnp.asarray, _random_params(layer, 3))
        x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 12)))

        def loss(p, masks=None, layer=layer, x=x):
            return jnp.sum(layer.apply(p, x, masks) ** 2)

        masks = {
            "cores": tuple(
                jnp.asarray(np.random.default_rng(k).random(c.shape) < 0.6)
                for k, c in enumerate(params["cores"])
            )
        }
        masked_params = {
            **params,
            "cores": tuple(
                jnp.where(m, c, 0.0) for m, c in zip(masks["cores"], params["cores"], strict=True)
            ),
        }
        grad = jax.jit(jax.grad(loss))
        for k, g in enumerate(grad(params)["cores"]):
            assert float(jnp.linalg.norm(g)) > 0, f"{fmt}: no gradient reaches core {k}"
        apply = jax.jit(layer.apply)
        np.testing.assert_allclose(apply(params, x, masks), apply(masked_params, x), rtol=1e-12)
        for m, g in zip(masks["cores"], grad(params, masks)["cores"], strict=True):
            assert np.all(np.asarray(g)[~np.asarray(m)] == 0.0), (
                f"{fmt}: gradient reaches a pruned entry"
            )


def test_vmap_over_inputs_and_params():
    layer = TTLinear(12, 20, 2)
    params = jax.tree.map(jnp.asarray, _random_params(layer, 5))
    xs = jnp.asarray(np.random.default_rng(2).standard_normal((3, 4, 12)))
    batched = jax.jit(jax.vmap(layer.apply, in_axes=(None, 0)))(params, xs)
    np.testing.assert_allclose(batched, jax.jit(layer.apply)(params, xs), rtol=1e-12)
    stacked = jax.tree.map(lambda a: jnp.stack([a, -a]), params)
    both = jax.jit(jax.vmap(layer.apply, in_axes=(0, None)))(stacked, xs)
    np.testing.assert_allclose(both[0], jax.jit(layer.apply)(params, xs), rtol=1e-12)


@pytest.mark.parametrize("fmt", ["tt", "tr", "tucker", "cp"])
def test_init_std_is_exact_over_draws(fmt):
    """Core entries are N(0, s²) with tedepr.core_std's s, and the reconstructed weight's elements
    have exactly the target variance (nn.Linear's 1/(3·fan_in)), within 5 standard errors over 3000
    draws."""
    layer = LINEARS[fmt](12, 8, 2, (3, 4), (2, 4))
    draws = 3000
    keys = jax.random.split(jax.random.key(0), draws)
    params = jax.jit(jax.vmap(lambda k: layer.init(k, jnp.float64)))(keys)
    target = 1.0 / math.sqrt(3 * 12)
    cores = np.concatenate([np.asarray(c).reshape(draws, -1) for c in params["cores"]], axis=1)
    assert abs(np.std(cores) / layer.core_std - 1) < 0.01
    w = np.asarray(jax.jit(jax.vmap(layer.weight))(params)).reshape(draws, -1)
    per_draw = np.mean(w**2, axis=1) / target**2  # independent across draws
    se = np.std(per_draw) / math.sqrt(draws)
    assert abs(np.mean(per_draw) - 1.0) < 5 * se, (np.mean(per_draw), se)
    assert abs(np.mean(w)) < 5 * np.std(np.mean(w, axis=1)) / math.sqrt(draws) + 1e-12
    bias = np.asarray(params["bias"])
    assert np.all(np.abs(bias) <= 1 / math.sqrt(12))


def test_dense_init_matches_torch_default():
    layer = Dense(50, 40)
    params = layer.init(jax.random.key(1), jnp.float64)
    w = np.asarray(params["weight"])
    assert w.shape == (50, 40) and np.all(np.abs(w) <= 1 / math.sqrt(50))
    assert abs(np.std(w) * math.sqrt(3 * 50) - 1) < 0.05


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(in_features=0), "in_features"),
        (dict(strategy="fast"), "strategy"),
        (dict(weight_init="xavier"), "weight_init"),
        (dict(in_modes=(5, 2)), "in_modes"),
    ],
)
def test_linear_bad_arguments_name_the_argument(bad, match):
    kwargs = dict(in_features=12, out_features=20, rank=2)
    kwargs.update(bad)
    with pytest.raises(ValueError, match=match):
        TTLinear(**kwargs)


# ----------------------------------------------------------------------------- conv
CONV_CONFIGS = [  # (stride, padding, dilation, groups)
    (1, 1, 1, 1),
    ((2, 1), (1, 2), (1, 2), 1),
    (1, "same", 2, 1),
    (2, 0, 1, 2),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "fmt, strategy",
    [(f, "reconstruct") for f in ("tt", "tr", "tucker", "cp")]
    # "unfold" is one format-agnostic code path (the planned chain over image patches)
    + [("tt", "unfold"), ("cp", "unfold"), ("tucker", "factorized"), ("cp", "factorized")],
)
def test_conv_forward_matches_reference(fmt, strategy, dtype):
    rng = np.random.default_rng(7)
    x64 = rng.standard_normal((2, 4, 9, 8))
    x, x_exact = _to_jax(x64, dtype)
    for stride, padding, dilation, groups in CONV_CONFIGS:
        if groups > 1 and strategy != "reconstruct":
            continue
        layer = CONVS[fmt](
            4,
            6,
            (3, 2),
            stride,
            padding,
            dilation,
            groups,
            rank=2,
            strategy=strategy,
        )
        params, exact = _to_jax(_random_params(layer, 11), dtype)
        y = jax.jit(layer.apply)(params, x)
        t = layer.factorized()
        w = reference.to_dense(fmt, _ref_cores(layer, exact["cores"]), t.in_modes, t.out_modes)
        kernel = reference.matrix_to_kernel(w, (3, 2))
        expected = reference.conv2d_reference(
            x_exact, kernel, stride, padding, dilation, groups, exact["bias"]
        )
        assert y.dtype == getattr(jnp, dtype) and y.shape == expected.shape
        err = rel_error(y, expected)
        assert err <= RTOL[dtype], (stride, padding, dilation, groups, err)


def test_conv_gradient_reaches_every_core_on_every_strategy():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 4, 6, 6)))
    for fmt, cls in CONVS.items():
        for path in ("reconstruct", "factorized" if fmt in ("tucker", "cp") else "unfold"):
            layer = cls(4, 6, 3, padding=1, rank=2, strategy=path)
            params = jax.tree.map(jnp.asarray, _random_params(layer, 2))
            grads = jax.jit(jax.grad(lambda p, layer=layer: jnp.sum(layer.apply(p, x) ** 2)))(
                params
            )
            for k, g in enumerate(grads["cores"]):
                assert float(jnp.linalg.norm(g)) > 0, f"{fmt}/{path}: no gradient reaches core {k}"


def test_conv_auto_strategy_and_errors():
    layer = TuckerConv2d(64, 64, 3, padding=1, rank=(8, 8))
    # 1×1 → 3×3 → 1×1 is far cheaper than the dense 64→64 convolution
    assert layer.choose_strategy((8, 64, 16, 16)) == "factorized"
    assert TTConv2d(4, 6, 3, groups=2, rank=2).choose_strategy((1, 4, 8, 8)) == "reconstruct"
    with pytest.raises(ValueError, match="groups"):
        CPConv2d(4, 6, 3, groups=2, rank=2, strategy="factorized")
    with pytest.raises(ValueError, match="factorized"):
        TTConv2d(4, 6, 3, rank=2, strategy="factorized")
    with pytest.raises(ValueError, match="padding"):
        TTConv2d(4, 6, 3, padding="full", rank=2)
    with pytest.raises(ValueError, match="strategy"):
        TTConv2d(4, 6, 3, rank=2, strategy="fast")


# ----------------------------------------------------------------------------- LSTM
def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _lstm_reference(x, w_ih, w_hh, b):
    """x (T, B, I); W (I, 4H), (H, 4H); gate order i, f, g, o."""
    t, b_size, _ = x.shape
    h_size = w_hh.shape[0]
    h = np.zeros((b_size, h_size))
    c = np.zeros((b_size, h_size))
    outs = []
    for step in range(t):
        gates = x[step] @ w_ih + h @ w_hh + b
        i, f, g, o = (gates[:, k * h_size : (k + 1) * h_size] for k in range(4))
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        outs.append(h)
    return np.stack(outs), h, c


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fmt, hidden_tt", [("tt", False), ("tr", True)])
def test_tensorized_lstm_matches_reference(fmt, hidden_tt, dtype):
    layer = TensorizedLSTM(6, 4, batch_first=True, format=fmt, rank=2, tensorize_hidden=hidden_tt)
    rng = np.random.default_rng(3)
    p = {
        "ih": {"cores": tuple(0.5 * rng.standard_normal(s) for s in layer.ih.core_shapes)},
        "bias_ih": rng.standard_normal(16),
        "bias_hh": rng.standard_normal(16),
    }
    if hidden_tt:
        p["hh"] = {"cores": tuple(0.5 * rng.standard_normal(s) for s in layer.hh.core_shapes)}
    else:
        p["hh"] = {"weight": 0.5 * rng.standard_normal((4, 16))}
    params, exact = _to_jax(p, dtype)
    x, x_exact = _to_jax(rng.standard_normal((3, 5, 6)), dtype)  # (B, T, I)
    out, (h, c) = jax.jit(layer.apply)(params, x)
    w_ih = _ref_dense(layer.ih, exact["ih"]["cores"])
    w_hh = _ref_dense(layer.hh, exact["hh"]["cores"]) if hidden_tt else exact["hh"]["weight"]
    ref_out, ref_h, ref_c = _lstm_reference(
        np.swapaxes(x_exact, 0, 1), w_ih, w_hh, exact["bias_ih"] + exact["bias_hh"]
    )
    assert out.shape == (3, 5, 4) and out.dtype == getattr(jnp, dtype)
    assert rel_error(out, np.swapaxes(ref_out, 0, 1)) <= RTOL[dtype]
    assert rel_error(h, ref_h) <= RTOL[dtype] and rel_error(c, ref_c) <= RTOL[dtype]
    grads = jax.jit(jax.grad(lambda q: jnp.sum(layer.apply(q, x)[0] ** 2)))(params)
    for k, g in enumerate(grads["ih"]["cores"]):
        assert float(jnp.linalg.norm(g)) > 0, f"no gradient reaches input core {k}"


# ----------------------------------------------------------------------------- attention
def _layer_norm(x, scale, bias, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * scale + bias


def _mha_reference(layer, p, x):
    """x (B, T, E) -> (B, T, E) with the reference's dense projection weights."""
    e, h = layer.embed_dim, layer.num_heads

    def proj(name, z):
        sub = layer.sublayers()[name]
        return reference.matmul_reference(z, _ref_dense(sub, p[name]["cores"])) + p[name]["bias"]

    def heads(z):
        return z.reshape(z.shape[0], z.shape[1], h, e // h).transpose(0, 2, 1, 3)

    q, k, v = heads(proj("q_proj", x)), heads(proj("k_proj", x)), heads(proj("v_proj", x))
    logits = q @ k.transpose(0, 1, 3, 2) / math.sqrt(e // h)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    out = (weights @ v).transpose(0, 2, 1, 3).reshape(x.shape)
    return proj("out_proj", out)


def _encoder_params(layer, rng):
    def tensorized(sub):
        return {
            "cores": tuple(0.5 * rng.standard_normal(s) for s in sub.core_shapes),
            "bias": rng.standard_normal(sub.out_features),
        }

    subs = layer.sublayers()
    attn = subs["self_attn"]
    return {
        "self_attn": {n: tensorized(s) for n, s in attn.sublayers().items()},
        "linear1": tensorized(subs["linear1"]),
        "linear2": tensorized(subs["linear2"]),
        "norm1": {"scale": rng.standard_normal(8), "bias": rng.standard_normal(8)},
        "norm2": {"scale": rng.standard_normal(8), "bias": rng.standard_normal(8)},
    }


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_first", [True, False])
def test_tensorized_encoder_layer_matches_reference(norm_first, dtype):
    layer = TensorizedTransformerEncoderLayer(
        8, 2, 16, activation="relu", batch_first=True, norm_first=norm_first, format="tt", rank=2
    )
    rng = np.random.default_rng(4)
    params, exact = _to_jax(_encoder_params(layer, rng), dtype)
    x, x_exact = _to_jax(rng.standard_normal((2, 5, 8)), dtype)
    y = jax.jit(layer.apply)(params, x)
    subs = layer.sublayers()

    def ff(z):
        z = reference.matmul_reference(z, _ref_dense(subs["linear1"], exact["linear1"]["cores"]))
        z = np.maximum(z + exact["linear1"]["bias"], 0)
        z = reference.matmul_reference(z, _ref_dense(subs["linear2"], exact["linear2"]["cores"]))
        return z + exact["linear2"]["bias"]

    def norm(name, z):
        return _layer_norm(z, exact[name]["scale"], exact[name]["bias"])

    def sa(z):
        return _mha_reference(subs["self_attn"], exact["self_attn"], z)

    if norm_first:
        z = x_exact + sa(norm("norm1", x_exact))
        expected = z + ff(norm("norm2", z))
    else:
        z = norm("norm1", x_exact + sa(x_exact))
        expected = norm("norm2", z + ff(z))
    assert y.dtype == getattr(jnp, dtype) and y.shape == (2, 5, 8)
    assert rel_error(y, expected) <= RTOL[dtype]


def test_attention_gradients_reach_every_core():
    layer = TensorizedMultiheadAttention(8, 2, format="tr", rank=2, batch_first=True)
    params = layer.init(jax.random.key(0), jnp.float64)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 8)))
    grads = jax.jit(jax.grad(lambda p: jnp.sum(layer.apply(p, x) ** 2)))(params)
    for name, g in grads.items():
        for k, core in enumerate(g["cores"]):
            assert float(jnp.linalg.norm(core)) > 0, f"{name}: no gradient reaches core {k}"
    assert all(
        float(jnp.max(jnp.abs(p["bias"]))) == 0.0 for p in params.values()
    )  # torch zeroes them
