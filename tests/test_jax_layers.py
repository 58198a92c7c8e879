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
    Dense,
    TensorizedLSTM,
    TensorizedMultiheadAttention,
    TensorizedTransformerEncoderLayer,
    TTConv2d,
    TTLinear,
    TuckerConv2d,
)

pytestmark = pytest.mark.jax

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


def test_vmap_over_inputs_and_params():
    layer = TTLinear(12, 20, 2)
    params = jax.tree.map(jnp.asarray, _random_params(layer, 5))
    xs = jnp.asarray(np.random.default_rng(2).standard_normal((3, 4, 12)))
    batched = jax.jit(jax.vmap(layer.apply, in_axes=(None, 0)))(params, xs)
    np.testing.assert_allclose(batched, jax.jit(layer.apply)(params, xs), rtol=1e-12)
    stacked = jax.tree.map(lambda a: jnp.stack([a, -a]), params)
    both = jax.jit(jax.vmap(layer.apply, in_axes=(0, None)))(stacked, xs)
    np.testing.assert_allclose(both[0], jax.jit(layer.apply)(params, xs), rtol=1e-12)


def test_dense_init_matches_torch_default():
    layer = Dense(50, 40)
    params = layer.init(jax.random.key(1), jnp.float64)
    w = np.asarray(params["weight"])
    assert w.shape == (50, 40) and np.all(np.abs(w) <= 1 / math.sqrt(50))
    assert abs(np.std(w) * math.sqrt(3 * 50) - 1) < 0.05


# ----------------------------------------------------------------------------- conv


def test_conv_auto_strategy():
    # the constructor's errors of both backends: tests/contract/test_contract_layers.py
    layer = TuckerConv2d(64, 64, 3, padding=1, rank=(8, 8))
    # 1×1 → 3×3 → 1×1 is far cheaper than the dense 64→64 convolution
    assert layer.choose_strategy((8, 64, 16, 16)) == "factorized"
    assert TTConv2d(4, 6, 3, groups=2, rank=2).choose_strategy((1, 4, 8, 8)) == "reconstruct"


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
        "weight_ih_l0": {
            "cores": tuple(0.5 * rng.standard_normal(s) for s in layer.ih.core_shapes)
        },
        "bias_ih_l0": rng.standard_normal(16),
        "bias_hh_l0": rng.standard_normal(16),
    }
    if hidden_tt:
        p["weight_hh_l0"] = {
            "cores": tuple(0.5 * rng.standard_normal(s) for s in layer.hh.core_shapes)
        }
    else:
        p["weight_hh_l0"] = 0.5 * rng.standard_normal((4, 16))  # a plain array
    params, exact = _to_jax(p, dtype)
    x, x_exact = _to_jax(rng.standard_normal((3, 5, 6)), dtype)  # (B, T, I)
    out, (h, c) = jax.jit(layer.apply)(params, x)
    w_ih = _ref_dense(layer.ih, exact["weight_ih_l0"]["cores"])
    w_hh = (
        _ref_dense(layer.hh, exact["weight_hh_l0"]["cores"]) if hidden_tt else exact["weight_hh_l0"]
    )
    ref_out, ref_h, ref_c = _lstm_reference(
        np.swapaxes(x_exact, 0, 1), w_ih, w_hh, exact["bias_ih_l0"] + exact["bias_hh_l0"]
    )
    assert out.shape == (3, 5, 4) and out.dtype == getattr(jnp, dtype)
    assert rel_error(out, np.swapaxes(ref_out, 0, 1)) <= RTOL[dtype]
    assert rel_error(h, ref_h) <= RTOL[dtype] and rel_error(c, ref_c) <= RTOL[dtype]
    grads = jax.jit(jax.grad(lambda q: jnp.sum(layer.apply(q, x)[0] ** 2)))(params)
    for k, g in enumerate(grads["weight_ih_l0"]["cores"]):
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
