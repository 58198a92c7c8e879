"""`compact`: a compressed torch model with the dead bond indices of its cores removed.

The index bookkeeping is the core's (`tedepr.pruning.compact.plan_compaction`); this module slices
the cores and masks of the tensorized Linear and Conv2d layers. Layers inside composite modules
(tensorized LSTM/GRU, attention) are left as they are.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ...pruning.compact import LayerCompaction, compact_result, plan_compaction
from .attention import TensorizedMultiheadAttention, TensorizedTransformerEncoderLayer
from .conv import _TensorizedConv2d
from .layers import TensorizedLayer, _TensorizedLinear
from .masking import apply_masks, get_masks, prunable_parameters, remove_masks
from .recurrent import _TensorizedRNNBase
from .scoring import structure_of

__all__ = ["compact", "compaction_plan", "compact_model"]

_COMPOSITE = (_TensorizedRNNBase, TensorizedMultiheadAttention, TensorizedTransformerEncoderLayer)


def _compactable(model: nn.Module) -> dict[str, TensorizedLayer]:
    """Tensorized Linear/Conv2d modules by name, outside composite layers."""
    out, skip = {}, []
    for name, m in model.named_modules():
        if any(name == s or name.startswith(s + ".") for s in skip):
            continue
        if isinstance(m, _COMPOSITE):
            skip.append(name)
        elif isinstance(m, (_TensorizedLinear, _TensorizedConv2d)):
            out[name] = m
    return out


def compaction_plan(model: nn.Module, masks=None) -> dict[str, LayerCompaction]:
    """The compaction of every tensorized Linear/Conv2d layer of ``model`` whose cores all carry a
    mask (``masks``: ``name -> bool tensor``; default: the masks attached to ``model``)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    masks = get_masks(model) if masks is None else masks
    layers = _compactable(model)
    if not masks or not layers:
        return {}
    names = [
        f"{ln}.{pn}" if ln else pn for ln, m in layers.items() for pn in m._prunable_tensor_names()
    ]
    structure = {k: v for k, v in structure_of(model, names).items() if v.layer in layers}
    factored = {ln: m._factored for ln, m in layers.items() if m.format == "tucker"}
    return plan_compaction(
        {n: m for n, m in masks.items() if n in structure}, structure, factored=factored
    )


def _slice(t: torch.Tensor, entries) -> torch.Tensor:
    for axis, idx in entries:
        if idx.shape[0] != t.shape[axis]:
            t = t.index_select(axis, torch.as_tensor(idx, device=t.device))
    return t.contiguous()


def compact_model(model: nn.Module, masks, plan: dict[str, LayerCompaction]) -> dict:
    """Compact ``model`` **in place** by ``plan``; returns the new masks (every name of
    ``masks``, sliced where its layer shrank). ``model``'s masks are re-attached sliced."""
    changed = {k: v for k, v in plan.items() if v.changed}
    new_masks = dict(masks)
    if not changed:
        return new_masks
    attached = bool(get_masks(model))
    remove_masks(model)  # pruned entries stay stored zeros; slots are re-made at the new shapes
    for layer_name, c in changed.items():
        module = model.get_submodule(layer_name) if layer_name else model
        shapes = list(module._core_shapes)
        with torch.no_grad():
            for name in c.names:
                attr = name.rpartition(".")[2]
                k = int(attr[len("core_") :])
                p = module._parameters[attr]
                new = nn.Parameter(_slice(p.detach(), c.keep[name]), requires_grad=p.requires_grad)
                setattr(module, attr, new)
                shapes[k] = tuple(new.shape)
                new_masks[name] = _slice(masks[name], c.keep[name])
        module._core_shapes = tuple(shapes)
        module._plans = {}
        module._reconstruction = None
        if hasattr(module, "_choices"):
            module._choices = {}
        module.decomposition_error = None
    if attached:
        apply_masks(model, new_masks)
    return new_masks


def compact(result):
    """A `CompressionResult` whose tensorized layers hold only their connected sub-cores.

    Bond indices that no complete path of kept entries uses (module doc of
    `tedepr.pruning.compact`) are removed from the cores and the masks. The compacted model computes
    the same function and trains identically (the gradient of every remaining entry is unchanged);
    the report keeps its accounting (dense weights, kept weights, sparsity; ``total`` and
    ``ranks`` shrink). Kept entries on no complete path, which never influence the output nor get
    a gradient, are removed with their index and a note says how many (none with the default
    guards).

    ``result`` is not changed; when nothing can be compacted it is returned as it is (no copy).
    Layers inside tensorized LSTM/GRU and attention modules are left uncompacted.
    """
    from .compress import build_report

    def shrink(r, plan):
        model = copy.deepcopy(r.model)
        return model, None, compact_model(model, r.masks, plan)

    def report_of(model, params, masks, old):
        return build_report(
            model,
            masks,
            dense_weights=old.dense_weights,
            target_sparsity=old.target_sparsity,
            method=old.method,
            structure=structure_of(model, prunable_parameters(model)),
        )

    return compact_result(
        result, "torch", lambda r: compaction_plan(r.model, r.masks), shrink, report_of
    )
