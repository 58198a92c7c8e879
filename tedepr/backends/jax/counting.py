"""Dense-equivalent weight counts of a JAX model (SPEC §5 Counting), as the torch backend's
`count_weights` gives them."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from ...pipeline import counted_layers
from ...report import count_summary
from .layers import BatchNorm, LayerNorm
from .masking import flatten_masks, leaf_paths, prunable_leaves
from .models import Model

__all__ = ["count_weights"]


def _layer(model: Model, name: str):
    """The (sub)layer object called ``name`` (``"enc/self_attn/q_proj"``), or None."""
    for top in sorted(model.layers, key=len, reverse=True):
        if name == top or name.startswith(top + "/"):
            layer = model.layers[top]
            for part in name[len(top) + 1 :].split("/") if name != top else ():
                subs = layer.sublayers() if hasattr(layer, "sublayers") else {}
                if part not in subs:
                    return None
                layer = subs[part]
            return layer
    return None


def owner_kind(model: Model, name: str) -> str:
    """The class name of the nearest layer above ``name`` (a recurrent layer's dense hidden map
    ``lstm/weight_hh_l0`` is a row of its own, of its `TensorizedLSTM`, as in torch)."""
    while name:
        name = name.rpartition("/")[0]
        layer = _layer(model, name)
        if layer is not None:
            return type(layer).__name__
    return "layer"


def count_weights(model: Model, params, masks=None) -> dict[str, Any]:
    """Dense-equivalent weight counts of ``model`` with ``params`` (and ``masks``), per layer and
    in total.

    Returns the dict of the torch backend's `count_weights`: ``"layers"`` maps a layer name (the
    `CoreInfo.layer` of its weights) to ``{"type", "dense", "params", "kept"}``, one per row of the
    compression report, with its name and kind (`tedepr.pipeline.counted_layers`, the same code in
    both backends) — ``type`` is the layer's class name, but ``Linear``
    (`tedepr.pipeline.LINEAR_KIND`) for every dense affine map (`Dense`, a dense attention's
    q/k/v maps), as torch's ``nn.Linear``; for a tensorized layer ``dense`` is the entry count of
    the matrix it replaces, ``params`` its core entries and ``kept`` the entries the masks keep;
    for a dense layer all three count its weights (``kept`` after masks). ``"dense"``,
    ``"params"``, ``"kept"`` are the sums over layers; ``"biases"``, ``"norm"``, ``"other"`` count
    the trained entries outside the weights (BatchNorm running statistics are not trained and not
    counted). ``params`` may be abstract (``jax.eval_shape(model.init, key)``): counts read shapes.
    """
    from .compress import ADAPTER  # compress imports this module

    if not isinstance(model, Model):
        raise TypeError(f"model must be a tedepr.backends.jax Model; got {type(model).__name__}")
    weights = prunable_leaves(params)
    shapes = {path: tuple(array.shape) for path, array in weights.items()}
    flat = flatten_masks(masks, params) if masks else None
    layers = counted_layers(ADAPTER.layers(model, params), shapes, flat)
    biases = norm = other = 0
    for path, leaf in zip(leaf_paths(params), jax.tree_util.tree_leaves(params), strict=True):
        if path in weights:
            continue
        owner = _layer(model, path.rpartition("/")[0])
        size = int(np.prod(np.shape(leaf)))
        if isinstance(owner, BatchNorm):
            if path.rpartition("/")[2] not in BatchNorm.STATS:
                norm += size
        elif isinstance(owner, LayerNorm):
            norm += size
        elif "bias" in path.rpartition("/")[2]:
            biases += size
        else:
            other += size
    return count_summary(layers, biases=biases, norm=norm, other=other)
