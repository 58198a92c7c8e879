"""The JAX zoo in Flax NNX (`tedepr.backends.jax.flax_zoo`): for the same seed an NNX zoo model holds
the `Model` version's initial weights under the same layer names, so `compress` gives identical
masks and report rows, and `fit` the same training, as the `Model` path."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
nnx = pytest.importorskip("flax.nnx")
pytestmark = pytest.mark.jax

import jax.numpy as jnp  # noqa: E402

import tedepr  # noqa: E402
import tedepr.backends.jax as tj  # noqa: E402
from tedepr.backends.jax import flax_zoo  # noqa: E402
from tedepr.backends.jax import models as pure  # noqa: E402
from tedepr.backends.jax import nnx as tnnx  # noqa: E402
from tedepr.datasets import load_mnist10k, normalize  # noqa: E402

SMALL_VGG = (8, "M", 16, "M", 16)
#: (id, Model builder, Flax builder, seed): small members of each family, on 1×28×28 digits
CASES = {
    "lenet300_100": (
        lambda: pure.lenet300_100(hidden=(64, 32)),
        lambda s: flax_zoo.lenet300_100(hidden=(64, 32), rngs=s),
        0,
    ),
    "lenet5": (lambda: pure.lenet5(), lambda s: flax_zoo.lenet5(rngs=s), 1),
    "vgg_bn": (
        lambda: pure.vgg(SMALL_VGG, in_channels=1, image_size=28),
        lambda s: flax_zoo.vgg(SMALL_VGG, in_channels=1, image_size=28, rngs=s),
        2,
    ),
    "resnet8_A": (
        lambda: pure.cifar_resnet(8, in_channels=1, image_size=28),
        lambda s: flax_zoo.cifar_resnet(8, in_channels=1, image_size=28, rngs=s),
        3,
    ),
    "resnet8_B": (
        lambda: pure.cifar_resnet(8, in_channels=1, image_size=28, shortcut="B"),
        lambda s: flax_zoo.cifar_resnet(8, in_channels=1, image_size=28, shortcut="B", rngs=s),
        4,
    ),
    "vit": (
        lambda: pure.vit(image_size=28, patch_size=7, dim=16, depth=1, heads=2, mlp_dim=32),
        lambda s: flax_zoo.vit(
            image_size=28, patch_size=7, dim=16, depth=1, heads=2, mlp_dim=32, rngs=s
        ),
        5,
    ),
    "lstm": (
        lambda: pure.lstm_classifier(hidden_size=16),
        lambda s: flax_zoo.lstm_classifier(hidden_size=16, rngs=s),
        6,
    ),
    "lstm2": (  # a StackedLSTM: two layers, dropout between them
        lambda: pure.lstm_classifier(hidden_size=8, num_layers=2, dropout=0.25),
        lambda s: flax_zoo.lstm_classifier(hidden_size=8, num_layers=2, dropout=0.25, rngs=s),
        7,
    ),
}
#: the cases whose bridged params are the Model's bitwise (the LSTM's two biases are one in flax)
SAME_ARRAYS = [c for c in CASES if not c.startswith("lstm")]


@pytest.fixture(scope="module")
def digits():
    """A shuffled slice of the embedded digits: 256 to train, 128 to evaluate, float32 NCHW."""
    images, labels = load_mnist10k()
    order = np.random.default_rng(0).permutation(len(labels))[:384]
    x = normalize(images[order])[:, None].astype(np.float32)
    y = labels[order].astype(np.int64)
    return (x[:256], y[:256]), (x[256:], y[256:])


def _pair(case):
    build_model, build_flax, seed = CASES[case]
    return build_model(), build_flax(seed), seed


def _assert_trees_equal(a, b):
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for u, v in zip(leaves_a, leaves_b, strict=True):
        assert u.dtype == v.dtype
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def _assert_trees_close(a, b):
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for u, v in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-4, atol=1e-6)


def _one_bias(params):
    """The params with every recurrent layer's two biases as flax holds them: ``bias_hh`` their
    sum, ``bias_ih`` zero (what the bridge reads off an ``nnx.RNN``)."""
    if not isinstance(params, dict):
        return params
    out = {k: _one_bias(v) for k, v in params.items()}
    for k in [k for k in out if k.startswith("bias_ih_l")]:
        hh = k.replace("_ih_", "_hh_")
        out[hh] = out[k] + out[hh]
        out[k] = jnp.zeros_like(out[k])
    return out


def _assert_masks_equal(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


# ------------------------------------------------------------------------------ weights, names
@pytest.mark.parametrize("case", SAME_ARRAYS)
def test_same_initial_weights_names_and_outputs(case, digits):
    model, flax_model, seed = _pair(case)
    bridge = tnnx.to_model(flax_model, (1, 28, 28))
    params = model.init(jax.random.key(seed))
    # the layers the bridge reports, in the Model zoo's order, with its exact initial arrays
    assert list(bridge.model.layers) == list(model.layers)
    _assert_trees_equal(bridge.params, params)
    assert bridge.model.tensorize_hints == model.tensorize_hints
    # real Flax modules, at the Model's layer names
    kinds = {type(m) for _, m in nnx.iter_graph(flax_model) if isinstance(m, nnx.Module)}
    assert nnx.Linear in kinds
    if case == "vit":  # the encoder layers: flax's attention, norms; free class/position params
        assert {nnx.MultiHeadAttention, nnx.LayerNorm, tnnx.TransformerEncoderLayer} <= kinds
        assert type(flax_model.cls_token) is nnx.Param
    else:
        assert case.startswith("lenet300") or nnx.Conv in kinds
    x = jnp.asarray(digits[0][0][:16])
    ref = model.apply(params, x)
    # under the bridge: bitwise the Model's forward, op by op, in both modes; jitted, XLA may
    # fuse the NHWC program differently (one ulp, seen on option A's shortcut + BatchNorm)
    np.testing.assert_array_equal(bridge.model.apply(bridge.params, x), ref)
    np.testing.assert_array_equal(
        bridge.model.apply(bridge.params, x, train=True), model.apply(params, x, train=True)
    )
    np.testing.assert_allclose(
        jax.jit(lambda p, v: bridge.model.apply(p, v, train=True))(bridge.params, x),
        jax.jit(lambda p, v: model.apply(p, v, train=True))(params, x),
        rtol=1e-6,
        atol=1e-6,
    )
    # called directly (nnx.Conv, nnx.BatchNorm in eval mode): the same function
    flax_model.eval()
    np.testing.assert_allclose(flax_model(x), ref, rtol=1e-5, atol=1e-5)
    assert flax_model(x[:, 0]).shape == (16, 10)  # (N, H, W) for one channel, as the Model zoo


@pytest.mark.parametrize("case", ["lstm", "lstm2"])
def test_lstm_holds_the_model_kernels_and_one_bias(case, digits):
    model, flax_model, seed = _pair(case)
    params = model.init(jax.random.key(seed))
    if case == "lstm":
        rnns = [flax_model.lstm]
    else:  # a StackedLSTM: layer k's nnx.RNN holds the Model's weight_ih_l{k}, ...
        assert type(flax_model.lstm) is tnnx.StackedLSTM and flax_model.lstm.dropout.rate == 0.25
        rnns = list(flax_model.lstm.layers)
    assert len(rnns) == model.layers["lstm"].num_layers
    p = params["lstm"]
    for k, rnn in enumerate(rnns):
        assert type(rnn) is nnx.RNN and type(rnn.cell) is nnx.OptimizedLSTMCell
        # the kernels bitwise; flax's one bias the sum of the Model's two
        np.testing.assert_array_equal(rnn.cell.dense_i.kernel[...], p[f"weight_ih_l{k}"])
        np.testing.assert_array_equal(rnn.cell.dense_h.kernel[...], p[f"weight_hh_l{k}"])
        np.testing.assert_array_equal(
            rnn.cell.dense_h.bias[...], p[f"bias_ih_l{k}"] + p[f"bias_hh_l{k}"]
        )
    bridge = tnnx.to_model(flax_model, (1, 28, 28))
    assert list(bridge.model.layers) == list(model.layers)  # one "lstm" layer, stacked or not
    assert bridge.model.layers["lstm"] == model.layers["lstm"]  # tj.LSTM(28, H, L, batch_first)
    _assert_trees_equal(bridge.params, _one_bias(params))
    x = jnp.asarray(digits[0][0][:16])
    ref = model.apply(params, x)
    # the same function, to the rounding of the bias sum
    np.testing.assert_allclose(bridge.model.apply(bridge.params, x), ref, rtol=1e-5, atol=1e-6)
    if case == "lstm2":  # a fresh model is in training mode (as torch's): its dropout draws
        assert not np.allclose(flax_model(x), ref, rtol=1e-3, atol=1e-4)
        flax_model.eval()
    np.testing.assert_allclose(flax_model(x), ref, rtol=1e-5, atol=1e-6)
    assert flax_model(x[:, 0]).shape == (16, 10)


def test_seed_changes_the_weights_and_rngs_may_be_an_nnx_rngs():
    a = tnnx.to_model(flax_zoo.lenet5(rngs=0), (1, 28, 28)).params
    b = tnnx.to_model(flax_zoo.lenet5(rngs=1), (1, 28, 28)).params
    assert not np.array_equal(a["conv1"]["weight"], b["conv1"]["weight"])
    from_rngs = tnnx.to_model(flax_zoo.lenet5(rngs=nnx.Rngs(7)), (1, 28, 28)).params
    _assert_trees_equal(from_rngs, pure.lenet5().init(nnx.Rngs(7).params()))
    with pytest.raises(TypeError, match="rngs"):
        flax_zoo.lenet5(rngs="seed")


def test_get_builds_the_flax_version():
    model = tedepr.models.get("lenet300_100", backend="jax", flax=True, rngs=3)
    assert isinstance(model, flax_zoo.LeNet300_100) and isinstance(model, nnx.Module)
    assert model.zoo == {
        "name": "lenet300_100",
        "kwargs": {"num_classes": 10, "in_channels": 1, "image_size": 28},
        "flax": True,
    }
    assert model.tensorize_hints == {"hidden/0": {"in_shape": (1, 28, 28)}}
    _assert_trees_equal(
        tnnx.to_model(model, (1, 28, 28)).params,
        tj.get("lenet300_100", flax=False).init(jax.random.key(3)),
    )
    r = tj.get("resnet20", flax=True, in_channels=1, shortcut="B")
    assert isinstance(r, flax_zoo.ResNet) and r.zoo["kwargs"]["shortcut"] == "B"
    assert isinstance(r.blocks[3].projection[0], nnx.Conv)
    assert set(flax_zoo.available()) == set(tj.available()) and not flax_zoo.NOT_IN_FLAX
    assert isinstance(tj.get("lenet5", flax=False), tj.Model)  # the Model zoo, unchanged
    lstm = tedepr.models.get("lstm", backend="jax", flax=True, hidden_size=8)
    assert isinstance(lstm, flax_zoo.LSTMClassifier) and lstm.zoo["kwargs"]["hidden_size"] == 8
    assert lstm.lstm.cell.hidden_features == 8
    v = tj.get("vit", flax=True, rngs=2, dim=16, depth=1, heads=2, mlp_dim=32)
    assert isinstance(v, flax_zoo.ViT) and v.zoo["kwargs"]["dim"] == 16
    assert isinstance(v.layers[0].self_attn, nnx.MultiHeadAttention)
    _assert_trees_equal(
        tnnx.to_model(v, (1, 28, 28)).params,
        tj.get("vit", flax=False, dim=16, depth=1, heads=2, mlp_dim=32).init(jax.random.key(2)),
    )
    with pytest.raises(ValueError, match="name must be one of"):
        tj.get("lenet6", flax=True)
    with pytest.raises(TypeError, match="flax must be a bool"):
        tj.get("lenet5", flax="yes")


def test_flax_is_the_jax_default_and_flax_false_the_model(digits):
    """The front's JAX default is the Flax NNX model; ``flax=False`` the Model; on the same
    weights (``rngs=s`` and ``seed=s``) one compress call gives both the same masks."""
    flax_model = tedepr.models.get("lenet300_100", backend="jax", rngs=4)
    model = tedepr.models.get("lenet300_100", backend="jax", flax=False)
    assert isinstance(flax_model, nnx.Module) and not isinstance(flax_model, tj.Model)
    assert isinstance(model, tj.Model) and not isinstance(model, nnx.Module)
    assert isinstance(tj.get("lenet5"), flax_zoo.LeNet5) and flax_model.zoo["flax"] is True
    assert "flax" not in model.zoo  # how tedepr.load tells a Model file from a Flax one
    data = (digits[0][0][:64], digits[0][1][:64])
    kw = {"sparsity": 0.9, "format": "tt", "score": "snip", "backend": "jax", "seed": 4}
    got = tedepr.compress(flax_model, data, **kw)
    ref = tedepr.compress(model, data, **kw)
    assert isinstance(got, tnnx.FlaxCompressionResult)
    _assert_masks_equal(got.masks, ref.masks)
    assert got.report.kept_weights == ref.report.kept_weights
    # each kind's seeding keywords are refused, with the other's named
    with pytest.raises(TypeError, match=r"seed is the torch zoo's keyword.*rngs=.*flax=False"):
        tj.get("lenet5", seed=1)
    with pytest.raises(TypeError, match=r"seed is the torch zoo's keyword"):
        tedepr.models.get("lenet5", backend="jax", flax=False, seed=1)
    for key in ("rngs", "dtype"):
        with pytest.raises(TypeError, match=rf"{key} applies to the Flax model.*model\.init"):
            tj.get("lenet5", flax=False, **{key: 1 if key == "rngs" else jnp.float32})


@pytest.mark.slow
@pytest.mark.parametrize(("name", "kw"), [("resnet18", {}), ("vgg16", {"in_channels": 3})])
def test_full_size_models_from_get(name, kw):
    model, flax_model = tj.get(name, flax=False, **kw), tj.get(name, rngs=5, **kw)
    bridge = tnnx.to_model(flax_model, model.input_shape)
    assert list(bridge.model.layers) == list(model.layers)
    params = model.init(jax.random.key(5))
    _assert_trees_equal(bridge.params, params)
    x = jnp.ones((2, *model.input_shape))
    flax_model.eval()
    np.testing.assert_allclose(flax_model(x), model.apply(params, x), rtol=1e-4, atol=1e-5)


def test_bridge_carries_the_hints():
    """tensorize keeps the zoo's hints: hidden/0's modes inside the image axes, the weight init
    scheme ("torch") as the target of the cores' init."""
    flax_model = flax_zoo.lenet300_100()
    model = pure.lenet300_100()
    ours = tnnx.tensorize(flax_model, "tt", rank=4)
    theirs = tj.tensorize(model, "tt", rank=4)
    for name in ("hidden/0", "hidden/1"):
        layer = ours.hidden[int(name[-1])].layer
        assert layer == theirs.layers[name]
        assert layer.weight_init == "torch"
    assert ours.hidden[0].layer.in_modes == theirs.layers["hidden/0"].in_modes
    # a plain user model (no hints) keeps flax's default init and graph order
    plain = nnx.Sequential(nnx.Linear(64, 48, rngs=nnx.Rngs(0)))
    assert tnnx.tensorize(plain, "tt", rank=2, min_params=1).layers[0].layer.weight_init == "lecun"


def test_bad_hints_are_refused():
    model = flax_zoo.lenet5()
    model.layer_order = "conv1"
    with pytest.raises(TypeError, match="layer_order"):
        tnnx.to_model(model, (1, 28, 28))
    model = flax_zoo.lenet5()
    model.weight_inits = {"conv1": 3}
    with pytest.raises(TypeError, match="weight_inits"):
        tnnx.to_model(model, (1, 28, 28))
    model = flax_zoo.lenet5()
    model.zoo = "lenet5"
    with pytest.raises(TypeError, match="model.zoo"):
        tnnx.to_model(model, (1, 28, 28))
    model = flax_zoo.lenet5()
    model.tensorize_hints = {"fc1": (1, 28, 28)}
    with pytest.raises(TypeError, match="tensorize_hints"):
        tnnx.tensorize(model, "tt")


def test_input_shape_comes_from_the_zoo_model(digits):
    """Data as an iterator of batches: the bridge takes one sample's shape from the zoo model
    (a model without ``input_shape`` still needs ``input_shape=``)."""
    (x, y), _ = digits
    model, flax_model, seed = _pair("lenet300_100")
    kw = {"sparsity": 0.9, "format": None, "score": "snip", "backend": "jax", "seed": seed}
    got = tedepr.compress(flax_model, iter([(x[:32], y[:32])]), **kw)
    ref = tedepr.compress(model, iter([(x[:32], y[:32])]), **kw)
    _assert_masks_equal(got.masks, ref.masks)
    del flax_model.input_shape
    with pytest.raises(ValueError, match="input_shape must be given"):
        tedepr.compress(flax_model, iter([(x[:32], y[:32])]), **kw)


# ------------------------------------------------------------------------------ compress, fit
#: The bridge is score-agnostic (the scores run on the bridged `Model`), so each family is checked
#: dense and tensorized once; the score variety is on the cheap MLP. Every family's conversion of
#: weights, names and outputs is checked above for every case.
_CASES = [
    ("lenet300_100", "tt", "trainability"),
    ("lenet300_100", None, "snip"),
    ("lenet300_100", "tt", "snip"),
    ("lenet300_100", None, "trainability"),
    ("lenet5", "tt", "snip"),
    ("lenet5", None, "trainability"),
    ("vgg_bn", "tt", "trainability"),
    ("resnet8_B", None, "snip"),
    ("vit", "tt", "trainability"),
    ("vit", None, "snip"),
    ("lstm", "tt", "trainability"),
    ("lstm", None, "snip"),
    ("lstm2", "tt", "trainability"),
    ("lstm2", None, "snip"),
]


@pytest.mark.parametrize(("case", "fmt", "score"), _CASES)
def test_compress_gives_identical_masks(case, fmt, score, digits):
    model, flax_model, seed = _pair(case)
    data = (digits[0][0][:64], digits[0][1][:64])
    kw = {"sparsity": 0.9, "format": fmt, "score": score, "backend": "jax", "seed": seed}
    ref = tedepr.compress(model, data, **kw)
    got = tedepr.compress(flax_model, data, **kw)
    assert isinstance(got, tnnx.FlaxCompressionResult)
    assert isinstance(got.model, type(flax_model))
    _assert_masks_equal(got.masks, ref.masks)
    # (a tensorized LSTM draws both biases afresh, as the Model path; a dense one holds flax's)
    _assert_trees_equal(_one_bias(got.params), _one_bias(ref.params))
    assert [r.name for r in got.report.layers] == [r.name for r in ref.report.layers]
    assert got.report.kept_weights == ref.report.kept_weights
    assert got.report.dense_weights == ref.report.dense_weights


@pytest.mark.parametrize(
    ("case", "fmt", "score"),
    [("lenet5", "tt", "trainability"), ("vgg_bn", None, "snip")],
)
def test_fit_matches_the_model_path(case, fmt, score, digits):
    model, flax_model, seed = _pair(case)
    (xtr, ytr), (xte, yte) = digits
    kw = {"sparsity": 0.9, "format": fmt, "score": score, "backend": "jax", "seed": seed}
    ref = tedepr.compress(model, (xtr[:64], ytr[:64]), **kw)
    got = tedepr.compress(flax_model, (xtr[:64], ytr[:64]), **kw)
    fit_kw = {"epochs": 1, "lr": 0.05, "batch_size": 64, "eval_data": (xte, yte), "progress": False}
    ref_fit = tj.fit(ref.model, ref.params, (xtr, ytr), masks=ref.masks, **fit_kw)
    got_fit = tj.fit(got.model, None, (xtr, ytr), **fit_kw)
    # the jitted steps are two XLA programs (the NNX one merges the module inside): equal up to
    # float32 rounding, so the same accuracy and the losses to 1e-5
    for a, b in zip(got_fit.history, ref_fit.history, strict=True):
        assert a["train_acc"] == b["train_acc"] and a["eval_acc"] == b["eval_acc"]
        for key in ("train_loss", "eval_loss"):
            np.testing.assert_allclose(a[key], b[key], rtol=1e-5, err_msg=key)
    _assert_trees_close(got_fit.params, ref_fit.params)
    # the trained NNX model holds the trained weights (BatchNorm statistics too), pruned entries 0
    trained = tnnx.to_model(got_fit.model, (1, 28, 28))
    _assert_trees_equal(trained.params, got_fit.params)
    _assert_masks_equal(trained.masks, ref.masks)
    for path, mask in trained.masks.items():
        layer, _, leaf = path.partition("/cores/")
        value = trained.params[layer]["cores"][int(leaf)] if leaf else None
        if value is None:
            layer, _, key = path.rpartition("/")
            value = trained.params[layer][key]
        assert not np.any(np.asarray(value)[~np.asarray(mask)]), path


@pytest.mark.parametrize("num_layers", [1, 2])
def test_lstm_round_trips_through_save_and_load(tmp_path, digits, num_layers):
    """The Flax zoo's LSTM, pruned and trained, saved and loaded: bitwise in JAX (rebuilt from the
    file's zoo record), the same function in torch; a tensorized one loads into its skeleton.
    Two layers: a `StackedLSTM` with dropout, trained with the pipeline's dropout."""
    pytest.importorskip("torch")
    import torch

    (x, y), _ = digits
    x, y = x[:32, :, 2:26:3, 2:26:3], y[:32]  # 8x8 images: 8 steps of 8 features
    opts = {"num_layers": 2, "dropout": 0.25} if num_layers == 2 else {}
    model = tedepr.models.get("lstm", backend="jax", flax=True, image_size=8, hidden_size=8, **opts)
    kw = {"sparsity": 0.9, "score": "snip", "backend": "jax", "seed": 0}
    r = tedepr.compress(model, (x, y), format=None, **kw)
    if num_layers == 2:  # the second layer's maps pruned too, under torch's names
        assert {"lstm/weight_ih_l1", "lstm/weight_hh_l1"} <= set(r.masks)
    trained = tj.fit(r.model, None, (x, y), epochs=1, batch_size=16, lr=0.05, progress=False)
    # pruned: the pipeline's layer, masked (called as nnx.RNN / as the StackedLSTM)
    assert isinstance(trained.model.lstm, tnnx.RNN if num_layers == 1 else tnnx.LSTM)
    assert trained.model.lstm.layer.num_layers == num_layers
    tedepr.save(trained.model, tmp_path / "lstm.tedepr")
    back = tedepr.load(tmp_path / "lstm.tedepr", backend="jax")
    assert isinstance(back.model, flax_zoo.LSTMClassifier)
    np.testing.assert_array_equal(np.asarray(back.model(x)), np.asarray(trained.model(x)))
    _assert_masks_equal(tnnx.to_model(back.model, (1, 8, 8)).masks, r.masks)
    rt = tedepr.load(tmp_path / "lstm.tedepr", backend="torch")
    with torch.no_grad():
        yt = rt.model.eval()(torch.tensor(x)).numpy()
    np.testing.assert_allclose(yt, np.asarray(trained.model(x)), rtol=1e-5, atol=1e-6)
    # tensorized: the file's TensorizedLSTM needs a skeleton (as for the Model zoo's)
    rtt = tedepr.compress(
        model, (x, y), format="tt", rank=2, tensorize_options={"min_params": 256}, **kw
    )
    tedepr.save(rtt, tmp_path / "tt.tedepr")
    skeleton = tnnx.tensorize(model, "tt", rank=2, min_params=256, rngs=1)  # other cores
    again = tedepr.load(tmp_path / "tt.tedepr", backend="jax", model=skeleton)
    assert isinstance(again.model.lstm.layer, tj.TensorizedLSTM)
    np.testing.assert_array_equal(np.asarray(again.model(x)), np.asarray(rtt.model(x)))
