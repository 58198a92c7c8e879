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

from ... import io as core_io
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
        return core_io.linear_record(m, bias=m.bias is not None)
    if isinstance(m, _TensorizedConv2d):
        channel_modes = m.format in ("tt", "tr")  # their last mode is the kernel's
        return core_io.conv_record(
            m,
            bias=m.bias is not None,
            in_modes=m.in_modes[:-1] if channel_modes else None,
            out_modes=m.out_modes[:-1] if channel_modes else None,
        )
    if isinstance(m, _OTHER):
        return core_io.other_record(parametrize.type_before_parametrizations(m).__name__)
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


def _submodule(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def import_model(
    structure: dict, arrays: dict, *, model=None, dtype: str = "float32", device=None
) -> CompressionResult:
    """A masked torch model from a verified file's ``structure`` and ``arrays``."""
    torch_dtype = getattr(torch, dtype)
    if model is None:
        model = core_io.skeleton_model(structure, "torch", "the dense model that was compressed")
    elif not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    else:
        model = copy.deepcopy(model)
    model.to(dtype=torch_dtype, device=device)

    def build(rec: dict, current: nn.Module) -> nn.Module:
        args, kwargs = core_io.layer_arguments(rec)
        cls = (linear_class if rec["kind"] == "linear" else conv_class)(rec["format"])
        new = cls(*args, **kwargs, device=device, dtype=torch_dtype)
        return new.train(current.training)

    new = core_io.rebuild_layers(
        structure,
        lambda name: _submodule(model, name),
        is_composite=lambda current: isinstance(current, _OTHER),
        linear_types=(nn.Linear, _TensorizedLinear),
        conv_types=(nn.Conv2d, _TensorizedConv2d),
        build=build,
    )
    for name, layer in new.items():
        if name == "":  # the model is one tensorized layer
            model = layer
            continue
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, layer)
    import_arrays(model, arrays)
    masks = get_masks(model)
    report = build_report(model, masks or None, dense_weights=dense_weight_count(model))
    return CompressionResult(model, report, masks)
