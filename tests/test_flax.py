"""Flax NNX for JAX users: the NNX tensorized layers are the pure layers underneath; `tensorize`,
`compress`, `score` and `fit` take a model written in Flax NNX (here, not from the zoo); its masks
equal the torch masks of the same weights and seed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")
nnx = pytest.importorskip("flax.nnx")
pytestmark = pytest.mark.jax

import jax.numpy as jnp  # noqa: E402

import tedepr  # noqa: E402
import tedepr.backends.jax as tj  # noqa: E402
from tedepr.backends.jax import nnx as tnnx  # noqa: E402
from tedepr.datasets import load_mnist10k, normalize  # noqa: E402

FORMATS = ("tt", "tr", "tucker", "cp")


class MLP(nnx.Module):
    """The user's model: 784 -> 64 -> 32 -> 10 with ReLU, written in Flax NNX."""

    def __init__(self, rngs, dtype=jnp.float32, widths=(784, 64, 32, 10)):
        self.layers = nnx.List(
            [
                nnx.Linear(a, b, param_dtype=dtype, rngs=rngs)
                for a, b in zip(widths[:-1], widths[1:])
            ]
        )

    def __call__(self, x):
        x = jnp.reshape(x, (x.shape[0], -1))
        for layer in self.layers[:-1]:
            x = jax.nn.relu(layer(x))
        return self.layers[-1](x)


class Nested(nnx.Module):
    """Layers at several depths: an attribute, an nnx.Sequential inside a submodule, a LayerNorm."""

    def __init__(self, rngs):
        self.inp = nnx.Linear(48, 40, rngs=rngs)
        self.norm = nnx.LayerNorm(40, rngs=rngs)
        self.block = Block(rngs)
        self.head = nnx.Linear(40, 5, rngs=rngs)  # 200 weights: below min_params

    def __call__(self, x):
        return self.head(self.block(self.norm(self.inp(x))))


class Block(nnx.Module):
    def __init__(self, rngs):
        self.seq = nnx.Sequential(nnx.Linear(40, 32, rngs=rngs), jax.nn.relu)
        self.out = nnx.Linear(32, 40, rngs=rngs)

    def __call__(self, x):
        return jax.nn.relu(self.out(self.seq(x)))


@pytest.fixture(scope="module")
def digits():
    """A shuffled slice of the embedded digits: 512 to train, 256 to evaluate, float32."""
    images, labels = load_mnist10k()
    order = np.random.default_rng(0).permutation(len(labels))[:768]
    x = normalize(images[order])[:, None].astype(np.float32)
    y = labels[order].astype(np.int64)
    return (x[:512], y[:512]), (x[512:], y[512:])


def _kernels(model):
    return [np.asarray(leaf) for leaf in jax.tree.leaves(nnx.state(model, nnx.Param))]


# ------------------------------------------------------------------------------------------ layers
@pytest.mark.parametrize("fmt", FORMATS)
def test_nnx_layer_is_the_pure_layer(fmt):
    layer = tnnx.LINEAR_CLASSES[fmt](24, 18, rank=3, rngs=nnx.Rngs(1), dtype=jnp.float64)
    assert type(layer.layer) is tj.layers.LINEAR_CLASSES[fmt]
    params = layer.pure_params()
    x = jax.random.normal(jax.random.key(2), (5, 24), jnp.float64)
    want = layer.layer.apply(params, x)
    np.testing.assert_allclose(np.asarray(layer(x)), np.asarray(want), rtol=1e-12, atol=1e-12)
    # the dense weight it holds: the factorized cores' reconstruction
    w = layer.factorized().to_dense()
    np.testing.assert_allclose(np.asarray(want), np.asarray(x @ w + params["bias"]), atol=1e-10)
    jitted = nnx.jit(lambda m, v: m(v))(layer, x)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(want), rtol=1e-12, atol=1e-12)
    # nnx.grad reaches every core and equals jax.grad of the pure apply
    g = nnx.grad(lambda m, v: jnp.sum(m(v) ** 2))(layer, x)
    g_pure = jax.grad(lambda p: jnp.sum(layer.layer.apply(p, x) ** 2))(params)
    for k, gk in enumerate(g_pure["cores"]):
        np.testing.assert_allclose(np.asarray(g["cores"][k][...]), np.asarray(gk), rtol=1e-10)
        assert np.any(np.asarray(gk) != 0)


def test_masks_are_fixed_variables_not_params():
    pure = tj.TTLinear(16, 12, rank=2)
    params = pure.init(jax.random.key(0), jnp.float64)
    rng = np.random.default_rng(0)
    masks = {"cores": tuple(rng.random(c.shape) < 0.5 for c in params["cores"])}
    layer = tnnx.wrap(pure, params, masks)
    assert isinstance(layer, tnnx.TTLinear)
    x = jax.random.normal(jax.random.key(1), (3, 16), jnp.float64)
    np.testing.assert_allclose(
        np.asarray(layer(x)), np.asarray(pure.apply(params, x, masks=masks)), rtol=1e-12
    )
    # masks are state of their own kind: not trained, not among the params
    assert len(jax.tree.leaves(nnx.state(layer, tnnx.Mask))) == len(params["cores"])
    assert all(leaf.dtype != jnp.bool_ for leaf in jax.tree.leaves(nnx.state(layer, nnx.Param)))
    g = nnx.grad(lambda m, v: jnp.sum(m(v)))(layer, x)
    for k, m in enumerate(masks["cores"]):  # a pruned entry gets no gradient
        assert np.all(np.asarray(g["cores"][k][...])[~m] == 0)


# ------------------------------------------------------------------------------------------ tensorize
def test_tensorize_walks_nesting_and_leaves_the_caller_alone():
    model = Nested(nnx.Rngs(0))
    before = _kernels(model)
    out = tnnx.tensorize(model, "tt", rank=2, rngs=3)
    # every eligible nnx.Linear replaced, wherever it sits; the small head stays an nnx.Linear
    assert isinstance(out.inp, tnnx.TTLinear)
    assert isinstance(out.block.seq.layers[0], tnnx.TTLinear)
    assert isinstance(out.block.out, tnnx.TTLinear)
    assert type(out.head) is nnx.Linear and type(out.norm) is nnx.LayerNorm
    np.testing.assert_array_equal(np.asarray(out.head.kernel[...]), model.head.kernel[...])
    # the caller's model is untouched
    assert type(model.inp) is nnx.Linear and type(model.block.seq.layers[0]) is nnx.Linear
    for a, b in zip(before, _kernels(model)):
        np.testing.assert_array_equal(a, b)
    x = jnp.ones((4, 48))
    assert out(x).shape == (4, 5)
    # the JAX backend's own tensorize hands NNX models over (same result for the same seed)
    via = tj.tensorize(model, "tt", rank=2)
    again = tnnx.tensorize(model, "tt", rank=2, rngs=0)
    np.testing.assert_array_equal(np.asarray(via(x)), np.asarray(again(x)))


def test_tensorize_options_follow_the_jax_tensorize():
    model = Nested(nnx.Rngs(0))
    out = tnnx.tensorize(
        model,
        "tt",
        rank=2,
        exclude="block/*",
        overrides={"inp": {"format": "tucker", "rank": 3}},
    )
    assert isinstance(out.inp, tnnx.TuckerLinear) and out.inp.layer.rank == 3
    assert type(out.block.out) is nnx.Linear and type(out.block.seq.layers[0]) is nnx.Linear
    only = tnnx.tensorize(model, "cp", rank=2, include="block/out", min_params=0)
    assert isinstance(only.block.out, tnnx.CPLinear) and type(only.inp) is nnx.Linear
    with pytest.raises(ValueError, match="include"):
        tnnx.tensorize(model, include="blok/*")
    with pytest.raises(ValueError, match="no eligible layer"):
        tnnx.tensorize(model, min_params=10**9)
    # a float rank is a per-layer parameter budget, as in the JAX tensorize
    budget = tnnx.tensorize(model, "tt", rank=0.2)
    assert budget.inp.num_weights <= 0.2 * 48 * 40


class Heads(nnx.Module):
    def __init__(self, rngs):
        self.heads = nnx.Dict(
            {"a": nnx.Linear(40, 40, rngs=rngs), "b": nnx.Linear(40, 10, rngs=rngs)}
        )

    def __call__(self, x):
        return self.heads["b"](jax.nn.relu(self.heads["a"](x)))


def test_nnx_dict_containers_are_walked():
    model = Heads(nnx.Rngs(0))
    out = tnnx.tensorize(model, "tt", rank=2, min_params=0)
    assert isinstance(out.heads["a"], tnnx.TTLinear) and isinstance(out.heads["b"], tnnx.TTLinear)
    assert type(model.heads["a"]) is nnx.Linear
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 40)).astype(np.float32), rng.integers(0, 10, 8)
    result = tj.compress(model, (x, y), sparsity=0.9, format=None, score="snip")
    assert sorted(result.masks) == ["heads/a/weight", "heads/b/weight"]
    assert isinstance(result.model.heads["a"], tnnx.Dense)
    kept = sum(int(np.sum(np.asarray(m))) for m in result.masks.values())
    assert kept == round(0.1 * (40 * 40 + 40 * 10))


# ------------------------------------------------------------------------------------------ torch
def _torch_copy(model):
    """The torch nn.Sequential with the same weights (kernels transposed: torch is (out, in))."""
    torch = pytest.importorskip("torch")
    seq = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(784, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 32),
        torch.nn.ReLU(),
        torch.nn.Linear(32, 10),
    ).double()
    with torch.no_grad():
        for i, layer in enumerate(model.layers):
            seq[2 * i + 1].weight.copy_(torch.tensor(np.asarray(layer.kernel[...]).T))
            seq[2 * i + 1].bias.copy_(torch.tensor(np.asarray(layer.bias[...])))
    return seq


def _same_cores(nnx_model, torch_model):
    """Copy the torch TT cores (and biases) into the NNX TT model: identical cores."""
    for i, layer in enumerate(nnx_model.layers):
        tlayer = torch_model[2 * i + 1]
        assert layer.layer.in_modes == tlayer.factorized().in_modes
        for k, core in enumerate(tlayer.cores):
            layer.cores[k][...] = jnp.asarray(core.detach().numpy())
        layer.bias[...] = jnp.asarray(tlayer.bias.detach().numpy())


@pytest.mark.torch
@pytest.mark.parametrize("score", ["trainability", "snip"])
@pytest.mark.parametrize("fmt", [None, "tt"])
def test_masks_equal_the_torch_masks(digits, fmt, score):
    torch = pytest.importorskip("torch")
    from tedepr.backends import torch as tt

    (x, y), _ = digits
    x, y = x[:128].astype(np.float64), y[:128]
    model = MLP(nnx.Rngs(0), dtype=jnp.float64)
    seq = _torch_copy(model)
    sparsity = 0.95
    if fmt == "tt":  # identical cores in both backends, then prune them
        model = tnnx.tensorize(model, "tt", rank=4, min_params=0)
        seq = tt.tensorize(seq, "tt", rank=4, min_params=0)
        _same_cores(model, seq)
        sparsity = 0.99
    xt = torch.tensor(x)
    np.testing.assert_allclose(
        np.asarray(model(jnp.asarray(x))), seq(xt).detach().numpy(), rtol=1e-10, atol=1e-12
    )
    rj = tj.compress(model, (x, y), sparsity=sparsity, format=None, score=score, seed=0)
    rt = tt.compress(
        seq, (xt, torch.tensor(y)), sparsity=sparsity, format=None, score=score, seed=0
    )
    assert len(rj.masks) == len(rt.masks) > 0
    kept = 0
    for i in range(3):
        if fmt is None:
            pairs = [(f"layers/{i}/weight", f"{2 * i + 1}.weight", True)]
        else:
            pairs = [
                (f"layers/{i}/cores/{k}", f"{2 * i + 1}.core_{k}", False)
                for k in range(len(model.layers[i].cores))
            ]
        for jname, tname, transpose in pairs:
            mj = np.asarray(rj.masks[jname])
            np.testing.assert_array_equal(mj.T if transpose else mj, rt.masks[tname].numpy())
            kept += int(mj.sum())
    assert kept == round((1 - sparsity) * (784 * 64 + 64 * 32 + 32 * 10))
    assert kept == rj.report.kept_weights == rt.report.kept_weights
    # the result's NNX model carries those masks and runs as the pipeline's model
    masked = rj.model.layers[0]
    assert isinstance(masked, tnnx.Dense if fmt is None else tnnx.TTLinear)
    np.testing.assert_allclose(
        np.asarray(rj.model(jnp.asarray(x))),
        np.asarray(rj.jax_model.apply(rj.params, jnp.asarray(x), rj.masks)),
        rtol=1e-12,
    )


# ------------------------------------------------------------------------------------------ train
def test_compress_and_fit_a_flax_mlp_on_digits(digits):
    (x, y), (xe, ye) = digits
    model = MLP(nnx.Rngs(0))
    before = _kernels(model)
    result = tedepr.compress(
        model, (x[:256], y[:256]), sparsity=0.95, format="tt", score="trainability", backend="jax"
    )
    assert isinstance(result, tnnx.FlaxCompressionResult)
    assert result.report.kept_weights == round(0.05 * (784 * 64 + 64 * 32 + 32 * 10))
    assert all(isinstance(layer, tnnx.TensorizedLinear) for layer in result.model.layers)
    assert [row.name for row in result.report.layers] == ["layers/0", "layers/1", "layers/2"]
    for a, b in zip(before, _kernels(model)):  # the caller's model is untouched
        np.testing.assert_array_equal(a, b)
    out = tj.fit(
        result.model,
        None,
        (x, y),
        epochs=3,
        lr=0.1,
        batch_size=64,
        eval_data=(xe, ye),
        progress=False,
        seed=0,
    )
    assert [h["epoch"] for h in out.history] == [1, 2, 3]
    assert out.history[-1]["train_loss"] < out.history[0]["train_loss"]
    assert out.history[-1]["eval_acc"] > 0.3  # chance is 0.1
    trained = out.model
    assert isinstance(trained, MLP) and trained is not result.model
    # pruned entries stayed exactly zero; the kept ones trained
    for i, layer in enumerate(trained.layers):
        for k, core in enumerate(layer.cores):
            m = np.asarray(result.masks[f"layers/{i}/cores/{k}"])
            c = np.asarray(core[...])
            assert np.all(c[~m] == 0)
            np.testing.assert_array_equal(np.asarray(layer.masks["cores"][k][...]), m)
    start = np.asarray(result.model.layers[0].cores[0][...])
    assert np.any(np.asarray(trained.layers[0].cores[0][...]) != start)
    logits = trained(jnp.asarray(xe))
    acc = float(np.mean(np.argmax(np.asarray(logits), axis=1) == ye))
    assert abs(acc - out.history[-1]["eval_acc"]) < 1e-6


def test_score_and_opaque_modules_ride_along():
    model = Nested(nnx.Rngs(0))
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 48)).astype(np.float32), rng.integers(0, 5, 16)
    scores = tj.score(model, [(x, y)], "snip")  # a list of batches: the sample shape read off
    assert set(scores) == {
        f"{n}/weight" for n in ("inp", "block/seq/layers/0", "block/out", "head")
    }
    assert scores["inp/weight"].shape == (48, 40)
    result = tj.compress(model, (x, y), sparsity=0.95, format="tt", rank=2, score="snip")
    # LayerNorm's params are trained but never pruned nor counted as weights
    assert result.report.other_params == 40 + 32 + 40 + 5 + 2 * 40
    assert type(result.model.norm) is nnx.LayerNorm
    out = tj.fit(result.model, None, (x, y), epochs=1, batch_size=8, progress=False)
    assert np.any(np.asarray(out.model.norm.scale[...]) != np.asarray(model.norm.scale[...]))


# ------------------------------------------------------------------------------------------ errors
class WithEmbed(nnx.Module):
    def __init__(self, rngs):
        self.embed = nnx.Embed(16, 8, rngs=rngs)
        self.fc = nnx.Linear(8, 10, rngs=rngs)

    def __call__(self, x):
        return self.fc(jnp.mean(self.embed(x.astype(jnp.int32)), axis=1))


class WithDropout(nnx.Module):
    def __init__(self, rngs):
        self.fc = nnx.Linear(8, 8, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.bn = nnx.BatchNorm(8, use_scale=False, rngs=rngs)

    def __call__(self, x):
        return self.bn(self.drop(self.fc(x)))


class Shared(nnx.Module):
    def __init__(self, rngs):
        self.a = nnx.Linear(8, 8, rngs=rngs)
        self.b = self.a

    def __call__(self, x):
        return self.b(self.a(x))


def test_bad_inputs_get_clear_errors():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 8)).astype(np.float32), rng.integers(0, 8, 4)
    with pytest.raises(TypeError, match=r"model must be a flax\.nnx\.Module"):
        tnnx.tensorize({"fc": 1})
    with pytest.raises(TypeError, match="model must be a tedepr.backends.jax Model"):
        tj.compress({"fc": 1}, (x, y))
    with pytest.raises(ValueError, match=r"Embed at 'embed'"):
        tj.compress(WithEmbed(nnx.Rngs(0)), (np.ones((4, 3), np.float32), y))
    with pytest.raises(ValueError, match=r"BatchNorm at 'bn' does not map: use_scale=False"):
        tj.compress(WithDropout(nnx.Rngs(0)), (x, y))
    odd = WithDropout(nnx.Rngs(0))
    odd.bn = nnx.LayerNorm(8, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"Rng\w+ state at 'drop/rngs/"):
        tj.compress(odd, (x, y))
    with pytest.raises(ValueError, match="shared"):
        tj.compress(Shared(nnx.Rngs(0)), (x, y), format=None, score="snip")
    with pytest.raises(ValueError, match="params must be None"):
        tj.compress(MLP(nnx.Rngs(0)), None, params={})
    with pytest.raises(ValueError, match="input_shape must be given"):
        tj.compress(MLP(nnx.Rngs(0)), iter([(x, y)]), format=None, score="snip")
    with pytest.raises(TypeError, match="rngs must be an nnx.Rngs or an int"):
        tnnx.TTLinear(16, 16, rank=2, rngs="seed")
    with pytest.raises(TypeError, match="rngs must be"):
        tnnx.TTLinear(16, 16, rank=2)
    pure = tj.TTLinear(16, 12, rank=2)
    with pytest.raises(ValueError, match="params must have the shapes"):
        tnnx.wrap(pure, {"cores": (jnp.ones((1, 4, 4, 2)),), "bias": jnp.ones(12)})
    good = pure.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"masks\['bias'\]: only cores and weights"):
        tnnx.wrap(pure, good, {"bias": np.ones(12, bool)})
    with pytest.raises(TypeError, match="layer must be a tedepr.backends.jax layer"):
        tnnx.LayerModule(object(), {})
    done = tj.compress(MLP(nnx.Rngs(0)), (np.ones((4, 784), np.float32), y), sparsity=0.9)
    with pytest.raises(ValueError, match="already holds pruning masks"):
        tj.compress(done.model, (np.ones((4, 784), np.float32), y))


# ------------------------------------------------------------------------------------------ conv
class CNN(nnx.Module):
    """NHWC images: 3x3 convs (SAME and strided), global average, a Linear head."""

    def __init__(self, rngs, dtype=jnp.float32):
        self.conv1 = nnx.Conv(1, 8, (3, 3), param_dtype=dtype, rngs=rngs)
        self.conv2 = nnx.Conv(8, 16, (3, 3), strides=2, padding=1, param_dtype=dtype, rngs=rngs)
        self.head = nnx.Linear(16, 10, param_dtype=dtype, rngs=rngs)

    def __call__(self, x):
        x = jax.nn.relu(self.conv2(jax.nn.relu(self.conv1(x))))
        return self.head(jnp.mean(x, axis=(1, 2)))


@pytest.mark.parametrize("fmt", FORMATS)
def test_nnx_conv_layers_are_the_pure_layers_on_nhwc(fmt):
    layer = tnnx.CONV_CLASSES[fmt](4, 6, 3, rank=2, padding=1, rngs=nnx.Rngs(0), dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(1), (2, 5, 5, 4), jnp.float64)
    want = layer.layer.apply(layer.pure_params(), jnp.transpose(x, (0, 3, 1, 2)))
    got = nnx.jit(lambda m, v: m(v))(layer, x)
    assert got.shape == (2, 5, 5, 6)
    np.testing.assert_allclose(
        np.asarray(got), np.asarray(jnp.transpose(want, (0, 2, 3, 1))), rtol=1e-12, atol=1e-12
    )


def test_conv_models_bridge_tensorize_and_match_torch_masks():
    torch = pytest.importorskip("torch")
    from tedepr.backends import torch as tt

    model = CNN(nnx.Rngs(0), dtype=jnp.float64)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 8, 8, 1))
    y = rng.integers(0, 10, 16)
    # the bridge's forward is the user's forward
    bridge = tnnx.to_model(model, x.shape[1:])
    np.testing.assert_allclose(
        np.asarray(bridge.model.apply(bridge.params, jnp.asarray(x))),
        np.asarray(model(jnp.asarray(x))),
        rtol=1e-12,
    )
    # the same network in torch (NCHW; kernels (out, in, kh, kw))
    seq = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 10),
    ).double()
    with torch.no_grad():
        for t, m in ((seq[0], model.conv1), (seq[2], model.conv2)):
            t.weight.copy_(torch.tensor(np.transpose(np.asarray(m.kernel[...]), (3, 2, 0, 1))))
            t.bias.copy_(torch.tensor(np.asarray(m.bias[...])))
        seq[6].weight.copy_(torch.tensor(np.asarray(model.head.kernel[...]).T))
        seq[6].bias.copy_(torch.tensor(np.asarray(model.head.bias[...])))
    xt = torch.tensor(np.transpose(x, (0, 3, 1, 2)))
    np.testing.assert_allclose(
        np.asarray(model(jnp.asarray(x))), seq(xt).detach().numpy(), rtol=1e-10, atol=1e-12
    )
    rj = tj.compress(model, (x, y), sparsity=0.8, format=None, score="snip")
    rt = tt.compress(seq, (xt, torch.tensor(y)), sparsity=0.8, format=None, score="snip")
    for jname, tname in (("conv1", "0"), ("conv2", "2")):
        np.testing.assert_array_equal(
            np.asarray(rj.masks[f"{jname}/weight"]), rt.masks[f"{tname}.weight"].numpy()
        )
    np.testing.assert_array_equal(np.asarray(rj.masks["head/weight"]).T, rt.masks["6.weight"])
    assert isinstance(rj.model.conv1, tnnx.Conv)
    np.testing.assert_allclose(
        np.asarray(rj.model(jnp.asarray(x))),
        np.asarray(rj.jax_model.apply(rj.params, jnp.asarray(x), rj.masks)),
        rtol=1e-12,
    )
    # tensorize maps the convolutions too (the small head stays dense)
    out = tnnx.tensorize(model, "tucker", rank=2, min_params=0, exclude=["head", "conv1"])
    assert isinstance(out.conv2, tnnx.TuckerConv2d) and type(out.head) is nnx.Linear
    assert out.conv2.layer.stride == (2, 2) and out(jnp.asarray(x)).shape == (16, 10)
    # an nnx.Conv that does not map is named: left dense by tensorize, refused by compress
    model.conv2 = nnx.Conv(8, 16, (3, 3), strides=2, padding="SAME", rngs=nnx.Rngs(1))
    with pytest.warns(UserWarning, match="conv2.*does not map"):
        tnnx.tensorize(model, "tt", rank=2, min_params=0)
    with pytest.raises(ValueError, match="conv2.*does not map"):
        tj.compress(model, (x, y), format=None, score="snip")


def test_the_jax_backend_imports_flax_only_on_use():
    """``import tedepr.backends.jax`` stays free of flax; ``backends.jax.nnx`` brings it in."""
    code = (
        "import sys, tedepr.backends.jax as tj\n"
        "print('BEFORE', 'flax' in sys.modules)\n"
        "assert not tj.nnx_detect.is_nnx_module(object())\n"
        "from tedepr.backends.jax import nnx\n"
        "print('AFTER', 'flax.nnx' in sys.modules, nnx.TTLinear.__name__)\n"
    )
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=str(repo),
        env={**os.environ, "PYTHONPATH": str(repo)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "BEFORE False" in proc.stdout and "AFTER True TTLinear" in proc.stdout, proc.stdout


class CNNBN(nnx.Module):
    def __init__(self, rngs, dtype=jnp.float64):
        self.conv = nnx.Conv(1, 8, (3, 3), use_bias=False, param_dtype=dtype, rngs=rngs)
        self.bn = nnx.BatchNorm(8, param_dtype=dtype, rngs=rngs)
        self.head = nnx.Linear(8, 10, param_dtype=dtype, rngs=rngs)

    def __call__(self, x):
        x = jax.nn.relu(self.bn(self.conv(x)))
        return self.head(jnp.mean(x, axis=(1, 2)))


@pytest.mark.torch
# flax's own BatchNorm, run in float64 on its float32 statistics, warns when it stores them
@pytest.mark.filterwarnings("ignore:scatter inputs have incompatible types:FutureWarning")
def test_batch_norm_is_routed_with_its_statistics():
    torch = pytest.importorskip("torch")
    from tedepr.backends import torch as tt

    model = CNNBN(nnx.Rngs(0))
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 8, 8, 1)), rng.integers(0, 10, 16)
    bridge = tnnx.to_model(model, x.shape[1:])
    probe = nnx.clone(model)
    probe.train()  # batch statistics: the bridge's training-mode forward
    got, stats = bridge.model.apply_train(bridge.params, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(got), np.asarray(probe(jnp.asarray(x))), rtol=1e-10)
    np.testing.assert_allclose(  # flax momentum 0.99 on the old value = torch's 0.01 on the new
        np.asarray(stats["bn"]["mean"]), np.asarray(probe.bn.mean[...]), rtol=1e-6, atol=1e-9
    )
    fresh = nnx.clone(model)
    fresh.eval()  # running statistics (those of the init: probe's moved on)
    np.testing.assert_allclose(
        np.asarray(bridge.model.apply(bridge.params, jnp.asarray(x))),
        np.asarray(fresh(jnp.asarray(x))),
        rtol=1e-6,  # flax keeps the running statistics in float32
    )
    seq = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1, bias=False),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 10),
    ).double()
    with torch.no_grad():
        kernel = np.transpose(np.asarray(model.conv.kernel[...]), (3, 2, 0, 1))
        seq[0].weight.copy_(torch.tensor(kernel))
        seq[5].weight.copy_(torch.tensor(np.asarray(model.head.kernel[...]).T))
        seq[5].bias.copy_(torch.tensor(np.asarray(model.head.bias[...])))
    xt = torch.tensor(np.transpose(x, (0, 3, 1, 2)))
    rj = tj.compress(model, (x, y), sparsity=0.5, format=None, score="snip")
    rt = tt.compress(seq, (xt, torch.tensor(y)), sparsity=0.5, format=None, score="snip")
    np.testing.assert_array_equal(np.asarray(rj.masks["conv/weight"]), rt.masks["0.weight"])
    np.testing.assert_array_equal(np.asarray(rj.masks["head/weight"]).T, rt.masks["5.weight"])
    assert rj.report.other_params == 8 + 8 + 10  # BN scale and bias, the head's bias
    before = np.asarray(model.bn.mean[...]).copy()
    out = tj.fit(rj.model, None, (x, y), epochs=1, batch_size=8, progress=False)
    assert type(out.model.bn) is nnx.BatchNorm
    assert np.any(np.asarray(out.model.bn.mean[...]) != before)  # running statistics came back
    np.testing.assert_array_equal(np.asarray(model.bn.mean[...]), before)  # caller untouched


# ------------------------------------------------------------------------------ attention, dropout
class WithAttention(nnx.Module):
    """Tokens (B, T, 8) -> Linear -> flax's self-attention -> Dropout -> mean -> Linear."""

    def __init__(self, rngs, dropout=0.0, masked=False, **attn):
        self.embed = nnx.Linear(8, 16, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(4, 16, decode=False, rngs=rngs, **attn)
        self.drop = nnx.Dropout(dropout, rngs=rngs)
        self.head = nnx.Linear(16, 3, rngs=rngs)
        self.masked = masked  # call the attention with a mask (which the bridge refuses)

    def __call__(self, x):
        kw = {"mask": jnp.ones((1, 1, x.shape[1], x.shape[1]), bool)} if self.masked else {}
        h = self.drop(self.attn(self.embed(x), **kw))
        return self.head(jnp.mean(h, axis=1))


def _tokens():
    rng = np.random.default_rng(3)
    return rng.standard_normal((12, 5, 8)).astype(np.float32), rng.integers(0, 3, 12)


def test_attention_routes_to_the_pipelines_multihead_attention():
    x, y = _tokens()
    model = WithAttention(nnx.Rngs(0))
    bridge = tnnx.to_model(model, (5, 8))
    layer = bridge.model.layers["attn"]
    assert type(layer) is tj.MultiheadAttention
    assert (layer.embed_dim, layer.num_heads, layer.batch_first) == (16, 4, True)
    # flax's per-head kernels: head h, feature j is column h·D + j of the (in, out) projection
    q, out = bridge.params["attn"]["q_proj"]["weight"], bridge.params["attn"]["out_proj"]["weight"]
    np.testing.assert_array_equal(q[:, 2 * 4 + 1], model.attn.query.kernel[...][:, 2, 1])
    np.testing.assert_array_equal(out[3 * 4 + 2], model.attn.out.kernel[...][3, 2])
    # the pipeline's forward is flax's own
    np.testing.assert_allclose(bridge.model.apply(bridge.params, x), model(x), rtol=1e-5, atol=1e-6)
    # the same masks as a Model of the same pure layers and weights (flax's graph order)
    pure = tj.Model(
        {n: bridge.model.layers[n] for n in ("attn", "embed", "head")},
        lambda call, v: call("head", jnp.mean(call("attn", call("embed", v)), axis=1)),
        (5, 8),
    )
    for fmt, score in (("tt", "trainability"), (None, "snip")):
        kw = {"sparsity": 0.7, "format": fmt, "score": score, "seed": 1, "rank": 2}
        got = tj.compress(model, (x, y), **kw)
        ref = tj.compress(pure, (x, y), params=bridge.params, **kw)
        assert sorted(got.masks) == sorted(ref.masks)
        assert any(k.startswith("attn/q_proj/") for k in got.masks)
        for k in ref.masks:
            np.testing.assert_array_equal(got.masks[k], ref.masks[k], err_msg=k)
        # the compressed NNX model runs the compressed layers, masks and all
        np.testing.assert_allclose(
            got.model(x), ref.model.apply(ref.params, x, masks=ref.masks), rtol=1e-5, atol=1e-6
        )
    trained = tnnx.fit(got.model, train_data=(x, y), epochs=1, batch_size=12, progress=False)
    assert np.isfinite(trained.history[-1]["train_loss"])


def test_dense_attention_goes_back_to_flax_and_dropout_that_never_draws_rides_along():
    x, y = _tokens()
    model = WithAttention(nnx.Rngs(0))  # nnx.Dropout(0.0, rngs=...): holds a random stream
    assert nnx.to_flat_state(nnx.state(model.drop, ...))
    result = tnnx.fit(model, train_data=(x, y), epochs=1, batch_size=6, lr=0.1, progress=False)
    new = result.model
    assert type(new.attn) is nnx.MultiHeadAttention and type(new.drop) is nnx.Dropout
    assert new.drop.rngs is not None  # the user's Dropout, stream and all
    back = tnnx.to_model(new, (5, 8))
    for a, b in zip(jax.tree.leaves(back.params), jax.tree.leaves(result.params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(new.attn.query.kernel[...], model.attn.query.kernel[...])
    np.testing.assert_allclose(
        new(x), back.model.apply(result.params, x), rtol=1e-5, atol=1e-6
    )  # flax's attention on the trained weights = the pipeline's
    off = WithAttention(nnx.Rngs(0), dropout=0.5)
    off.drop = nnx.Dropout(0.5, deterministic=True, rngs=nnx.Rngs(1))
    tj.compress(off, (x, y), format=None, score="snip")
    with pytest.raises(ValueError, match=r"Rng\w+ state at 'drop/rngs/"):
        tj.compress(WithAttention(nnx.Rngs(0), dropout=0.5), (x, y))


def test_attention_that_does_not_map_is_refused():
    x, y = _tokens()
    with pytest.raises(
        ValueError, match=r"MultiHeadAttention at 'attn' does not map:.*qkv_features"
    ):
        tj.compress(WithAttention(nnx.Rngs(0), qkv_features=8), (x, y))
    with pytest.raises(
        ValueError, match=r"MultiHeadAttention at 'attn' does not map: normalize_qk"
    ):
        tj.compress(WithAttention(nnx.Rngs(0), normalize_qk=True), (x, y))
    masked = WithAttention(nnx.Rngs(0), masked=True)
    with pytest.raises(TypeError, match=r"attention 'attn' takes inputs_q.*no mask"):
        tj.compress(masked, (x, y))


def test_a_users_encoder_layer_is_one_pipeline_layer():
    x, _ = _tokens()
    enc = tnnx.TransformerEncoderLayer(8, 2, 16, activation="gelu", rngs=nnx.Rngs(4))
    model = nnx.Sequential(enc)
    bridge = tnnx.to_model(model, (5, 8))
    assert list(bridge.model.layers) == ["layers/0"]  # its submodules go with it
    layer = bridge.model.layers["layers/0"]
    assert type(layer) is tj.TransformerEncoderLayer
    assert (layer.d_model, layer.nhead, layer.dim_feedforward, layer.activation) == (
        8,
        2,
        16,
        "gelu",
    )
    np.testing.assert_allclose(bridge.model.apply(bridge.params, x), enc(x), rtol=1e-5, atol=1e-5)
    back = bridge.rebuild(bridge.model, bridge.params)
    assert type(back.layers[0]) is tnnx.TransformerEncoderLayer
    np.testing.assert_allclose(back(x), enc(x), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="activation"):
        tnnx.TransformerEncoderLayer(8, 2, 16, activation="tanh", rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="rngs must be an nnx.Rngs"):
        tnnx.TransformerEncoderLayer(8, 2, 16, rngs=0)


def test_tensorize_replaces_a_users_attention():
    x, _ = _tokens()
    model = WithAttention(nnx.Rngs(0))
    tt = tnnx.tensorize(model, "tt", rank=2, min_params=1)
    assert type(model.attn) is nnx.MultiHeadAttention  # the caller's model is not modified
    assert isinstance(tt.attn, tnnx.LayerModule)
    assert type(tt.attn.layer) is tj.TensorizedMultiheadAttention
    assert tt.attn.layer.batch_first and tt.attn.layer.num_heads == 4
    assert tt(x).shape == (12, 3)
    bridge = tnnx.to_model(tt, (5, 8))  # and it bridges again, nested cores and all
    assert type(bridge.model.layers["attn"]) is tj.TensorizedMultiheadAttention
    np.testing.assert_allclose(bridge.model.apply(bridge.params, x), tt(x), rtol=1e-6)
