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
    """Structural guards for tensor-network cores and dense weights (SPEC §3, docs/method.md §10).

    ``keep_path``: every layer keeps at least one complete input→output path — for a tensorized layer
    the entries of its highest-scoring chain of bond indices through every core
    (`tedepr.pruning.connectivity.best_paths`), for a dense weight its best entry — so no layer is
    ever dead. ``connected``: entries that lie on no complete path of kept entries (untrainable:
    their gradient is identically zero for the whole of training) are dropped and the budget they
    held is given to the next-best entries, until every kept entry of a tensorized layer is
    connected. ``min_density``: every tensorized core keeps at least ``ceil(min_density · size)``
    entries (its best ones). ``keep_slices``: every slice over ``CoreInfo.slice_axes`` (for a TT/TR
    core, each ``(n_k, m_k)`` position; for a Tucker/CP factor, each row) keeps its best entry —
    except in a core where every entry is its own slice (rank 1), which would exempt it from pruning.
    Every reservation counts in the budget.
    """

    min_density: float = 0.0
    keep_slices: bool = False
    keep_path: bool = True
    connected: bool = False

    def __post_init__(self):
        if not (0.0 <= self.min_density <= 1.0):
            raise ValueError(f"min_density must be in [0, 1]; got {self.min_density}")

    @classmethod
    def none(cls) -> Guards:
        """No guard at all (a layer may end dead: `compress` then raises, naming it)."""
        return cls(min_density=0.0, keep_slices=False, keep_path=False, connected=False)


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
            size = math.prod(s.shape)
            n_slices = math.prod(s.shape[a] for a in info.slice_axes) if info.slice_axes else 0
            if guards.keep_slices and info.slice_axes and n_slices < size:
                res = res | _slice_best_mask(xp, s, tuple(info.slice_axes))
            floor = math.ceil(guards.min_density * size)
            if floor:
                res = res | xp.reshape(_top_k_mask(xp, _flat(xp, s), floor), tuple(s.shape))
        out[name] = res
    if guards.keep_path:
        from .connectivity import best_paths

        known = {n: structure[n] for n in scores if n in structure}
        paths = best_paths({n: scores[n] for n in known}, known)
        for name, path in paths.items():
            out[name] = out[name] | _like(xp, path, scores[name])
    return out


def _like(xp, np_bool, ref):
    """A NumPy bool array as an array of ``ref``'s namespace and device."""
    arr = xp.asarray(np_bool)
    device = getattr(ref, "device", None)
    if device is not None and getattr(arr, "device", None) != device:
        try:
            arr = xp.asarray(np_bool, device=device)
        except TypeError:
            pass
    return arr


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
    out = _split(xp, _top_k_mask(xp, flat, keep), names, sizes, scores)
    if structure is not None and guards is not None and guards.connected:
        out = _refill_connected(xp, out, flat, keep, names, sizes, scores, structure)
    return out


def _split(xp, mask_flat, names, sizes, scores):
    out, start = {}, 0
    for n, size in zip(names, sizes):
        out[n] = xp.reshape(mask_flat[start : start + size], tuple(scores[n].shape))
        start += size
    return out


def _refill_connected(
    xp, masks, flat, keep, names, sizes, scores, structure, max_rounds: int = 100
):
    """Drop kept entries on no complete path (untrainable) and give their budget to the next-best
    entries, until every kept entry of every tensorized layer is connected (or nothing changes)."""
    from .connectivity import useful_entries

    known = {n: structure[n] for n in names if n in structure}
    for _ in range(max_rounds):
        useful = useful_entries({n: masks[n] for n in known}, known)
        wasted = [
            xp.reshape(_like(xp, useful[n], masks[n]), (-1,)) != _flat(xp, masks[n])
            if n in known
            else xp.zeros((size,), dtype=xp.bool)
            for n, size in zip(names, sizes)
        ]
        wasted_flat = xp.concat(wasted)
        if not bool(xp.any(wasted_flat)):
            break
        # an untrainable entry never comes back: it goes to the end of the order
        flat = xp.where(wasted_flat, xp.asarray(-math.inf, dtype=flat.dtype), flat)
        new = _split(xp, _top_k_mask(xp, flat, keep), names, sizes, scores)
        if all(bool(xp.all(new[n] == masks[n])) for n in names):
            break  # too few connected entries left to fill the budget: keep what is there
        masks = new
    return masks


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
