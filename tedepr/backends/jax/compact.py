"""`compact`: a compressed JAX model with the dead bond indices of its cores removed (the JAX twin
of `tedepr.backends.torch.compact`; the index bookkeeping is the core's
`tedepr.pruning.compact.plan_compaction`).

Top-level tensorized Linear and Conv2d layers are compacted: each becomes the same layer class with
the smaller ranks (``dataclasses.replace``), its cores and masks sliced. Layers inside composite
layers (LSTM, attention) are left as they are.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from ...pruning.compact import LayerCompaction, compact_result, plan_compaction
from .conv import TensorizedConv2d
from .layers import TensorizedLinear
from .masking import flatten_masks
from .models import Model

__all__ = ["compact", "compaction_plan", "compact_params"]


def _compactable(model: Model) -> dict:
    return {
        n: layer
        for n, layer in model.layers.items()
        if isinstance(layer, (TensorizedLinear, TensorizedConv2d))
    }


def compaction_plan(model: Model, masks, params=None) -> dict[str, LayerCompaction]:
    """The compaction of every top-level tensorized Linear/Conv2d layer of ``model`` whose cores all
    carry a mask (``masks`` flat ``{path: bool array}``, or nested with ``params`` given)."""
    if not isinstance(model, Model):
        raise TypeError(f"model must be a tedepr.backends.jax Model; got {type(model).__name__}")
    if not masks:
        return {}
    flat = flatten_masks(masks, params) if params is not None else dict(masks)
    layers = _compactable(model)
    structure = {p: i for p, i in model.structure().items() if i.layer in layers}
    factored = {
        n: tuple(r is not None for r in layer.ranks)
        for n, layer in layers.items()
        if layer.format == "tucker"
    }
    return plan_compaction(
        {p: m for p, m in flat.items() if p in structure}, structure, factored=factored
    )


def _slice(a, entries):
    for axis, idx in entries:
        if idx.shape[0] != a.shape[axis]:
            a = jnp.take(a, jnp.asarray(idx), axis=axis)
    return a


def compact_params(model: Model, params, masks, plan: dict[str, LayerCompaction]):
    """``(model, params, masks)`` compacted by ``plan``; ``masks`` flat ``{path: bool array}``
    (every path kept, sliced where its layer shrank). Nothing given is changed."""
    changed = {k: v for k, v in plan.items() if v.changed}
    masks = dict(masks)
    if not changed:
        return model, params, masks
    params = dict(params)
    layers = dict(model.layers)
    for name, c in changed.items():
        layer = layers[name]
        sub = dict(params[name])
        cores = list(sub["cores"])
        for path in c.names:
            k = int(path.rpartition("/")[2])
            cores[k] = _slice(cores[k], c.keep[path])
            masks[path] = _slice(masks[path], c.keep[path])
        sub["cores"] = tuple(cores)
        params[name] = sub
        new = dataclasses.replace(layer, rank=tuple(c.ranks_after))
        if new.core_shapes != tuple(tuple(x.shape) for x in cores):  # a bug, never user input
            raise RuntimeError(
                f"compacting {name!r}: the layer's core shapes {new.core_shapes} do not match the "
                f"sliced cores {[tuple(x.shape) for x in cores]}"
            )
        layers[name] = new
    return model.with_layers(layers), params, masks


def compact(result):
    """A `CompressionResult` whose tensorized layers hold only their connected sub-cores.

    As `tedepr.backends.torch.compact`: the same function and the same training of every remaining
    entry; the report keeps its accounting (dense weights, kept weights, sparsity), with the new
    ranks and a note. ``result`` is not changed; when nothing can be compacted it is returned as it
    is (no copy).
    """
    from .compress import build_report

    def report_of(model, params, masks, old):
        return build_report(
            model,
            params,
            masks,
            dense_weights=old.dense_weights,
            target_sparsity=old.target_sparsity,
            method=old.method,
        )

    return compact_result(
        result,
        "jax",
        lambda r: compaction_plan(r.model, r.masks),
        lambda r, plan: compact_params(r.model, r.params, r.masks, plan),
        report_of,
    )
