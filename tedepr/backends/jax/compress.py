"""`compress` and `score` for JAX models: the JAX side of `tedepr.pipeline`.

The method itself (budget, tensorize within it, score, prune, rescale, masks, report) is written once
in `tedepr.pipeline.run_compress`; this module holds only `JaxAdapter`, what needs JAX: a `Model`'s
params pytree and its prunable leaves, their init from ``jax.random.key(seed)``, the
`JaxScoringProblem` (jax.grad/jvp), and masking by ``jnp.where``. `compress` and `score` are
`tedepr.compress` / `tedepr.score` bound to it (one signature, `tedepr.pipeline.bind`); the result
is the core `CompressionResult` with ``params`` set (``result.apply(x)`` runs the masked model).
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np

from ... import compression
from ...pipeline import LINEAR_KIND, CompressionResult, LayerWeights, bind
from ...pipeline import build_report as _build_report
from ...pruning.problem import CoreInfo
from ...report import DEFAULT_OVERSAMPLE, Report
from ...validation import check_float_dtype
from .attention import TransformerEncoderLayer, _XavierPacked
from .counting import owner_kind
from .layers import Dense
from .masking import apply_masks, flatten_masks, leaf_paths, prunable_leaves
from .models import Model
from .nnx_detect import is_nnx_module, nnx_entry
from .scoring import JaxScoringProblem
from .tensorize import tensorize, transfer_params
from .training import trainable_mask

__all__ = [
    "ADAPTER",
    "CompressionResult",
    "JaxAdapter",
    "compress",
    "score",
    "build_report",
    "find_layer",
    "DEFAULT_OVERSAMPLE",
]


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


def layer_order(model: Model, name: str) -> tuple[int, ...]:
    """Where the layer ``name`` stands in ``model``: its top-level layer's position, then each
    sublayer's position among its parent's ``sublayers()`` (``self_attn`` before ``linear1``,
    ``q_proj`` before ``k_proj``: torch's module order); a name no layer holds sorts last."""
    tops = [t for t in model.layers if name == t or name.startswith(t + "/")]
    if not tops:
        return (len(model.layers),)
    top = max(tops, key=len)
    key, layer = [list(model.layers).index(top)], model.layers[top]
    for part in name[len(top) + 1 :].split("/") if name != top else ():
        subs = layer.sublayers() if hasattr(layer, "sublayers") else {}
        if part not in subs:
            key.append(len(subs))
            break
        key.append(list(subs).index(part))
        layer = subs[part]
    return tuple(key)


def _structure(model: Model, params) -> dict[str, CoreInfo]:
    known = model.structure()
    # a leaf no layer describes (a user layer) is a dense weight of its parent
    return {
        p: known.get(p) or CoreInfo(p.rpartition("/")[0], "dense") for p in prunable_leaves(params)
    }


def _kind(layer) -> str:
    """A report row's kind: the layer's class name, but `LINEAR_KIND` for a dense map (`Dense`,
    a dense attention's q/k/v maps), as torch names the same layer."""
    return LINEAR_KIND if isinstance(layer, (Dense, _XavierPacked)) else type(layer).__name__


class JaxAdapter:
    """`tedepr.pipeline.CompressAdapter` for JAX `Model` objects and their params pytrees (models
    are immutable: every step returns new params)."""

    name = "jax"

    def redirect(self, model, entry: str):
        """A Flax NNX model runs through the NNX bridge (`tedepr.backends.jax.nnx`), which converts
        it and calls this pipeline on the converted `Model`."""
        return nnx_entry(entry) if is_nnx_module(model) else None

    def prepare(self, model, params, dtype):
        if not isinstance(model, Model):
            raise TypeError(
                f"model must be a tedepr.backends.jax Model; got {type(model).__name__}"
            )
        check_float_dtype(dtype, jnp)
        return model, params

    def dense_weight_count(self, model):
        return model.dense_weight_count()

    def copy(self, model):
        return model

    def tensorize(self, model, *, format, rank, **options):
        return tensorize(model, format=format, rank=rank, **options)

    def factorized_layers(self, model):
        # the layers rank allocation may address by name (as `tensorize`'s candidates): top-level
        # layers and the feed-forward maps of a TransformerEncoderLayer; the maps inside a
        # tensorized composite (LSTM, GRU, attention) keep tensorize's rank, as in torch
        found = {}
        for name, layer in model.layers.items():
            subs = layer.sublayers() if isinstance(layer, TransformerEncoderLayer) else {}
            for n, sub in [(name, layer)] + [(f"{name}/{s}", v) for s, v in subs.items()]:
                if callable(getattr(sub, "factorized", None)):
                    found[n] = sub.factorized()
        return found

    def seeded(self, seed):
        return contextlib.nullcontext(lambda: None)  # fresh params are drawn in init_params

    def init_params(self, source, params, model, seed, dtype):
        key = jax.random.key(seed)
        if params is None:
            return model.init(key, jnp.float32 if dtype is None else dtype)
        return params if model is source else transfer_params(source, params, model, key)

    def scoring_problem(self, model, params, data, *, num_batches, loss_fn, input_shape):
        return JaxScoringProblem(
            model,
            params,
            data,
            num_batches=num_batches,
            loss=loss_fn or "cross_entropy",
            input_shape=input_shape,
        )

    def weights(self, model, params):
        return {p: np.asarray(a) for p, a in prunable_leaves(params).items()}

    def layers(self, model, params):
        structure = _structure(model, params)
        groups: dict[str, list[str]] = {}
        for path in structure:
            groups.setdefault(structure[path].layer, []).append(path)
        out = []
        # the model's layer order, as torch's module order (params flatten in sorted-key order)
        for name in sorted(groups, key=lambda name: layer_order(model, name)):
            paths = groups[name]
            try:
                layer = find_layer(model, name)
            except KeyError:
                layer = None
            f = layer.factorized() if callable(getattr(layer, "factorized", None)) else None
            cores = [p for p in paths if structure[p].format != "dense"] if f else []
            cores.sort(key=lambda p: structure[p].index)
            kind = _kind(layer) if layer is not None else owner_kind(model, name)
            strategy = getattr(layer, "strategy", "auto")
            out.append(LayerWeights(name, kind, tuple(paths), f, tuple(cores), strategy))
        return out

    def structure(self, model, params):
        return _structure(model, params)

    def other_params(self, model, params):
        trainable = jax.tree.leaves(trainable_mask(model, params))
        prunable = set(prunable_leaves(params))
        return sum(
            int(np.prod(a.shape))
            for p, a, t in zip(leaf_paths(params), jax.tree.leaves(params), trainable, strict=True)
            if t and p not in prunable
        )

    def scale_weights(self, model, params, factors):
        flat, treedef = jax.tree_util.tree_flatten(params)
        scaled = [
            leaf * jnp.asarray(factors[p], leaf.dtype) if p in factors else leaf
            for p, leaf in zip(leaf_paths(params), flat, strict=True)
        ]
        return jax.tree_util.tree_unflatten(treedef, scaled)

    def replace_weights(self, model, params, values):
        flat, treedef = jax.tree_util.tree_flatten(params)
        new = [
            jnp.asarray(values[p], leaf.dtype) if p in values else leaf
            for p, leaf in zip(leaf_paths(params), flat, strict=True)
        ]
        return jax.tree_util.tree_unflatten(treedef, new)

    def apply_masks(self, model, params, masks):
        masks = {n: jnp.asarray(m, dtype=jnp.bool_) for n, m in masks.items()}
        return apply_masks(params, masks), masks

    def compact(self, result):
        from .compact import compact

        return compact(result)


ADAPTER = JaxAdapter()
compress = bind(compression.compress, ADAPTER, __name__)
score = bind(compression.score, ADAPTER, __name__)


def build_report(model: Model, params, masks=None, **options) -> Report:
    """`tedepr.pipeline.build_report` of a (masked) model and its params; ``masks`` in any form
    `flatten_masks` takes; ``options``: ``dense_weights`` (required), ``target_sparsity``,
    ``method``, ``structure``."""
    flat = flatten_masks(masks, params) if masks else None
    return _build_report(ADAPTER, model, params, flat, **options)
