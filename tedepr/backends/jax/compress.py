"""`compress` and `score` for JAX models: tensorize (coarse grain), score and mask (fine grain).

Same contract as ``tedepr.backends.torch.compress``: the budget is counted on the *dense* model
(SPEC §5), ``keep = round((1 − sparsity) · dense weights)``; the coarse grain gives every tensorized
layer a parameter budget of ``oversample · (1 − sparsity)`` of its dense weights; the fine grain
keeps exactly ``keep`` entries over all cores and the weights of layers left dense, chosen globally
by the score. The result holds the compressed `Model`, its masked params, the masks and the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ...budget import tensorize_within
from ...compression import check_alive, core_budget, resolve_budget, skip_pruning
from ...pruning import Guards, effective_ranks, prune
from ...pruning.connectivity import analyse
from ...pruning.rescale import restoring_scales
from ...report import DEFAULT_OVERSAMPLE, Report, layer_row
from .masking import apply_masks, flatten_masks, leaf_paths, prunable_leaves
from .models import Model
from .nnx_detect import is_nnx_module, nnx_entry
from .scoring import JaxScoringProblem
from .tensorize import tensorize, transfer_params
from .training import trainable_mask

__all__ = [
    "CompressionResult",
    "compress",
    "score",
    "build_report",
    "find_layer",
    "DEFAULT_OVERSAMPLE",
]


@dataclass
class CompressionResult:
    """``model``: the compressed `Model`; ``params``: its params with pruned entries exactly 0;
    ``masks``: flat ``{path: bool array}`` as applied (empty when nothing was pruned); ``report``: a
    `tedepr.report.Report`. ``apply(x)`` runs the masked model."""

    model: Model
    params: Any
    masks: dict[str, Any]
    report: Report

    def apply(self, x, train: bool = False):
        return self.model.apply(self.params, x, self.masks or None, train=train)


def find_layer(model: Model, name: str):
    """The layer object called ``name``: a top-level layer or a sublayer
    (``"layers/0/self_attn/q_proj"``)."""
    if name in model.layers:
        return model.layers[name]
    for top in sorted(model.layers, key=len, reverse=True):
        if name.startswith(top + "/"):
            layer, rest = model.layers[top], name[len(top) + 1 :].split("/")
            for part in rest:
                subs = layer.sublayers() if hasattr(layer, "sublayers") else {}
                if part not in subs:
                    raise KeyError(name)
                layer = subs[part]
            return layer
    raise KeyError(name)


def _factorized_layers(model: Model) -> dict:
    return {
        name: layer.factorized()
        for name, layer in model.layers.items()
        if callable(getattr(layer, "factorized", None))
    }


def _other_params(model: Model, params) -> int:
    trainable = jax.tree.leaves(trainable_mask(model, params))
    prunable = set(prunable_leaves(params))
    return sum(
        int(np.prod(a.shape))
        for p, a, t in zip(leaf_paths(params), jax.tree.leaves(params), trainable, strict=True)
        if t and p not in prunable
    )


def build_report(
    model: Model,
    params,
    masks=None,
    *,
    dense_weights: int,
    target_sparsity: float | None = None,
    method: str | None = None,
    structure=None,
) -> Report:
    """Per-layer accounting of a (masked) model; tensorized layers report modes, ranks and FLOPs."""
    weights = prunable_leaves(params)
    structure = structure or model.structure()
    flat = flatten_masks(masks, params) if masks else {}
    by_layer: dict[str, list[str]] = {}
    for path in weights:
        info = structure.get(path)
        by_layer.setdefault(info.layer if info is not None else path.rpartition("/")[0], []).append(
            path
        )
    live = effective_ranks(flat, structure) if flat else {}
    liveness = analyse(flat, structure) if flat else {}
    rows = []
    for layer_name, paths in by_layer.items():
        total = sum(int(np.prod(weights[p].shape)) for p in paths)
        kept = sum(
            int(np.sum(np.asarray(flat[p]))) if p in flat else int(np.prod(weights[p].shape))
            for p in paths
        )
        try:
            layer = find_layer(model, layer_name)
        except KeyError:
            layer = None
        kind = type(layer).__name__ if layer is not None else "layer"
        f = layer.factorized() if callable(getattr(layer, "factorized", None)) else None
        eff = {p[len(layer_name) + 1 :]: live[p] for p in paths if p in live}
        rows.append(
            layer_row(
                layer_name,
                kind,
                kept,
                total,
                f,
                strategy=getattr(layer, "strategy", "auto"),
                effective_ranks=eff,
                liveness=liveness.get(layer_name),
            )
        )
    return Report(
        rows,
        dense_weights=dense_weights,
        other_params=_other_params(model, params),
        target_sparsity=target_sparsity,
        method=method,
    )


def _rescale(model, params, masks, structure):
    """Restore every layer's init norm after pruning (`tedepr.pruning.rescale`); a new pytree."""
    leaves = dict(zip(leaf_paths(params), jax.tree_util.tree_leaves(params), strict=True))
    groups: dict[str, list[str]] = {}
    for path in masks:
        groups.setdefault(
            structure[path].layer if structure[path].format != "dense" else path, []
        ).append(path)
    factors = {}
    for key, paths in groups.items():
        template = None
        if structure[paths[0]].format != "dense":
            template = find_layer(model, key)._template
            paths = sorted(paths, key=lambda p: structure[p].index)
        scales = restoring_scales(
            [np.asarray(leaves[p]) for p in paths],
            [np.asarray(masks[p]) for p in paths],
            template.with_cores([np.asarray(leaves[p]) for p in paths]) if template else None,
        )
        factors.update(zip(paths, scales))
    flat, treedef = jax.tree_util.tree_flatten(params)
    return jax.tree_util.tree_unflatten(
        treedef,
        [
            leaf * jnp.asarray(factors[p], leaf.dtype) if p in factors else leaf
            for p, leaf in zip(leaf_paths(params), flat, strict=True)
        ],
    )


def compress(
    model: Model,
    data=None,
    sparsity: float = 0.99,
    format: str | None = "tt",
    rank=None,
    score: str | None = "trainability",
    *,
    params=None,
    oversample: float = DEFAULT_OVERSAMPLE,
    guards: Guards | None = None,
    rounds: int | None = None,
    num_batches: int = 1,
    seed: int = 0,
    input_shape=None,
    loss_fn=None,
    rescale: bool = True,
    tensorize_options: dict[str, Any] | None = None,
    progress=None,
    dtype=jnp.float32,
) -> CompressionResult:
    """Compress ``model`` to ``sparsity`` of its dense weights, before training.

    Parameters
    ----------
    model : Model (not modified)
    data : ``(x, y)`` arrays, an iterable of ``(x, y)`` batches, or None (data-free scores only)
    sparsity : float in [0, 1)
        Fraction of the dense model's weights removed (whole model, SPEC §5).
    format : "tt", "tr", "tucker", "cp", or None (prune the dense model: the PaI baselines)
    rank : int, tuple, float or None
        Ranks of the tensorized layers; None solves them from the budget with ``oversample``.
    score : a registered score name (`tedepr.scores.available()`), or None (low-rank only)
    params : optional
        Params of ``model``: layers left dense keep them; new layers are initialised from ``seed``.
        Default: ``model`` (after tensorizing) initialised from ``jax.random.key(seed)``.
    oversample, guards, rounds, num_batches, seed, rescale, progress :
        As the torch backend's `compress`.
    input_shape : one sample's shape for SynFlow (default ``model.input_shape``).
    loss_fn : ``"cross_entropy"`` (default) or a callable ``(logits, labels) -> mean loss``.
    tensorize_options : dict
        Passed to `tensorize` (``min_params``, ``include``, ``exclude``, ``overrides``, ``d``, ...).
    dtype : dtype of freshly initialised params.
    """
    if is_nnx_module(model):  # a Flax NNX model: bridged (tedepr.backends.jax.nnx)
        return nnx_entry("compress")(**locals())
    if not isinstance(model, Model):
        raise TypeError(f"model must be a tedepr.backends.jax Model; got {type(model).__name__}")
    dense = model.dense_weight_count()
    keep, rank = resolve_budget(dense, sparsity, format, score, rank, oversample, data is not None)
    options = dict(tensorize_options or {})
    if format is None:
        cmodel = model
    elif rank is not None:
        cmodel = tensorize(model, format=format, rank=rank, **options)
    else:
        # ranks allocated to the budget: every layer shares it, the small ones included
        options.setdefault("min_params", 0)
        cmodel, _, _ = tensorize_within(
            tensorize,
            _factorized_layers,
            model,
            format,
            core_budget(score, keep, dense, oversample),
            options,
            strict=score is None,
        )
    key = jax.random.key(seed)
    cparams = (
        cmodel.init(key, dtype) if params is None else transfer_params(model, params, cmodel, key)
    )
    notes: list[str] = []
    total = sum(int(np.prod(a.shape)) for a in prunable_leaves(cparams).values())
    problem, masks = None, None
    if not skip_pruning(score, keep, total, notes):
        problem = JaxScoringProblem(
            cmodel,
            cparams,
            data,
            num_batches=num_batches,
            loss=loss_fn or "cross_entropy",
            input_shape=input_shape,
        )
        masks = prune(
            problem, score, keep, guards=guards, rounds=rounds, seed=seed, progress=progress
        )
        masks = {n: jnp.asarray(m, dtype=jnp.bool_) for n, m in masks.items()}
        if rescale:
            cparams = _rescale(cmodel, cparams, masks, problem.structure())
        cparams = apply_masks(cparams, masks)
    structure = problem.structure() if problem is not None else None
    report = build_report(
        cmodel,
        cparams,
        masks,
        dense_weights=dense,
        target_sparsity=sparsity,
        method=score if format is None else f"{format}+{score}",
        structure=structure,
    )
    report.notes.extend(notes)
    check_alive(report)
    return CompressionResult(cmodel, cparams, masks or {}, report)


def score(
    model: Model,
    data=None,
    method: str = "snip",
    *,
    params=None,
    num_batches: int = 1,
    seed: int = 0,
    input_shape=None,
    loss_fn=None,
    dtype=jnp.float32,
    **options,
) -> dict[str, Any]:
    """Per-parameter scores ``{path: array}`` of the prunable weights (higher = keep); nothing
    pruned.

    ``params`` default: ``model.init(jax.random.key(seed), dtype)``.
    """
    if is_nnx_module(model):  # a Flax NNX model: bridged (tedepr.backends.jax.nnx)
        arguments = dict(locals())
        return nnx_entry("score")(**arguments.pop("options"), **arguments)
    from ...pruning import compute_scores

    if not isinstance(model, Model):
        raise TypeError(f"model must be a tedepr.backends.jax Model; got {type(model).__name__}")
    params = model.init(jax.random.key(seed), dtype) if params is None else params
    problem = JaxScoringProblem(
        model,
        params,
        data,
        num_batches=num_batches,
        loss=loss_fn or "cross_entropy",
        input_shape=input_shape,
    )
    return compute_scores(problem, method, seed=seed, **options)
