"""The torch half of `tedepr.save` / `tedepr.load`: what a model's file records, and rebuilding.

``export_model`` gives the interchange arrays (`interchange.export_arrays`), the structure of every
tensorized layer and the zoo recipe; ``import_model`` builds the architecture (from the zoo, or
from a ``model=`` skeleton), replaces the recorded layers by tensorized ones of exactly the
recorded modes and ranks, and loads the arrays with their masks (`interchange.import_arrays`, which
checks every name and shape).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from ...io import json_lists as _lists
from ...io import json_tuples as _tuples
from .attention import TensorizedMultiheadAttention, TensorizedTransformerEncoderLayer
from .compress import CompressionResult, build_report, dense_weight_count
from .conv import _TensorizedConv2d, conv_class
from .interchange import export_arrays, import_arrays
from .layers import _TensorizedLinear, linear_class
from .masking import get_masks
from .recurrent import _TensorizedRNNBase

__all__ = ["export_model", "import_model", "layer_record"]

_OTHER = (_TensorizedRNNBase, TensorizedMultiheadAttention, TensorizedTransformerEncoderLayer)


def layer_record(m: nn.Module) -> dict[str, Any] | None:
    """The JSON-ready structure of a tensorized layer (None for any other module)."""
    if isinstance(m, _TensorizedLinear):
        return {
            "kind": "linear",
            "format": m.format,
            "in_features": m.in_features,
            "out_features": m.out_features,
            "in_modes": list(m.in_modes),
            "out_modes": list(m.out_modes),
            "ranks": _lists(m.ranks),
            "bias": m.bias is not None,
            "strategy": m.strategy,
        }
    if isinstance(m, _TensorizedConv2d):
        channel_modes = m.format in ("tt", "tr")  # their last mode is the kernel's
        return {
            "kind": "conv2d",
            "format": m.format,
            "in_channels": m.in_channels,
            "out_channels": m.out_channels,
            "kernel_size": list(m.kernel_size),
            "stride": list(m.stride),
            "padding": m.padding if isinstance(m.padding, str) else list(m.padding),
            "dilation": list(m.dilation),
            "groups": m.groups,
            "bias": m.bias is not None,
            "in_modes": list(m.in_modes[:-1]) if channel_modes else None,
            "out_modes": list(m.out_modes[:-1]) if channel_modes else None,
            "ranks": _lists(m.ranks),
            "strategy": m.strategy,
        }
    if isinstance(m, _OTHER):
        return {"kind": "other", "class": parametrize.type_before_parametrizations(m).__name__}
    return None


def export_model(obj) -> tuple[dict, dict, dict | None]:
    """``(arrays, layers, zoo)`` of a torch `CompressionResult` or (masked) ``nn.Module``."""
    model = obj if isinstance(obj, nn.Module) else obj.model
    layers: dict[str, Any] = {}
    done: list[str] = []
    for name, m in model.named_modules():
        if any(name.startswith(d + ".") for d in done):
            continue
        rec = layer_record(m)
        if rec is not None:
            layers[name] = rec
            done.append(name)
    return export_arrays(model), layers, getattr(model, "_tedepr_zoo", None)


def _build(rec: dict, dtype, device) -> nn.Module:
    rec = _tuples(rec)
    if rec["kind"] == "linear":
        return linear_class(rec["format"])(
            rec["in_features"],
            rec["out_features"],
            rec["ranks"],
            rec["in_modes"],
            rec["out_modes"],
            bias=rec["bias"],
            strategy=rec["strategy"],
            device=device,
            dtype=dtype,
        )
    modes = {}
    if rec["in_modes"] is not None:
        modes = {"in_modes": rec["in_modes"], "out_modes": rec["out_modes"]}
    return conv_class(rec["format"])(
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
        device=device,
        dtype=dtype,
        **modes,
    )


def _fits(current: nn.Module, rec: dict) -> bool:
    """Whether the skeleton's module ``current`` can hold the recorded layer."""
    if rec["kind"] == "linear":
        return isinstance(current, (nn.Linear, _TensorizedLinear)) and (
            current.in_features,
            current.out_features,
        ) == (rec["in_features"], rec["out_features"])
    return isinstance(current, (nn.Conv2d, _TensorizedConv2d)) and (
        current.in_channels,
        current.out_channels,
        tuple(current.kernel_size),
        current.groups,
    ) == (rec["in_channels"], rec["out_channels"], tuple(rec["kernel_size"]), rec["groups"])


def import_model(
    structure: dict, arrays: dict, *, model=None, dtype: str = "float32", device=None
) -> CompressionResult:
    """A masked torch model from a verified file's ``structure`` and ``arrays``."""
    from ... import models as zoo_models

    torch_dtype = getattr(torch, dtype)
    if model is None:
        zoo = structure.get("zoo")
        if zoo is None:
            raise ValueError(
                "the file's model was not built by tedepr.models.get, so its architecture is "
                "not recorded: pass model= (the dense model that was compressed, or a "
                "compressed model of the same structure)"
            )
        model = zoo_models.get(zoo["name"], backend="torch", **_tuples(zoo["kwargs"]))
    elif not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    else:
        model = copy.deepcopy(model)
    model.to(dtype=torch_dtype, device=device)
    for name, rec in structure["layers"].items():
        try:
            current = model.get_submodule(name)
        except AttributeError:
            raise ValueError(
                f"model has no layer {name!r}, which the file holds; the model does not match "
                "the file"
            ) from None
        if rec["kind"] == "other":
            if not isinstance(current, _OTHER):
                raise ValueError(
                    f"the file's layer {name!r} is a {rec['class']}, which load cannot rebuild "
                    "from the file: pass model= a compressed model of this architecture"
                )
            continue
        if not _fits(current, rec):
            raise ValueError(
                f"model's layer {name!r} ({type(current).__name__}) does not match the file's "
                f"{rec['format'].upper()} {rec['kind']} layer"
            )
        new = _build(rec, torch_dtype, device)
        new.train(current.training)
        if name == "":  # the model is one tensorized layer
            model = new
            continue
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, new)
    import_arrays(model, arrays)
    masks = get_masks(model)
    report = build_report(model, masks or None, dense_weights=dense_weight_count(model))
    return CompressionResult(model, report, masks)
