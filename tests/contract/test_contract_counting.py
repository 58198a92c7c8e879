"""`count_weights` is one concept in both backends: on every zoo architecture, tensorized alike,
the two backends count the same dense, core, kept, bias, normalisation and other entries."""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
pytestmark = [pytest.mark.torch, pytest.mark.jax]

from tedepr.backends import jax as tj  # noqa: E402
from tedepr.backends import torch as tt  # noqa: E402

KEYS = ("dense", "params", "kept", "biases", "norm", "other")


@pytest.mark.parametrize(
    "name, kw",
    [
        ("lenet5", {}),  # convolutions
        ("resnet20", {"in_channels": 3, "image_size": 32}),  # BatchNorm (running stats not counted)
        ("vit", {}),  # attention, LayerNorm, embeddings ("other")
    ],
)
def test_count_weights_agrees_between_backends(name, kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # layers left dense are not the point here
        tmodel = tt.tensorize(tt.get(name, seed=0, **kw), "tt", 4, min_params=0)
        jmodel = tj.tensorize(tj.get(name, flax=False, **kw), "tt", 4, min_params=0)
    tc = tt.count_weights(tmodel)
    # counts need shapes only: abstract params (jax.eval_shape) count what an init would, without
    # compiling and running the init of a whole ResNet
    params = jax.eval_shape(jmodel.init, jax.random.key(0))
    jc = tj.count_weights(jmodel, params)
    assert {k: tc[k] for k in KEYS} == {k: jc[k] for k in KEYS}
    assert len(tc["layers"]) == len(jc["layers"])
    assert tc["dense"] == sum(e["dense"] for e in jc["layers"].values())
    assert tc["params"] < tc["dense"]  # something was tensorized
    # masks count: half of the first tensorized layer's first core pruned
    path = next(p for p, info in jmodel.structure().items() if info.format != "dense")
    core = tj.prunable_weights(params)[path]
    mask = (jax.numpy.arange(core.size) % 2 == 0).reshape(core.shape)
    masked = tj.count_weights(jmodel, params, {path: mask})
    assert masked["kept"] == jc["kept"] - (core.size - int(mask.sum()))
    assert masked["params"] == jc["params"]
