"""Finished JAX models for inference: masks folded into the params, cores pre-contracted where
cheaper (the JAX twin of `tedepr.backends.torch.inference`; the decision is the shared
`tedepr.folding.fold_costs`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ...folding import fold_costs
from .compact import compact_params, compaction_plan
from .layers import Dense, TensorizedLinear
from .masking import flatten_masks, normalize_masks
from .models import Model

__all__ = ["finalize"]


def finalize(
    model: Model, params, masks=None, *, batch_size: int | None = None, fold=False
) -> tuple[Model, dict]:
    """``(model, params)`` of a plain inference network computing the masked ``model``'s function,
    its tensorized layers compacted first (bond indices on no complete path removed).

    Parameters
    ----------
    model, params, masks :
        A compressed JAX model, its params and its masks (flat or nested; None for none), e.g.
        ``result.model, result.params, result.masks``. None of them is changed.
    batch_size : int, optional
        The inference batch the folding decision is made for (needed by ``fold="auto"``).
    fold : False, True or "auto"
        False: the masks are multiplied into the params (apply the new model without masks).
        True: also replace every top-level tensorized Linear layer by a `Dense` layer holding its
        reconstructed weight. "auto": replace it when `tedepr.folding.fold_costs` says one dense
        product is no dearer at ``batch_size``. (Convolutions and composite layers are kept.)
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be a tedepr.backends.jax Model; got {type(model).__name__}")
    if not (fold is True or fold is False or (isinstance(fold, str) and fold == "auto")):
        raise ValueError(f"fold must be True, False or 'auto'; got {fold!r}")
    if fold == "auto" and batch_size is None:
        raise ValueError("fold='auto' needs batch_size (the inference batch it decides for)")
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive int or None; got {batch_size!r}")
    if masks:  # dead bond indices go first (`tedepr.backends.jax.compact`)
        flat = flatten_masks(masks, params)
        model, params, flat = compact_params(model, params, flat, compaction_plan(model, flat))
        masks = flat
    full = normalize_masks(params, masks)
    if full is not None:
        params = jax.tree.map(
            lambda m, p: p if m is None else jnp.where(m, p, jnp.zeros((), p.dtype)),
            full,
            params,
            is_leaf=lambda x: x is None,
        )
    params = dict(params)
    layers = dict(model.layers)
    if fold is not False:
        for name, layer in model.layers.items():
            if not isinstance(layer, TensorizedLinear):
                continue
            if fold == "auto":
                unfolded, folded = fold_costs(layer.factorized(), batch_size, layer.strategy)
                if folded > unfolded:
                    continue
            new = {"weight": layer.weight(params[name])}
            if layer.bias:
                new["bias"] = params[name]["bias"]
            params[name] = new
            layers[name] = Dense(
                layer.in_features, layer.out_features, layer.bias, weight_init=layer.weight_init
            )
    return model.with_layers(layers), params
