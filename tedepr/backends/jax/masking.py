"""Pruning masks for JAX params: a pytree of bool arrays beside the params.

Paths are the ``/``-joined keys of a leaf in the params pytree (dict keys, tuple indices), e.g.
``hidden/0/cores/1`` or ``features/0/weight``; `prunable_paths` lists the leaves that may be pruned
— the cores of tensorized layers and the weights of dense ones (keys starting with ``weight``),
never biases, normalisation parameters or free parameters — in the deterministic order of
`jax.tree_util.tree_flatten_with_path`.

Masks may be given in two forms, everywhere this backend takes ``masks``:

* **flat**: ``{path: bool array}`` — what the pruning core returns (`tedepr.pruning.prune`);
* **nested**: a pytree mirroring the params with bool arrays at masked leaves, ``None`` (or a
  missing key) where a leaf is dense.

`normalize_masks` turns either into the *full* nested form (the params' own tree structure, a bool
array or ``None`` at every leaf), which is what the layers and the training loop use. ``True`` keeps
an entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "path_string",
    "leaf_paths",
    "is_prunable",
    "prunable_paths",
    "prunable_leaves",
    "normalize_masks",
    "flatten_masks",
    "apply_masks",
    "mask_tree_map",
    "ones_masks",
    "count_kept",
    "density",
]


def _key_str(k) -> str:
    if isinstance(k, jax.tree_util.DictKey):
        return str(k.key)
    if isinstance(k, jax.tree_util.SequenceKey):
        return str(k.idx)
    if isinstance(k, jax.tree_util.GetAttrKey):
        return str(k.name)
    if isinstance(k, jax.tree_util.FlattenedIndexKey):
        return str(k.key)
    return str(k)


def path_string(keypath) -> str:
    """``/``-joined string of a `jax.tree_util` key path."""
    return "/".join(_key_str(k) for k in keypath)


def leaf_paths(tree) -> list[str]:
    """The path of every leaf, in flattening order."""
    return [path_string(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def is_prunable(path: str) -> bool:
    """A tensorized layer's core (``…/cores/k``) or a dense weight (last key ``weight…``)."""
    parts = path.split("/")
    return (len(parts) >= 2 and parts[-2] == "cores") or parts[-1].startswith("weight")


def prunable_paths(params) -> list[str]:
    """Paths of the prunable leaves of ``params``, in deterministic (flattening) order."""
    return [p for p in leaf_paths(params) if is_prunable(p)]


def prunable_leaves(params) -> dict[str, Any]:
    """``{path: array}`` of the prunable leaves (the arrays themselves, not copies)."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return {path_string(p): a for p, a in leaves if is_prunable(path_string(p))}


def _is_nested(params, masks) -> bool:
    return isinstance(params, Mapping) and all(k in params for k in masks)


def _as_bool(m, shape, path):
    if tuple(np.shape(m)) != tuple(shape):
        raise ValueError(
            f"masks[{path!r}] has shape {tuple(np.shape(m))} but the parameter has shape "
            f"{tuple(shape)}"
        )
    if isinstance(m, np.ndarray):
        return m if m.dtype == np.bool_ else m != 0
    m = jnp.asarray(m)
    return m if m.dtype == jnp.bool_ else m != 0


def normalize_masks(params, masks):
    """The full nested form of ``masks`` (flat or nested, see the module docstring) for ``params``.

    Returns ``None`` when ``masks`` is None or empty. Raises ``ValueError`` naming a mask whose path
    is not a prunable leaf of ``params`` or whose shape differs from the parameter's.
    """
    if masks is None:
        return None
    if not isinstance(masks, Mapping):
        raise TypeError(
            f"masks must be a dict (flat {{path: bool array}} or nested like params); got "
            f"{type(masks).__name__}"
        )
    if not masks:
        return None
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    if _is_nested(params, masks):
        flat = {path_string(p): m for p, m in jax.tree_util.tree_flatten_with_path(masks)[0]}
    else:
        flat = dict(masks)
    paths = [path_string(p) for p, _ in leaves]
    known = set(paths)
    for path in flat:
        if path not in known:
            raise ValueError(
                f"masks has an entry {path!r} that is not a parameter; parameters: "
                f"{', '.join(p for p in paths if is_prunable(p))}"
            )
        if not is_prunable(path):
            raise ValueError(
                f"masks[{path!r}]: only cores and weights can be masked, not biases or "
                "normalisation parameters"
            )
    out = [
        None if path not in flat or flat[path] is None else _as_bool(flat[path], leaf.shape, path)
        for path, (_, leaf) in zip(paths, leaves, strict=True)
    ]
    if all(m is None for m in out):
        return None
    return jax.tree_util.tree_unflatten(treedef, out)


def flatten_masks(masks, params=None) -> dict[str, Any]:
    """``{path: bool array}`` of the masked leaves (``params`` normalises first, if given)."""
    if params is not None:
        masks = normalize_masks(params, masks)
    if masks is None:
        return {}
    return {path_string(p): m for p, m in jax.tree_util.tree_flatten_with_path(masks)[0]}


def mask_tree_map(fn, params, masks):
    """``fn(param, mask)`` on every leaf with a mask, the leaf itself elsewhere (any masks form)."""
    full = normalize_masks(params, masks)
    if full is None:
        return params
    return jax.tree.map(
        lambda m, p: p if m is None else fn(p, m), full, params, is_leaf=lambda x: x is None
    )


def apply_masks(params, masks):
    """New params with every pruned entry exactly 0 (``params`` is not modified)."""
    return mask_tree_map(lambda p, m: jnp.where(m, p, jnp.zeros((), p.dtype)), params, masks)


def ones_masks(params) -> dict[str, Any]:
    """Flat all-True masks for every prunable leaf (the unpruned network)."""
    return {path: jnp.ones(a.shape, jnp.bool_) for path, a in prunable_leaves(params).items()}


def count_kept(params, masks) -> int:
    """Prunable entries kept (all of them where a leaf has no mask)."""
    full = normalize_masks(params, masks)
    flat = {} if full is None else flatten_masks(full)
    return sum(
        int(np.sum(np.asarray(flat[p]))) if p in flat else int(np.prod(a.shape))
        for p, a in prunable_leaves(params).items()
    )


def density(params, masks) -> float:
    """Fraction of prunable entries kept."""
    total = sum(int(np.prod(a.shape)) for a in prunable_leaves(params).values())
    return count_kept(params, masks) / total if total else 1.0
