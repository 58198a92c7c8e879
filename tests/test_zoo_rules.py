"""One rule set for both zoos and the layers' sizes (`tedepr.models`, `tedepr.validation`): the
same bad argument is the same error, with the same message, in torch and in JAX."""

from __future__ import annotations

import pytest

from tedepr import models
from tedepr.validation import check_dropout, check_sizes

BAD = [
    ("resnet20", {"shortcut": "C"}, ValueError, "shortcut must be 'A'"),
    ("vit", {"patch_size": 5}, ValueError, "patch_size must divide image_size"),
    ("vit", {"heads": 3}, ValueError, "heads must divide dim"),
    ("vit", {"dim": True}, TypeError, "dim must be an int >= 1"),
    ("lenet300_100", {"hidden": (300, 0)}, ValueError, r"hidden\[1\] must be an int >= 1"),
    ("lenet300_100", {"hidden": "300"}, TypeError, "hidden must be a sequence of ints"),
    ("nope", {}, ValueError, "name must be one of .*'lenet300_100'"),
    ("lenet5", {"num_classes": 0}, ValueError, "num_classes must be an int >= 1"),
]


def _backends():
    out = []
    for name in ("torch", "jax"):
        try:
            __import__(name)
        except ImportError:
            continue
        out.append(name)
    return out


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize(("name", "kw", "exc", "match"), BAD)
def test_both_zoos_reject_the_same_arguments_alike(backend, name, kw, exc, match):
    with pytest.raises(exc, match=match):
        models.get(name, backend=backend, **kw)


def test_resnet_rules_and_block_plan():
    assert models.check_resnet(20, "A") == 3 and models.check_resnet(56, "B") == 9
    with pytest.raises(TypeError, match="depth must be an int"):
        models.check_resnet(True, "A")  # was a ValueError in JAX, a TypeError in torch
    with pytest.raises(ValueError, match="depth must be 6n\\+2"):
        models.check_resnet(21, "A")
    plan = list(models.resnet_blocks(16, (16, 32, 64), 2))
    assert plan == [
        (16, 16, 1),
        (16, 16, 1),
        (16, 32, 2),
        (32, 32, 1),
        (32, 64, 2),
        (64, 64, 1),
    ]


def test_zoo_table_and_recipe():
    def build(*args, **kw):
        return (args, kw)

    table = models.zoo_table(build, build, build, build, build, build, build)
    order = "lenet300_100 lenet5 vgg16 vgg19 resnet20 resnet32 resnet56 resnet18 lstm vit"
    assert list(table) == order.split()
    assert table["resnet32"](num_classes=3) == (
        (32,),
        {"num_classes": 3, "in_channels": 1, "image_size": 28},
    )
    model, recipe = models.build_zoo_model(table, "vgg19", 5, 3, 32, {"batch_norm": False})
    assert model == (
        ("vgg19",),
        {"num_classes": 5, "in_channels": 3, "image_size": 32, "batch_norm": False},
    )
    assert recipe == {
        "name": "vgg19",
        "kwargs": {"num_classes": 5, "in_channels": 3, "image_size": 32, "batch_norm": False},
    }
    assert models.check_vit(28, None, 64, 2, 4, 128) == 7


def test_layer_size_and_dropout_checks():
    check_sizes(a=1, b=7)
    with pytest.raises(TypeError, match="hidden_size must be a positive int; got float 2.0"):
        check_sizes(input_size=3, hidden_size=2.0)
    with pytest.raises(ValueError, match="groups must be a positive int; got 0"):
        check_sizes(groups=0)
    assert check_dropout(0) == 0.0 and check_dropout(1) == 1.0
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\]; got 1.5"):
        check_dropout(1.5)
    with pytest.raises(TypeError, match="dropout must be a number"):
        check_dropout("0.1")


@pytest.mark.torch
def test_torch_layers_use_the_size_rules():
    pytest.importorskip("torch")
    from tedepr.backends.torch import TensorizedLSTM, TensorizedMultiheadAttention, TTConv2d

    with pytest.raises(TypeError, match="hidden_size must be a positive int"):
        TensorizedLSTM(4, 2.0)
    with pytest.raises(ValueError, match="num_heads must be a positive int; got 0"):
        TensorizedMultiheadAttention(8, 0)
    with pytest.raises(ValueError, match="dropout must be in"):
        TensorizedLSTM(4, 4, dropout=2.0)
    with pytest.raises(ValueError, match="groups must be a positive int; got 0"):
        TTConv2d(4, 4, 3, groups=0)
