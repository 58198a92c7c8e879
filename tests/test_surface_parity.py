"""The signature gaps issue 11 closed, by value: JAX attention and encoder layers take torch's
dropout, kdim, vdim, weight_init and std (and compute what torch computes on copied weights), torch
attention takes in_modes/out_modes, torch's ``TensorizedLinear``/``TensorizedConv2d`` build the
class of ``format=`` as JAX's do, and JAX ``tensorize(decompose=True)`` decomposes trained weights
into the same cores as torch's."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

import tedepr

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
pytestmark = [pytest.mark.torch, pytest.mark.jax]

import jax.numpy as jnp  # noqa: E402

from tedepr.backends import jax as tj  # noqa: E402
from tedepr.backends import torch as tt  # noqa: E402
from tedepr.backends.jax import interchange as jx  # noqa: E402
from tedepr.backends.jax.layers import dropout  # noqa: E402
from tedepr.backends.torch import interchange as tx  # noqa: E402
from tedepr.tensorizing import CONV_STRATEGIES  # noqa: E402

PROJ = ("q_proj", "k_proj", "v_proj", "out_proj")


def _linear_params(tlayer, rng):
    """Random cores/bias set on the torch layer; the same arrays as JAX params."""
    cores = [rng.standard_normal(tuple(c.shape)) * 0.5 for c in tlayer.cores]
    tlayer._load_cores(cores)
    out = {"cores": tuple(jnp.asarray(c) for c in cores)}
    if tlayer.bias is not None:
        b = rng.standard_normal(tlayer.bias.shape[0])
        with torch.no_grad():
            tlayer.bias.copy_(torch.as_tensor(b))
        out["bias"] = jnp.asarray(b)
    return out


def _attention_params(tattn, rng):
    return {name: _linear_params(getattr(tattn, name), rng) for name in PROJ}


@pytest.mark.parametrize("fmt", ["tt", "tr", "tucker", "cp"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_attention_with_kdim_vdim_and_modes_equals_torch(fmt, batch_first):
    kw = dict(format=fmt, rank=2, batch_first=batch_first, kdim=8, vdim=6)
    if fmt in ("tt", "tr"):
        kw.update(in_modes=(3, 4), out_modes=(4, 3))
    tattn = tt.TensorizedMultiheadAttention(12, 3, dtype=torch.float64, seed=0, **kw)
    jattn = tj.TensorizedMultiheadAttention(12, 3, **kw)
    for name in PROJ:  # the same structure: modes, ranks, core shapes
        tsub, jsub = getattr(tattn, name), jattn.sublayers()[name]
        assert tuple(tuple(c.shape) for c in tsub.cores) == jsub.core_shapes, name
        assert (tsub.in_modes, tsub.out_modes) == (jsub.in_modes, jsub.out_modes), name
    if fmt == "tt":
        assert tattn.q_proj.in_modes == (3, 4) == jattn.in_modes
        assert tattn.out_proj.in_modes == (3, 4) and tattn.out_proj.out_modes == (4, 3)
        assert tattn.k_proj.in_features == 8  # key and value choose their own modes
    rng = np.random.default_rng(1)
    params = _attention_params(tattn, rng)
    shape = (lambda n, t, f: (n, t, f)) if batch_first else (lambda n, t, f: (t, n, f))
    q = rng.standard_normal(shape(2, 5, 12))
    k = rng.standard_normal(shape(2, 4, 8))
    v = rng.standard_normal(shape(2, 4, 6))
    with torch.no_grad():
        y_t, _ = tattn(*(torch.as_tensor(a) for a in (q, k, v)), need_weights=False)
    y_j = jax.jit(jattn.apply)(params, *(jnp.asarray(a) for a in (q, k, v)))
    np.testing.assert_allclose(np.asarray(y_j), y_t.numpy(), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="key must have 3 axes, the last of size 8"):
        jattn.apply(params, jnp.asarray(q), jnp.asarray(q), jnp.asarray(v))


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_equals_torch_on_copied_weights(norm_first):
    opts = dict(activation="gelu", batch_first=True, norm_first=norm_first)
    tl = tt.TensorizedTransformerEncoderLayer(
        8, 2, 16, 0.0, format="tt", rank=2, dtype=torch.float64, seed=0, **opts
    )
    jl = tj.TensorizedTransformerEncoderLayer(8, 2, 16, 0.0, format="tt", rank=2, **opts)
    rng = np.random.default_rng(2)
    params = {
        "self_attn": _attention_params(tl.self_attn, rng),
        "linear1": _linear_params(tl.linear1, rng),
        "linear2": _linear_params(tl.linear2, rng),
    }
    for n in ("norm1", "norm2"):
        scale, bias = rng.standard_normal(8), rng.standard_normal(8)
        with torch.no_grad():
            getattr(tl, n).weight.copy_(torch.as_tensor(scale))
            getattr(tl, n).bias.copy_(torch.as_tensor(bias))
        params[n] = {"scale": jnp.asarray(scale), "bias": jnp.asarray(bias)}
    x = rng.standard_normal((2, 5, 8))
    tl.eval()
    with torch.no_grad():
        y_t = tl(torch.as_tensor(x)).numpy()
    y_j = np.asarray(jl.apply(params, jnp.asarray(x)))
    np.testing.assert_allclose(y_j, y_t, rtol=1e-10, atol=1e-12)
    # dropout 1.0 drops both residual branches whole, in both backends (pre-norm: y == x)
    if norm_first:
        tl1 = tt.TensorizedTransformerEncoderLayer(8, 2, 16, 1.0, rank=2, seed=0, **opts).train()
        jl1 = tj.TensorizedTransformerEncoderLayer(8, 2, 16, 1.0, rank=2, **opts)
        p1 = jl1.init(jax.random.key(0))
        x32 = x.astype(np.float32)
        np.testing.assert_array_equal(tl1(torch.as_tensor(x32)).detach().numpy(), x32)
        y1 = jl1.apply(p1, jnp.asarray(x32), train=True, key=jax.random.key(1))
        np.testing.assert_array_equal(np.asarray(y1), x32)


def test_attention_and_encoder_dropout_draws_only_in_training_with_a_key():
    attn = tj.TensorizedMultiheadAttention(8, 2, rank=2, dropout=0.5, batch_first=True)
    assert attn.stochastic and not tj.TensorizedMultiheadAttention(8, 2, rank=2).stochastic
    p = attn.init(jax.random.key(0))
    p = {n: {**s, "bias": jnp.ones_like(s["bias"])} for n, s in p.items()}
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 5, 8)), jnp.float32)
    plain = tj.TensorizedMultiheadAttention(8, 2, rank=2, batch_first=True)
    y_eval = attn.apply(p, x)
    np.testing.assert_array_equal(y_eval, plain.apply(p, x))  # eval: dropout is not applied
    np.testing.assert_array_equal(y_eval, attn.apply(p, x, train=True))  # no key: deterministic
    k1, k2 = jax.random.key(1), jax.random.key(2)
    y1 = attn.apply(p, x, train=True, dropout_key=k1)
    assert not np.allclose(y1, y_eval)
    np.testing.assert_array_equal(y1, attn.apply(p, x, train=True, dropout_key=k1))
    assert not np.allclose(y1, attn.apply(p, x, train=True, dropout_key=k2))
    # every attention weight dropped: the output is the output projection's bias
    full = tj.TensorizedMultiheadAttention(8, 2, rank=2, dropout=1.0, batch_first=True)
    y = full.apply(p, x, train=True, dropout_key=k1)
    np.testing.assert_allclose(np.asarray(y), np.broadcast_to(p["out_proj"]["bias"], y.shape))
    # the encoder passes its dropout to its attention and is stochastic itself
    enc = tj.TensorizedTransformerEncoderLayer(8, 2, 16, 0.25, rank=2, batch_first=True)
    assert enc.stochastic and enc.sublayers()["self_attn"].dropout == 0.25
    with pytest.raises(ValueError, match="dropout must be in"):
        tj.TensorizedMultiheadAttention(8, 2, dropout=1.5)
    with pytest.raises(TypeError, match="dropout must be a float"):
        tj.TensorizedTransformerEncoderLayer(8, 2, 16, "0.1")


def test_dropout_is_inverted_dropout():
    x = jnp.ones((200, 200), jnp.float32)
    y = np.asarray(dropout(x, 0.3, jax.random.key(0)))
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    assert dropout(x, 0.3, None) is x and dropout(x, 0.0, jax.random.key(0)) is x
    np.testing.assert_array_equal(dropout(x, 1.0, jax.random.key(0)), 0.0)


def test_zoo_vit_dropout_reaches_training_forward():
    model = tj.get("vit", flax=False, image_size=16, dropout=0.2)
    assert all(model.layers[f"layers/{k}"].dropout == 0.2 for k in range(2))
    params = model.init(jax.random.key(0))
    x = jnp.asarray(np.random.default_rng(0).random((2, 1, 16, 16)), jnp.float32)
    y_eval = model.apply(params, x)
    y_train = model.apply(params, x, train=True, key=jax.random.key(3))
    assert not np.allclose(y_eval, y_train)
    np.testing.assert_array_equal(y_eval, model.apply(params, x, train=True))  # no key
    assert (
        tj.get("vit", flax=False, image_size=16).layers["layers/0"].dropout == 0.0
    )  # as the torch zoo
    assert tt.get("vit", image_size=16).layers[0].dropout.p == 0.0


def _core_std_torch(cls_kwargs, name, draws=60):
    cores = []
    for seed in range(draws):
        layer = tt.TensorizedMultiheadAttention(16, 2, seed=seed, **cls_kwargs)
        cores += [c.detach().numpy().ravel() for c in getattr(layer, name).cores]
    return float(np.concatenate(cores).std())


@pytest.mark.parametrize(
    "kw",
    [
        dict(rank=2, kdim=8, vdim=12),  # torch's Xavier on (E, kdim) and (E, vdim)
        dict(rank=2, weight_init="he"),
        dict(rank=2, std=0.05),
    ],
)
def test_attention_init_targets_the_same_std_as_torch(kw):
    jattn = tj.TensorizedMultiheadAttention(16, 2, **kw)
    for name in PROJ:
        expected = jattn.sublayers()[name].core_std
        measured = _core_std_torch(kw, name)
        assert measured == pytest.approx(expected, rel=0.06), name
    if "std" in kw:  # and the reconstructed weight has that std (over draws)
        sub = jattn.sublayers()["q_proj"]
        keys = jax.random.split(jax.random.key(0), 200)
        w = jax.vmap(lambda k: sub.weight(sub.init(k)))(keys)
        assert float(jnp.std(w)) == pytest.approx(0.05, rel=0.05)


def test_torch_tensorized_linear_and_conv_take_format():
    layer = tt.TensorizedLinear(24, 12, 2, format="tr")
    assert type(layer) is tt.TRLinear and isinstance(layer, tt.TensorizedLinear)
    assert type(tt.TensorizedLinear(24, 12, 2)) is tt.TTLinear  # "tt" by default, as JAX
    j = tj.TensorizedLinear(24, 12, 2, format="tr")
    assert tuple(tuple(c.shape) for c in layer.cores) == j.core_shapes
    assert type(copy.deepcopy(layer)) is tt.TRLinear
    conv = tt.TensorizedConv2d(4, 8, 3, padding=1, rank=2, format="tucker")
    assert type(conv) is tt.TuckerConv2d
    jc = tj.TensorizedConv2d(4, 8, 3, padding=1, rank=2, format="tucker")
    assert tuple(tuple(c.shape) for c in conv.cores) == jc.core_shapes
    y = conv(torch.zeros(1, 4, 6, 6))
    assert y.shape == (1, 8, 6, 6)
    assert type(tt.TTLinear(24, 12, 2, format="tt")) is tt.TTLinear
    with pytest.raises(ValueError, match="format='cp' does not match TTLinear"):
        tt.TTLinear(24, 12, 2, format="cp")
    with pytest.raises(ValueError, match="format must be one of"):
        tt.TensorizedLinear(24, 12, 2, format="ttt")


@pytest.mark.parametrize(
    "name, kw",
    [
        ("lenet300_100", dict(num_classes=4, image_size=16, hidden=(64,))),
        ("lenet5", dict(image_size=16)),
        ("vit", dict(image_size=16)),
        ("lstm", dict(image_size=8)),
    ],
)
def test_jax_tensorize_decompose_equals_torch(name, kw):
    tm = tt.get(name, seed=0, **kw).double().eval()
    jm = tj.get(name, flax=False, **kw)
    params, _ = jx.import_arrays(jm, tx.export_arrays(tm), dtype=jnp.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # rank caps
        tnew = tt.tensorize(tm, "tt", 2, min_params=0, decompose=True)
        jnew, jp = tj.tensorize(jm, "tt", 2, min_params=0, decompose=True, params=params)
    assert isinstance(jnew, tj.Model) and jnew.decomposition_error
    assert all(0.0 < e < 1.0 for e in jnew.decomposition_error.values())
    # the same decompositions as torch's (cores equal up to the SVD's signs): the same errors,
    # the same arrays outside the cores, the same outputs
    terr = {}
    for mname, m in tnew.named_modules():
        err = getattr(m, "decomposition_error", None)
        if isinstance(err, float):
            terr[mname] = err
        elif isinstance(err, dict):  # composites: by submodule / weight name
            for sub, e in err.items():
                if isinstance(e, float):
                    terr[f"{mname}.{sub}"] = e
    jerr = sorted(jnew.decomposition_error.values())
    np.testing.assert_allclose(jerr, sorted(set(terr.values())), rtol=1e-6)
    exported = jx.export_arrays(jnew, jp)["params"]
    theirs = tx.export_arrays(tnew)["params"]
    assert sorted(exported) == sorted(theirs)
    for key, a in exported.items():
        if ".core_" not in key:
            np.testing.assert_allclose(a, theirs[key], rtol=1e-12, err_msg=key)
    size = kw["image_size"]
    x = np.random.default_rng(0).random((3, 1, size, size))
    with torch.no_grad():
        y_t = tnew(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(np.asarray(jnew.apply(jp, jnp.asarray(x))), y_t, rtol=1e-8)
    # untouched layers keep the caller's arrays
    untouched = [n for n in jm.layers if jnew.layers[n] == jm.layers[n]]
    assert all(jp[n] is params[n] for n in untouched)


def test_jax_tensorize_decompose_arguments():
    model = tj.get("lenet300_100", flax=False, image_size=16, hidden=(64,))
    params = model.init(jax.random.key(0))
    with pytest.raises(ValueError, match="decompose=True needs params="):
        tj.tensorize(model, "tt", 2, decompose=True)
    with pytest.raises(ValueError, match="params= is for decompose=True"):
        tj.tensorize(model, "tt", 2, params=params)
    with pytest.raises(TypeError, match="decompose must be a bool"):
        tj.tensorize(model, "tt", 2, decompose=1, params=params)
    # the decomposition is the core's: the same error as tedepr.decompose of the weight
    import tedepr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        new, p = tj.tensorize(model, "tt", 4, decompose=True, params=params)
    layer = new.layers["hidden/0"]
    f = tedepr.decompose(
        np.asarray(params["hidden/0"]["weight"], np.float64),
        "tt",
        layer.ranks,
        in_modes=layer.in_modes,
        out_modes=layer.out_modes,
    )
    assert new.decomposition_error["hidden/0"] == pytest.approx(f.error)
    w = np.asarray(layer.weight(p["hidden/0"]), np.float64)
    np.testing.assert_allclose(w, f.to_dense(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(p["hidden/0"]["bias"], params["hidden/0"]["bias"])


def test_format_classes_take_only_their_own_format_in_both_backends():
    for module in (tt, tj):
        assert type(module.TTLinear(24, 12, 2, format="tt")).__name__ == "TTLinear"
        with pytest.raises(ValueError, match="format='cp' does not match TTLinear"):
            module.TTLinear(24, 12, 2, format="cp")
        with pytest.raises(ValueError, match="format='tt' does not match TRConv2d"):
            module.TRConv2d(4, 8, 3, rank=2, format="tt")


def test_one_tensorize_signature_for_the_front_and_both_backends():
    """`tedepr.tensorizing.tensorize` is the one signature (and documentation) of both backends'
    ``tensorize`` (`tedepr.tensorizing.bind`): the same parameters in the same order, the same
    keyword-only defaults; the front picks the backend from the model's type."""
    import inspect

    from tedepr import tensorizing

    front = inspect.signature(tensorizing.tensorize)
    expected = [p for p in front.parameters.values() if p.name != "backend"]
    for module in (tt, tj):
        sig = inspect.signature(module.tensorize)
        assert [(p.name, p.kind, p.default) for p in sig.parameters.values()] == [
            (p.name, p.kind, p.default) for p in expected
        ]
        assert module.tensorize.__doc__ == tensorizing.tensorize.__doc__
    assert [p.name for p in expected][:3] == ["model", "format", "rank"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        tnew = tensorizing.tensorize(tt.get("lenet5", seed=0), "tr", 2)
        jnew = tensorizing.tensorize(tj.get("lenet5", flax=False), "tr", 2)
    assert type(tnew.fc1) is tt.TRLinear and type(jnew.layers["fc1"]) is tj.TRLinear
    # torch modules hold their weights: params= is rejected, naming it
    with pytest.raises(ValueError, match="params must be None for a torch module"):
        tt.tensorize(tt.get("lenet5", seed=0), "tt", 2, params={})
    with pytest.raises(TypeError, match="tensorize_hidden must be a bool"):
        tt.tensorize(tt.get("lenet5", seed=0), "tt", 2, tensorize_hidden="yes")


def test_layer_options_are_one_rule_in_both_backends():
    """``conv_strategy`` is a convolution's strategy and ``strategy`` that of the other maps, in
    the call and in ``overrides`` alike, in both backends (`tedepr.tensorizing.layer_options`)."""
    kw = dict(
        strategy="chain",
        conv_strategy="unfold",
        overrides={"conv2": {"conv_strategy": "reconstruct"}, "fc2": {"strategy": "optimal"}},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        tnew = tt.tensorize(tt.get("lenet5", seed=0), "tt", 2, min_params=0, **kw)
        jnew = tj.tensorize(tj.get("lenet5", flax=False), "tt", 2, min_params=0, **kw)
    expected = {
        "conv1": "unfold",
        "conv2": "reconstruct",
        "fc1": "chain",
        "fc2": "optimal",
        "classifier": "chain",
    }
    assert {n: getattr(tnew, n).strategy for n in expected} == expected
    assert {n: jnew.layers[n].strategy for n in expected} == expected
    for module, model in ((tt, tt.get("lenet5", seed=0)), (tj, tj.get("lenet5", flax=False))):
        # the error names the override pattern and the allowed values
        with pytest.raises(ValueError) as err:
            module.tensorize(model, "tt", 2, overrides={"conv2": {"conv_strategy": "chain"}})
        message = str(err.value)
        assert message.startswith("overrides['conv2']['conv_strategy'] must be one of"), message
        assert all(repr(s) in message for s in CONV_STRATEGIES) and "got 'chain'" in message
    # compress's tensorize_options go through the same rule
    x, y = np.zeros((4, 1, 28, 28), np.float32), np.arange(4) % 10
    bad = {"overrides": {"conv*": {"conv_strategy": 3}}}
    with pytest.raises(ValueError, match=r"^overrides\['conv\*'\]\['conv_strategy'\] must be one"):
        tedepr.compress(tt.get("lenet5", seed=0), (x, y), format="tt", tensorize_options=bad)
