"""The JAX half of `tedepr.save` / `tedepr.load` (the torch half, `tedepr.backends.torch.storage`,
documents the records; both write and read the same ones).

Layer names in the file are torch's (``hidden.0``); a JAX model's top-level layer ``hidden/0`` is
the same layer. Tensorized sublayers of composite layers (attention, LSTM) are recorded as
``"other"``: such models load with ``model=`` a compressed model of the same structure.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from ...io import json_lists as _lists
from ...io import json_tuples as _tuples
from .compress import CompressionResult, build_report
from .conv import CONV_CLASSES, Conv2d, TensorizedConv2d
from .interchange import export_arrays, import_arrays
from .layers import LINEAR_CLASSES, Dense, TensorizedLinear
from .models import Model

__all__ = ["export_model", "import_model", "layer_record"]


def layer_record(layer) -> dict[str, Any] | None:
    """The JSON-ready structure of a tensorized layer (the torch records' keys), else None."""
    if isinstance(layer, TensorizedLinear):
        return {
            "kind": "linear",
            "format": layer.format,
            "in_features": layer.in_features,
            "out_features": layer.out_features,
            "in_modes": list(layer.in_modes),
            "out_modes": list(layer.out_modes),
            "ranks": _lists(layer.ranks),
            "bias": bool(layer.bias),
            "strategy": layer.strategy,
        }
    if isinstance(layer, TensorizedConv2d):
        return {
            "kind": "conv2d",
            "format": layer.format,
            "in_channels": layer.in_channels,
            "out_channels": layer.out_channels,
            "kernel_size": list(layer.kernel_size),
            "stride": list(layer.stride),
            "padding": layer.padding if isinstance(layer.padding, str) else list(layer.padding),
            "dilation": list(layer.dilation),
            "groups": layer.groups,
            "bias": bool(layer.bias),
            "in_modes": None if layer.in_modes is None else list(layer.in_modes),
            "out_modes": None if layer.out_modes is None else list(layer.out_modes),
            "ranks": _lists(layer.ranks),
            "strategy": layer.strategy,
        }
    if any(info.format != "dense" for info in layer.structure("x/").values()):
        return {"kind": "other", "class": type(layer).__name__}
    return None


def export_model(result) -> tuple[dict, dict, dict | None]:
    """``(arrays, layers, zoo)`` of a JAX `CompressionResult` (``model``, ``params``, ``masks``)."""
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
    rec = _tuples(rec)
    init = {"weight_init": current.weight_init} if hasattr(current, "weight_init") else {}
    if rec["kind"] == "linear":
        return LINEAR_CLASSES[rec["format"]](
            rec["in_features"],
            rec["out_features"],
            rec["ranks"],
            rec["in_modes"],
            rec["out_modes"],
            bias=rec["bias"],
            strategy=rec["strategy"],
            **init,
        )
    modes = {}
    if rec["in_modes"] is not None:
        modes = {"in_modes": rec["in_modes"], "out_modes": rec["out_modes"]}
    if init.get("weight_init") == "he_fan_out":  # a dense-conv-only scheme; values are loaded
        init = {}
    return CONV_CLASSES[rec["format"]](
        rec["in_channels"],
        rec["out_channels"],
        rec["kernel_size"],
        rec["stride"],
        rec["padding"],
        rec["dilation"],
        rec["groups"],
        rec["bias"],
        rank=rec["ranks"],
        strategy=rec["strategy"],
        **modes,
        **init,
    )


def _fits(current, rec: dict) -> bool:
    if rec["kind"] == "linear":
        return isinstance(current, (Dense, TensorizedLinear)) and (
            current.in_features,
            current.out_features,
        ) == (rec["in_features"], rec["out_features"])
    return isinstance(current, (Conv2d, TensorizedConv2d)) and (
        current.in_channels,
        current.out_channels,
        tuple(current.kernel_size),
        current.groups,
    ) == (rec["in_channels"], rec["out_channels"], tuple(rec["kernel_size"]), rec["groups"])


def import_model(
    structure: dict, arrays: dict, *, model=None, dtype: str = "float32", device=None
) -> CompressionResult:
    """A JAX `CompressionResult` from a verified file's ``structure`` and ``arrays``."""
    from ... import models as zoo_models

    if device is not None:
        raise ValueError(
            "device applies to backend='torch' only; place JAX arrays with jax.device_put"
        )
    if model is None:
        zoo = structure.get("zoo")
        if zoo is None:
            raise ValueError(
                "the file's model was not built by tedepr.models.get, so its architecture is "
                "not recorded: pass model= (the dense JAX Model that was compressed, or a "
                "compressed one of the same structure)"
            )
        model = zoo_models.get(zoo["name"], backend="jax", **_tuples(zoo["kwargs"]))
    elif not isinstance(model, Model):
        raise TypeError(f"model must be a tedepr.backends.jax Model; got {type(model).__name__}")
    layers = dict(model.layers)
    for tname, rec in structure["layers"].items():
        name = tname.replace(".", "/")
        if name not in layers:
            raise ValueError(
                f"model has no layer {name!r}, which the file holds; the model does not match "
                "the file"
            )
        current = layers[name]
        if rec["kind"] == "other":
            if layer_record(current) is None:
                raise ValueError(
                    f"the file's layer {tname!r} is a {rec['class']}, which load cannot rebuild "
                    "from the file: pass model= a compressed model of this architecture"
                )
            continue
        if not _fits(current, rec):
            raise ValueError(
                f"model's layer {name!r} ({type(current).__name__}) does not match the file's "
                f"{rec['format'].upper()} {rec['kind']} layer"
            )
        layers[name] = _build(rec, current)
    model = model.with_layers(layers)
    params, masks = import_arrays(model, arrays, dtype=jnp.dtype(dtype))
    report = build_report(model, params, masks or None, dense_weights=model.dense_weight_count())
    return CompressionResult(model, report, masks, params)
