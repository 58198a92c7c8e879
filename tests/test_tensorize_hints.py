"""A zoo model's tensorize hints: a flattened image's first layer keeps its modes inside the image
axes (`tedepr.shapes.axis_modes`), the same in both backends; explicit options win."""

from __future__ import annotations

import pytest

import tedepr
from tedepr.shapes import axis_modes, balanced_modes

BACKENDS = [
    pytest.param("torch", marks=pytest.mark.torch),
    pytest.param("jax", marks=pytest.mark.jax),
]


def _first(backend):
    return "hidden.0" if backend == "torch" else "hidden/0"


def _model(backend, name="lenet300_100", **kw):
    pytest.importorskip(backend)
    return tedepr.models.get(name, backend=backend, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lenet_first_layer_modes_stay_inside_the_image_axes(backend):
    model = _model(backend, image_size=28, in_channels=1)
    res = tedepr.compress(model, None, sparsity=0.998, format="tt", score=None, backend=backend)
    rows = {r.name: r for r in res.report.layers}
    first = rows[_first(backend)]
    assert first.in_modes == axis_modes((1, 28, 28), 4) == (7, 4, 7, 4)
    assert first.out_modes == balanced_modes(300, 4)
    # the other layers read hidden units: the axis-blind balanced factorisation
    assert rows["classifier"].in_modes == balanced_modes(100, 2)
    # a 3-channel 32x32 input: channel, rows, columns
    rgb = _model(backend, image_size=32, in_channels=3, hidden=(64,))
    r = tedepr.compress(rgb, None, sparsity=0.99, format="tt", score=None, backend=backend)
    assert r.report.layers[0].in_modes == axis_modes((3, 32, 32), 4) == (3, 8, 4, 32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_explicit_options_win_and_bad_in_shape_is_named(backend):
    model = _model(backend)
    first = _first(backend)
    res = tedepr.compress(
        model, None, sparsity=0.99, format="tt", score=None, backend=backend,
        tensorize_options={"overrides": {first: {"in_modes": (7, 7, 4, 4)}}},
    )  # fmt: skip
    assert res.report.layers[0].in_modes == (7, 7, 4, 4)
    with pytest.raises(ValueError, match=r"in_shape \(3, 3\) of classifier holds 9 values"):
        tedepr.compress(
            model, None, sparsity=0.99, format="tt", score=None, backend=backend,
            tensorize_options={"overrides": {"classifier": {"in_shape": (3, 3)}}},
        )  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
def test_in_shape_on_a_conv_layer_is_an_error(backend):
    model = _model(backend, "lenet5", **({"flax": False} if backend == "jax" else {}))
    name = "conv1"
    if backend == "torch":
        names = [n for n, m in model.named_modules() if type(m).__name__ == "Conv2d"]
    else:
        names = [n for n, lay in model.layers.items() if type(lay).__name__ == "Conv2d"]
    name = names[0]
    with pytest.raises(ValueError, match="in_shape applies to Linear layers only"):
        mod = pytest.importorskip(f"tedepr.backends.{backend}")
        mod.tensorize(model, "tt", 4, min_params=0, overrides={name: {"in_shape": (1, 28, 28)}})
