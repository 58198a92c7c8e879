"""The zoo contract, once for both backends: the same names, the same front (`tedepr.models.get`
dispatches to the backend's ``get``), the same argument errors (`tedepr.models.zoo_front`)."""

from __future__ import annotations

import inspect

import pytest
from _backends import backend  # noqa: F401  (the fixture)

import tedepr.models as front

ZOO_NAMES = {
    "lenet300_100",
    "lenet5",
    "vgg16",
    "vgg19",
    "resnet20",
    "resnet32",
    "resnet56",
    "resnet18",
    "lstm",
    "vit",
}


def test_zoo_names(backend):
    module = backend.module()
    assert set(module.available()) == ZOO_NAMES
    assert module.available() == tuple(sorted(ZOO_NAMES)) == front.available(backend.name)
    assert set(module.MODELS) == ZOO_NAMES


def test_zoo_argument_errors(backend):
    get = backend.module().get
    with pytest.raises(ValueError, match=r"name must be one of 'lenet300_100', .*; got 'alexnet'"):
        get("alexnet")
    with pytest.raises(ValueError, match="num_classes must be an int >= 1; got 0"):
        get("lenet5", num_classes=0)
    with pytest.raises(ValueError, match="image_size"):
        front.get("lenet5", backend=backend.name, image_size=-1)
    with pytest.raises(TypeError, match="multiple values for argument 'num_classes'"):
        get("lenet5", 3, num_classes=3)  # bound as a plain function's arguments
    with pytest.raises(TypeError, match="too many positional arguments"):
        get("lenet5", 10, 1, 28, 0)  # the framework keywords are keyword-only


def test_zoo_get_signature_is_the_front(backend):
    """One ``get`` for every zoo: the shared positional parameters, then the framework's own
    keyword-only ones (torch ``seed``; JAX ``flax``, default True: the Flax NNX model, and its
    ``rngs``/``dtype``), then the model options."""
    params = list(inspect.signature(backend.module().get).parameters.values())
    assert [(p.name, p.default) for p in params[:4]] == [
        ("name", inspect.Parameter.empty),
        ("num_classes", 10),
        ("in_channels", 1),
        ("image_size", 28),
    ]
    own = {"torch": [("seed", None)], "jax": [("flax", True), ("rngs", None), ("dtype", None)]}
    assert [(p.name, p.default) for p in params[4:-1]] == own[backend.name]
    assert all(p.kind is p.KEYWORD_ONLY for p in params[4:-1])
    assert params[-1].kind is params[-1].VAR_KEYWORD
    assert "num_classes, in_channels, image_size" in backend.module().get.__doc__
