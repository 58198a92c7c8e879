"""The JAX half of `tedepr.save` / `tedepr.load` (the torch half, `tedepr.backends.torch.storage`,
documents the records; both write and read the same ones).

Layer names in the file are torch's (``hidden.0``); a JAX model's top-level layer ``hidden/0`` is
the same layer. A Flax NNX model goes through the NNX bridge both ways (`tedepr.backends.jax.nnx`:
``flax_export``/``flax_import``): the file is the same, so either backend loads it. Tensorized
sublayers of composite layers (attention, LSTM) are recorded as ``"other"``: such models load
with ``model=`` a compressed model of the same structure.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from ... import io as core_io
from .compress import CompressionResult, build_report
from .conv import CONV_CLASSES, Conv2d, TensorizedConv2d
from .interchange import export_arrays, import_arrays
from .layers import LINEAR_CLASSES, Dense, TensorizedLinear
from .models import Model
from .nnx_detect import is_nnx_module

__all__ = ["export_model", "import_model", "layer_record"]


def layer_record(layer) -> dict[str, Any] | None:
    """The JSON-ready structure of a tensorized layer (`tedepr.io`'s records), else None."""
    if isinstance(layer, TensorizedLinear):
        return core_io.linear_record(layer, bias=bool(layer.bias))
    if isinstance(layer, TensorizedConv2d):
        return core_io.conv_record(
            layer, bias=bool(layer.bias), in_modes=layer.in_modes, out_modes=layer.out_modes
        )
    if any(info.format != "dense" for info in layer.structure("x/").values()):
        return core_io.other_record(type(layer).__name__)
    return None


def export_model(result) -> tuple[dict, dict, dict | None]:
    """``(arrays, layers, zoo)`` of a JAX `CompressionResult` (``model``, ``params``, ``masks``),
    or of a Flax NNX model (a `FlaxCompressionResult`'s, a ``fit`` result's, or the module
    itself: read through the NNX bridge, as it is now)."""
    if is_nnx_module(result) or is_nnx_module(getattr(result, "model", None)):
        from .nnx import flax_export

        result = flax_export(result)
    model = result.model
    if not isinstance(model, Model):
        raise TypeError(f"result.model must be a JAX Model; got {type(model).__name__}")
    layers = {}
    for name, layer in model.layers.items():
        rec = layer_record(layer)
        if rec is not None:
            layers[name.replace("/", ".")] = rec
    arrays = export_arrays(model, result.params, result.masks or None)
    return arrays, layers, getattr(model, "zoo", None)


def _build(rec: dict, current):
    args, kwargs = core_io.layer_arguments(rec)
    init = getattr(current, "weight_init", None)
    # he_fan_out is a dense-conv-only scheme (and the values are loaded anyway)
    if init is not None and not (rec["kind"] == "conv2d" and init == "he_fan_out"):
        kwargs["weight_init"] = init
    classes = LINEAR_CLASSES if rec["kind"] == "linear" else CONV_CLASSES
    return classes[rec["format"]](*args, **kwargs)


def import_model(
    structure: dict, arrays: dict, *, model=None, dtype: str = "float32", device=None
) -> CompressionResult:
    """A JAX `CompressionResult` from a verified file's ``structure`` and ``arrays``."""
    if device is not None:
        raise ValueError(
            "device applies to backend='torch' only; place JAX arrays with jax.device_put"
        )
    zoo = structure.get("zoo") or {}
    if is_nnx_module(model) or (model is None and zoo.get("flax")):
        # a Flax model (or a file saved from one): loaded through the NNX bridge, an NNX model back
        from .nnx import flax_import

        return flax_import(structure, arrays, model, dtype, _import)
    return _import(structure, arrays, model, dtype)


def _import(structure: dict, arrays: dict, model, dtype: str) -> CompressionResult:
    if model is None:
        # a file without the recipe's "flax": True came from a Model (files before Flax
        # became the default included): rebuild that kind
        model = core_io.skeleton_model(
            structure, "jax", "the dense JAX Model that was compressed", flax=False
        )
    elif not isinstance(model, Model):
        raise TypeError(
            "model must be a tedepr.backends.jax Model or a Flax NNX model; got "
            f"{type(model).__name__}"
        )
    layers = dict(model.layers)
    new = core_io.rebuild_layers(
        structure,
        lambda name: layers.get(name.replace(".", "/")),
        is_composite=lambda current: layer_record(current) is not None,
        linear_types=(Dense, TensorizedLinear),
        conv_types=(Conv2d, TensorizedConv2d),
        build=_build,
    )
    layers.update({name.replace(".", "/"): layer for name, layer in new.items()})
    model = model.with_layers(layers)
    params, masks = import_arrays(model, arrays, dtype=jnp.dtype(dtype))
    report = build_report(model, params, masks or None, dense_weights=model.dense_weight_count())
    return CompressionResult(model, report, masks, params)
