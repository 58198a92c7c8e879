"""Every zoo model compresses to the same counts in both backends: the same call keeps the same
number of weights, tensorizes the same layers with the same modes and ranks, and counts the same
dense weights. (The ViT once kept 693 weights in torch and 664 in JAX: JAX tensorized each encoder
layer as one composite, so rank allocation never reached its feed-forward maps; now a JAX
`TransformerEncoderLayer` is a container whose sublayers are judged one by one, as torch's.)"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
pytestmark = [pytest.mark.torch, pytest.mark.jax]

import tedepr  # noqa: E402
from tedepr.backends import jax as tj  # noqa: E402
from tedepr.backends import torch as tt  # noqa: E402
from tedepr.pruning.problem import canonical_name  # noqa: E402

# the zoo as users get it where that is cheap; the convolutional nets on small images (their
# layer shapes, and so the counts, scale with the image only through the classifier)
ZOO = {
    "lenet300_100": {},
    "lenet5": {},
    "lstm": {},
    "vit": {},
    "resnet18": {"image_size": 16},
    "resnet20": {"image_size": 8},
    "resnet32": {"image_size": 8},
    "resnet56": {"image_size": 8},
    "vgg16": {"image_size": 32},
    "vgg19": {"image_size": 32},
}

# the recurrent layers' report rows are named after each backend's parameters
_RECURRENT_ROWS = {"lstm.ih": "lstm.weight_ih_l0", "lstm.hh": "lstm"}


def test_the_list_is_the_zoo():
    assert sorted(ZOO) == sorted(tt.available()) == sorted(tj.available())


def _summary(result, backend):
    rows = []
    for layer in result.report.layers:
        name = canonical_name(layer.name) if "/" in layer.name else layer.name
        if backend == "jax":
            name = _RECURRENT_ROWS.get(name, name)
        rows.append((name, layer.format, layer.total, layer.dense, layer.ranks, layer.in_modes))
    return result.report.kept_weights, sorted(rows, key=str)


# the deep variants repeat resnet20's / vgg16's blocks: long compiles, same code paths
_SLOW = ("resnet18", "resnet32", "resnet56", "vgg19")


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in _SLOW else n for n in sorted(ZOO)],
)
def test_same_compress_call_same_counts(name):
    out = {}
    for backend, module in (("torch", tt), ("jax", tj)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # layers left dense: the same in both
            result = tedepr.compress(
                module.get(name, **ZOO[name]),
                None,
                sparsity=0.99,
                format="tt",
                score="magnitude",
                backend=backend,
                # the allocation and exact-count selection: compaction would then drop the kept
                # entries magnitude (entry-wise) strands, which depend on each backend's draws
                compact=False,
            )
        out[backend] = _summary(result, backend)
    assert out["torch"] == out["jax"]
    kept, rows = out["torch"]
    dense = sum(r[3] for r in rows)
    assert kept == round(0.01 * dense)  # the budget of the whole model, in both
    assert any(r[1] == "tt" for r in rows)


def test_vit_encoder_layers_are_containers_in_jax():
    """The JAX ViT's encoder layers keep their class; attention and both feed-forward maps are
    tensorized one by one and get ranks of their own, as torch's submodules."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = {
            b: tedepr.compress(m.get("vit"), None, 0.99, "tt", "magnitude", backend=b)
            for b, m in (("torch", tt), ("jax", tj))
        }
    enc = res["jax"].model.layers["layers/0"]
    assert type(enc) is tj.TransformerEncoderLayer
    subs = enc.sublayers()
    assert isinstance(subs["self_attn"], tj.TensorizedMultiheadAttention)
    assert isinstance(subs["linear1"], tj.TTLinear) and isinstance(subs["linear2"], tj.TTLinear)
    tmod = res["torch"].model.layers[0]
    assert subs["linear1"].ranks == tmod.linear1.ranks
    assert subs["linear1"].ranks != (1,) * len(subs["linear1"].ranks)  # the budget reached it
    # the compressed JAX model runs and its masks count the budget
    x = np.random.default_rng(0).random((2, 1, 28, 28)).astype(np.float32)
    out = res["jax"].model.apply(res["jax"].params, x, res["jax"].masks)
    assert out.shape == (2, 10) and np.isfinite(np.asarray(out)).all()
    counts = tj.count_weights(res["jax"].model, res["jax"].params, res["jax"].masks)
    assert counts["kept"] == res["jax"].report.kept_weights == res["torch"].report.kept_weights


def test_encoder_sublayers_follow_globs_kinds_and_min_params():
    model = tj.get("vit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        only_ffn = tj.tensorize(model, "tt", 2, layers=("linear",), include="layers/*/linear*")
        no_attn = tj.tensorize(model, "tt", 2, exclude="*/self_attn")
        per_layer = tj.tensorize(model, "tt", 2, overrides={"layers/1/linear2": {"rank": 3}})
    subs = only_ffn.layers["layers/0"].sublayers()
    assert isinstance(subs["self_attn"], tj.MultiheadAttention)
    assert isinstance(subs["linear1"], tj.TTLinear)
    assert only_ffn.layers["patch_embed"] == model.layers["patch_embed"]  # not included
    assert isinstance(no_attn.layers["layers/1"].sublayers()["self_attn"], tj.MultiheadAttention)
    assert isinstance(no_attn.layers["layers/1"].sublayers()["linear2"], tj.TTLinear)
    l2 = per_layer.layers["layers/1"].sublayers()["linear2"]
    assert set(l2.ranks[1:-1]) == {3}
    assert set(per_layer.layers["layers/0"].sublayers()["linear2"].ranks[1:-1]) == {2}
    # a changed sublayer makes the layer unequal (transfer_params then draws it afresh)
    assert per_layer.layers["layers/0"] != model.layers["layers/0"]
    params = tj.transfer_params(model, model.init(jax.random.key(0)), per_layer, jax.random.key(1))
    assert "cores" in params["layers/1"]["linear2"]
    with pytest.raises(ValueError, match="sublayers must be among"):
        model.layers["layers/0"].with_sublayers(linear3=None)
