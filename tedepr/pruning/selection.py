"""Global selection of the entries to keep, the structural guards, and the pruning schedule.

Everything here works on dictionaries ``name -> array`` in any array-API namespace. Selection is
global over all arrays, keeps exactly the requested count, and breaks ties deterministically: among
equal scores, the entry that comes first (parameters by canonical name, then C order inside the array)
is kept.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..namespace import get_namespace
from .problem import CoreInfo, canonical_order

__all__ = [
    "Guards",
    "select",
    "reserved_entries",
    "exponential_schedule",
    "effective_ranks",
    "count_kept",
]


@dataclass(frozen=True)
class Guards:
    """Structural guards for tensor-network cores (SPEC §3).

    ``min_density``: every tensorized core keeps at least ``ceil(min_density · size)`` entries (its best
    ones). ``keep_slices``: every slice over ``CoreInfo.slice_axes`` (for a TT/TR core, each ``(n_k, m_k)``
    position; for a Tucker/CP factor, each row) keeps its best entry, so no input or output mode index
    loses every path through the network. Dense weights (``format == "dense"``) are never guarded.
    """

    min_density: float = 0.0
    keep_slices: bool = True

    def __post_init__(self):
        if not (0.0 <= self.min_density <= 1.0):
            raise ValueError(f"min_density must be in [0, 1]; got {self.min_density}")

    @classmethod
    def none(cls) -> Guards:
        return cls(min_density=0.0, keep_slices=False)


def _flat(xp, a):
    return xp.reshape(a, (-1,))


def _top_k_mask(xp, scores_flat, k: int):
    """Bool mask of the ``k`` largest entries (stable: earlier entries win ties)."""
    n = scores_flat.shape[0]
    if k >= n:
        return xp.ones((n,), dtype=xp.bool)
    if k <= 0:
        return xp.zeros((n,), dtype=xp.bool)
    order = xp.argsort(scores_flat, descending=True, stable=True)
    rank = xp.argsort(
        order, stable=True
    )  # inverse permutation: position of each entry in the order
    return rank < k


def _slice_best_mask(xp, score, axes: tuple[int, ...]):
    """Bool mask with one True per slice over ``axes``: the (first) best entry of that slice."""
    ndim = len(score.shape)
    rest = tuple(a for a in range(ndim) if a not in axes)
    perm = axes + rest
    moved = xp.permute_dims(score, perm)
    n_slices = math.prod(score.shape[a] for a in axes)
    flat = xp.reshape(moved, (n_slices, -1))
    best = xp.argmax(flat, axis=1)
    cols = xp.arange(flat.shape[1], dtype=best.dtype)
    onehot = xp.reshape(cols, (1, -1)) == xp.reshape(best, (-1, 1))
    onehot = xp.reshape(onehot, tuple(moved.shape))
    inv = tuple(perm.index(a) for a in range(ndim))
    return xp.permute_dims(onehot, inv)


def reserved_entries(
    scores: Mapping[str, Any], structure: Mapping[str, CoreInfo], guards: Guards, *, xp: Any = None
) -> dict[str, Any]:
    """Entries the guards force to be kept, as bool arrays (same keys as ``scores``)."""
    xp = get_namespace(*scores.values(), xp=xp)
    out = {}
    for name, s in scores.items():
        info = structure.get(name)
        res = xp.zeros(tuple(s.shape), dtype=xp.bool)
        if info is not None and info.format != "dense":
            if guards.keep_slices and info.slice_axes:
                res = res | _slice_best_mask(xp, s, tuple(info.slice_axes))
            floor = math.ceil(guards.min_density * math.prod(s.shape))
            if floor:
                res = res | xp.reshape(_top_k_mask(xp, _flat(xp, s), floor), tuple(s.shape))
        out[name] = res
    return out


def select(
    scores: Mapping[str, Any],
    keep: int,
    *,
    structure: Mapping[str, CoreInfo] | None = None,
    guards: Guards | None = None,
    xp: Any = None,
) -> dict[str, Any]:
    """Keep exactly ``keep`` entries with the highest scores, globally, honouring the guards.

    Parameters
    ----------
    scores : dict name -> array
        Importance (higher = keep). Must be finite.
    keep : int
        Number of entries kept over all arrays.
    structure, guards :
        With both given, the guard-reserved entries are kept first; ``ValueError`` if they alone exceed
        ``keep`` (the target cannot be met without a dead core or slice).

    Returns
    -------
    dict name -> bool array (True = kept), same shapes and namespace as the scores.
    """
    if not scores:
        raise ValueError("scores is empty: there is nothing to select from")
    xp = get_namespace(*scores.values(), xp=xp)
    names = canonical_order(scores)  # backend-independent tie-breaking
    sizes = [math.prod(scores[n].shape) for n in names]
    total = sum(sizes)
    if isinstance(keep, bool) or not isinstance(keep, int) or not 0 <= keep <= total:
        raise ValueError(
            f"keep must be an int in [0, {total}] (the number of scored entries); got {keep!r}"
        )
    for n in names:
        if not bool(xp.all(xp.isfinite(scores[n]))):
            raise ValueError(f"the score of parameter {n!r} contains NaN or infinite values")
    flat = xp.concat(
        [xp.astype(_flat(xp, scores[n]), xp.float64 if _has_f64(xp) else xp.float32) for n in names]
    )
    if structure is not None and guards is not None:
        reserved = reserved_entries(scores, structure, guards, xp=xp)
        res_flat = xp.concat([_flat(xp, reserved[n]) for n in names])
        n_reserved = int(xp.sum(xp.astype(res_flat, xp.int64)))
        if n_reserved > keep:
            raise ValueError(
                f"the target keeps {keep} entries but the structural guards need {n_reserved} "
                "(one per core slice and the per-core minimum density); lower the sparsity, raise the "
                "rank reduction (fewer core entries), or relax the guards (Guards.none())"
            )
        # reserved entries first, then by score; inf keeps them ahead without disturbing the order
        flat = xp.where(res_flat, xp.asarray(math.inf, dtype=flat.dtype), flat)
    mask_flat = _top_k_mask(xp, flat, keep)
    out, start = {}, 0
    for n, size in zip(names, sizes):
        out[n] = xp.reshape(mask_flat[start : start + size], tuple(scores[n].shape))
        start += size
    return out


def _has_f64(xp) -> bool:
    try:
        xp.zeros((1,), dtype=xp.float64)
        return True
    except Exception:  # jax without x64 silently gives float32; mps has no float64
        return False


def exponential_schedule(final_density: float, rounds: int) -> list[float]:
    """Densities ``final^(k/rounds)`` for ``k = 1..rounds`` (FORCE / SynFlow progressive pruning)."""
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive int; got {rounds!r}")
    if not 0.0 < final_density <= 1.0:
        raise ValueError(f"final density must be in (0, 1]; got {final_density}")
    return [final_density ** (k / rounds) for k in range(1, rounds + 1)]


def count_kept(masks: Mapping[str, Any], *, xp: Any = None) -> int:
    """Total number of True entries."""
    xp = get_namespace(*masks.values(), xp=xp)
    return sum(int(xp.sum(xp.astype(m, xp.int64))) for m in masks.values())


def effective_ranks(
    masks: Mapping[str, Any], structure: Mapping[str, CoreInfo], *, xp: Any = None
) -> dict[str, tuple[int, ...]]:
    """Per tensorized layer, the number of live indices on each bond axis of each core.

    A bond index is live in a core when some kept entry uses it. Reported per parameter as a tuple over
    its ``bond_axes`` (e.g. ``(live r_{k-1}, live r_k)`` for a TT core).
    """
    xp = get_namespace(*masks.values(), xp=xp)
    out = {}
    for name, info in structure.items():
        if info.format == "dense" or not info.bond_axes or name not in masks:
            continue
        m = xp.astype(masks[name], xp.int32)
        live = []
        for ax in info.bond_axes:
            other = tuple(a for a in range(len(m.shape)) if a != ax)
            live.append(int(xp.sum(xp.astype(xp.sum(m, axis=other) > 0, xp.int32))))
        out[name] = tuple(live)
    return out
