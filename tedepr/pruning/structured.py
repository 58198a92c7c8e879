"""Structured selection: prune whole bond indices of the cores (the fine grain lowering ranks).

A *unit* is everything one bond index carries: for TT/TR, index ``a`` of the bond between cores
``k-1`` and ``k`` owns the entries of core ``k-1`` whose right bond is ``a`` and of core ``k`` whose
left bond is ``a``; for CP, column ``r`` of every factor. A dense weight's units are its single
entries. Greedily, the unit with the lowest *importance per entry* (the sum of its kept entries'
scores over their number) is removed — so ranks fall where that is cheapest for the score — never the
last index of a bond and never the last entry of a dense weight (every layer stays live), until the
model holds ``keep`` entries; the last unit is removed only partly (its lowest entries) to hit
``keep`` exactly. Tucker layers are pruned entry by entry, their best complete path reserved (so
they stay live too).

With ``modes`` (the ``trainability-modes`` / ``trainability-inmodes`` candidates, docs/method.md
§10, Round 4) a unit can also be a *mode slice* of a TT/TR core: input-mode index ``i`` of core
``k`` owns ``G_k[:, i, :, :]`` — the weights of a block of the layer's inputs (on MNIST with
axis-aligned modes, e.g. a band of border pixels) — and output-mode index ``j`` owns
``G_k[:, :, j, :]``. Units of both kinds compete in the same greedy ranking, so the entries a
useless block of pixels holds go to higher ranks where the score says.

NumPy on host copies; the result is converted to the scores' namespace.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..namespace import get_namespace
from .connectivity import best_paths, layers_of, to_numpy
from .problem import CoreInfo, canonical_order
from .selection import _like

__all__ = ["select_bonds"]


#: the mode axes each ``modes`` option of `select_bonds` prunes, as offsets into a TT/TR core's
#: ``slice_axes`` (``(n_k, m_k)``: 0 = the input mode, 1 = the output mode)
MODE_OPTIONS = {"none": (), "in": (0,), "out": (1,), "inout": (0, 1)}


def _units(np_scores, structure, modes=(), quiet=None):
    """``(label, parts, group)`` per unit, in a deterministic order: ``parts`` lists the
    ``(array name, axis, index)`` slices (axis None: one flat entry) the unit owns; ``group`` is
    the ``(array name, axis)`` whose last live index may not be removed (None: no such limit)."""
    units = []
    for _layer, names in sorted(layers_of(structure).items(), key=lambda kv: kv[0]):
        fmt = structure[names[0]].format
        if fmt in ("tt", "tr"):
            d = len(names)
            bonds = list(range(1, d)) + ([0] if fmt == "tr" else [])
            for k in bonds:
                left_core, right_core = names[k - 1], names[k]  # k=0 (TR): names[-1] and names[0]
                r = np_scores[right_core].shape[structure[right_core].bond_axes[0]]
                for a in range(r):
                    units.append(
                        (
                            f"{right_core}#{a}",
                            [
                                (left_core, structure[left_core].bond_axes[1], a),
                                (right_core, structure[right_core].bond_axes[0], a),
                            ],
                            (right_core, structure[right_core].bond_axes[0]),
                        )
                    )
            for n in names:  # mode slices: one input / output index of one core
                core_mean = float(np.mean(np_scores[n]))
                for off in modes:
                    axis = structure[n].slice_axes[off]
                    for i in range(np_scores[n].shape[axis]):
                        if quiet is not None and not (
                            float(np.mean(np.take(np_scores[n], i, axis=axis))) < quiet * core_mean
                        ):
                            continue  # not a quiet slice: only its bond units may shrink it
                        units.append((f"{n}~{axis}:{i}", [(n, axis, i)], (n, axis)))
        elif fmt == "cp":
            first = names[0]
            for c in range(np_scores[first].shape[structure[first].bond_axes[0]]):
                units.append(
                    (f"{first}#{c}", [(n, structure[n].bond_axes[0], c) for n in names], None)
                )
        else:  # dense weights and Tucker: entry units
            for n in names:
                for i in range(np_scores[n].size):
                    units.append((f"{n}@{i}", [(n, None, i)], None))
    return units


def _entries(masks, parts):
    """Boolean views (as index tuples) of the kept entries a unit owns."""
    out = []
    for name, axis, idx in parts:
        m = masks[name]
        if axis is None:
            flat_idx = np.unravel_index(idx, m.shape)
            out.append((name, flat_idx))
        else:
            sl = [slice(None)] * m.ndim
            sl[axis] = idx
            out.append((name, tuple(sl)))
    return out


def select_bonds(
    scores: Mapping[str, Any],
    keep: int,
    structure: Mapping[str, CoreInfo],
    *,
    modes: str = "none",
    quiet: float | None = None,
    xp: Any = None,
    unit_cost: Callable[[dict[str, np.ndarray], list], float | None] | None = None,
) -> dict[str, Any]:
    """Masks keeping exactly ``keep`` entries, pruning whole bond indices first (module doc).

    ``modes`` adds *mode slices* of the TT/TR cores to the units: ``"in"`` — one input-mode index
    ``i`` of core ``k`` (the entries ``G_k[:, i, :, :]``: a block of the layer's inputs),
    ``"out"`` — one output-mode index (a block of its outputs), ``"inout"`` — both; ``"none"``
    (the default) prunes bond indices only. A core keeps at least one index of every mode, as a
    bond keeps one of its indices, so every layer stays live. ``quiet`` (a float in (0, 1], or
    None: every slice) makes a mode slice a unit only if its mean score is below ``quiet`` times
    its core's mean score (the ``trainability-quietmodes`` candidate: only the slices that carry
    little signal, such as bands of blank border pixels, may go whole).

    ``unit_cost(masks, parts)`` (optional; the ``trainability-isometry-exact`` score,
    `tedepr.pruning.isometry.removal_cost`) replaces a unit's summed score by an exact cost of
    removing it at the current masks (NumPy bools; None: keep the summed score), and every
    removal re-prices the units of the same layer, so the greedy is exact for that cost; the
    partial last unit still drops its lowest-scored entries.
    """
    if quiet is not None and (
        isinstance(quiet, bool) or not isinstance(quiet, (int, float)) or not 0 < quiet <= 1
    ):
        raise ValueError(f"quiet must be None or a float in (0, 1]; got {quiet!r:.40}")
    if not isinstance(modes, str) or modes not in MODE_OPTIONS:
        raise ValueError(
            f"modes must be one of {', '.join(map(repr, MODE_OPTIONS))}; got {modes!r:.40}"
        )
    xp = get_namespace(*scores.values(), xp=xp)
    names = canonical_order(scores)
    np_scores = {n: to_numpy(scores[n]).astype(np.float64) for n in names}
    total = sum(s.size for s in np_scores.values())
    if isinstance(keep, bool) or not isinstance(keep, int) or not 0 < keep <= total:
        raise ValueError(f"keep must be an int in [1, {total}]; got {keep!r}")
    masks = {n: np.ones(np_scores[n].shape, bool) for n in names}
    known = {n: structure[n] for n in names if n in structure}
    units = _units(np_scores, known, MODE_OPTIONS[modes], quiet)
    # a Tucker layer's units are single entries, which the last-entry rule alone cannot keep
    # connected (a core entry whose factor columns are all gone): its best complete path is
    # reserved, as the keep_path guard does for an entry-wise selection
    tucker = {n: info for n, info in known.items() if info.format == "tucker"}
    reserved = best_paths({n: np_scores[n] for n in tucker}, tucker) if tucker else {}
    mode_groups = {u[2] for u in units if "~" in u[0]}
    # a bond keeps at least one index; a dense weight at least one entry
    group_live: dict[tuple, int] = {}
    group_of = []
    for _label, parts, bond in units:
        g = (
            bond
            if bond is not None
            else ((parts[0][0], "entries") if parts[0][1] is None else None)
        )
        group_of.append(g)
        if g is not None:
            group_live[g] = group_live.get(g, 0) + 1
    for g in group_live:  # a mode axis has all its indices live, units or not (``quiet``)
        if isinstance(g[1], int) and g in mode_groups:
            group_live[g] = np_scores[g[0]].shape[g[1]]

    def ratio(uid):
        imp, cnt = 0.0, 0
        for name, sl in _entries(masks, units[uid][1]):
            kept = masks[name][sl]
            imp += float(np.sum(np_scores[name][sl][kept]))
            cnt += int(np.sum(kept))
        if unit_cost is not None and cnt:
            exact = unit_cost(masks, units[uid][1])
            imp = imp if exact is None else float(exact)
        return (imp / cnt if cnt else math.inf), cnt

    # with an exact cost, a removal changes the cost of every unit of its layer
    same_layer: dict[str, list[int]] = {}
    if unit_cost is not None:
        for uid, (_label, parts, _group) in enumerate(units):
            same_layer.setdefault(known[parts[0][0]].layer, []).append(uid)

    heap = [(ratio(u)[0], u) for u in range(len(units))]
    heapq.heapify(heap)
    removed = np.zeros(len(units), bool)
    skipped: list[int] = []
    while total > keep and heap:
        r, uid = heapq.heappop(heap)
        if removed[uid]:
            continue
        now, cnt = ratio(uid)
        if cnt == 0:
            removed[uid] = True
            continue
        if now > r + 1e-12 * max(1.0, abs(r)) and heap and now > heap[0][0]:
            heapq.heappush(heap, (now, uid))  # stale: its entries changed since it was pushed
            continue
        name0, axis0, idx0 = units[uid][1][0]
        if axis0 is None and name0 in reserved and reserved[name0].flat[idx0]:
            removed[uid] = True  # on its Tucker layer's reserved path: kept
            continue
        g = group_of[uid]
        if g is not None and group_live[g] <= 1:
            removed[uid] = True  # the last index of its bond / entry of its weight: kept
            continue
        parts = _entries(masks, units[uid][1])
        if total - cnt >= keep:
            for name, sl in parts:
                masks[name][sl] = False
            total -= cnt
            removed[uid] = True
            if g is not None:
                group_live[g] -= 1
            for other in same_layer.get(known[units[uid][1][0][0]].layer, ()):
                if not removed[other]:
                    heapq.heappush(heap, (ratio(other)[0], other))
            continue
        # partial: drop only the unit's lowest entries, keeping exactly `keep` — and at least one
        # entry on each side of a bond index, so that what stays is still connected
        excess = total - keep
        sides = []
        for name, sl in parts:
            view = np.zeros(masks[name].shape, bool)
            view[sl] = True
            sides.append(
                [
                    (np_scores[name][tuple(i)], name, tuple(i))
                    for i in np.argwhere(view & masks[name])
                ]
            )
        spare = [sorted(side, key=lambda c: (c[0], c[1], c[2]))[:-1] for side in sides]
        if g is not None and len(parts) > 1 and sum(map(len, spare)) < excess:
            skipped.append(uid)  # cannot shrink without disconnecting: try the next unit
            removed[uid] = True
            continue
        cands = sorted(
            (c for side in (spare if len(parts) > 1 else sides) for c in side),
            key=lambda c: (c[0], c[1], c[2]),
        )
        for _s, name, i in cands[:excess]:
            masks[name][i] = False
        total -= min(excess, len(cands))
    if total > keep:
        # no whole unit is left to remove (every bond at one index, every dense weight at one entry,
        # or the last units too small to shrink connected): finish entry by entry among what is
        # kept, with the path and connected guards
        from .selection import Guards, select

        lo = min(float(v.min()) for v in np_scores.values())
        floor = lo - 1e6 * (1.0 + abs(lo))
        masked = {n: np.where(masks[n], np_scores[n], floor) for n in names}
        masks = select(masked, keep, structure=known, guards=Guards(keep_path=True, connected=True))
    return {n: _like(xp, masks[n], scores[n]) for n in names}
