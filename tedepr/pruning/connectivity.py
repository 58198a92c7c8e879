"""Which kept entries of a tensor network can ever train: connected paths through the cores.

A tensorized layer's weight is a sum over *paths* — one entry of every core, chained by equal bond
indices (TT: ``G_1[1, i_1, j_1, a_1] G_2[a_1, i_2, j_2, a_2] ⋯``; TR closes the chain with a trace;
CP shares one column index across all factors; Tucker joins a core entry to one column of every
factor). With fixed masks, an entry that lies on no complete path of kept entries contributes
nothing to the weight and receives an identically zero gradient for the whole of training: it is
untrainable, a wasted unit of the budget. This module computes, from masks alone:

- `analyse`: per layer, whether it is *live* (at least one complete path), how many paths it has,
  and its effective ranks counted on the connected structure only;
- `useful_entries`: the kept entries that lie on at least one complete path;
- `best_paths`: per layer, the entries of its highest-scoring complete path (a dynamic programme
  over bond indices), which the guards reserve so that no layer is ever dead.

Everything is NumPy on (small) masks; callers convert to and from their namespace.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .problem import CoreInfo

__all__ = ["LayerLiveness", "analyse", "useful_entries", "best_paths", "to_numpy", "layers_of"]


def to_numpy(a) -> np.ndarray:
    """A host NumPy copy of any array (torch tensors on any device, jax arrays, NumPy)."""
    if hasattr(a, "detach"):
        a = a.detach()
    if hasattr(a, "cpu"):
        a = a.cpu()
    return np.asarray(a)


def layers_of(structure: Mapping[str, CoreInfo]) -> dict[str, list[str]]:
    """Parameter names grouped by layer, each group in core order."""
    out: dict[str, list[str]] = {}
    for name, info in structure.items():
        out.setdefault(info.layer, []).append(name)
    for names in out.values():
        names.sort(key=lambda n: structure[n].index)
    return out


def _bond_matrix(arr: np.ndarray, info: CoreInfo, reduce) -> np.ndarray:
    """``(r_left, r_right)`` reduction of a TT/TR core over its slice axes."""
    left, right = info.bond_axes
    moved = np.moveaxis(arr, (left, right), (0, 1))
    return reduce(moved.reshape(moved.shape[0], moved.shape[1], -1), axis=2)


def _chain(masks, names, structure):
    """Bond reachability of a TT/TR chain, per closing index.

    Returns ``(mats, closings)``: ``mats[k]`` is core k's bool bond matrix (left bond × right bond:
    some kept entry joins them) and ``closings`` lists, for every closing index ``c`` (always 0 for
    TT, whose boundary bonds have size 1) that has a complete path, ``(fwd, bwd)``: ``fwd[k]`` marks
    the left-bond indices of core k reachable from ``c`` and ``bwd[k]`` the right-bond indices of
    core k from which ``c`` is reached at the end.
    """
    mats = [
        _bond_matrix(masks[n].astype(bool), structure[n], np.any).astype(np.int64) for n in names
    ]
    closings = []
    for c in range(mats[0].shape[0]):
        fwd, v = [], np.zeros(mats[0].shape[0], np.int64)
        v[c] = 1
        for m in mats:
            fwd.append(v > 0)
            v = ((v @ m) > 0).astype(np.int64)
        if not v[c]:
            continue  # no closed path through c
        bwd, w = [None] * len(mats), np.zeros(mats[-1].shape[1], np.int64)
        w[c] = 1
        for k in range(len(mats) - 1, -1, -1):
            bwd[k] = w > 0
            w = ((mats[k] @ w) > 0).astype(np.int64)
        closings.append((fwd, bwd))
    return mats, closings


def _chain_ranks(mats, closings) -> tuple[int, ...]:
    """Live indices per bond ``0..d`` (bond k, 0 < k < d, joins core k-1 and core k)."""
    d = len(mats)
    live = [np.zeros(m.shape[0], bool) for m in mats]
    for fwd, bwd in closings:
        live[0][np.flatnonzero(fwd[0])] = True
        for k in range(1, d):
            live[k] |= fwd[k] & bwd[k - 1]
    ranks = [int(x.sum()) for x in live]
    return tuple(ranks + [ranks[0]])


@dataclass(frozen=True)
class LayerLiveness:
    """``live``: the layer's weight has at least one complete path of kept entries (for a dense
    weight: at least one kept entry). ``paths``: the number of complete paths (kept entries for a
    dense weight). ``ranks``: per bond, the indices that lie on a complete path (tensorized only)."""

    layer: str
    format: str
    live: bool
    paths: float
    ranks: tuple[int, ...] | None = None


def _count_paths(masks, names, structure) -> float:
    mats = [_bond_matrix(masks[n].astype(np.float64), structure[n], np.sum) for n in names]
    prod = mats[0]
    for m in mats[1:]:
        prod = prod @ m
    return float(np.trace(prod))


def _cp_columns(masks, names, structure) -> np.ndarray:
    cols = None
    for n in names:
        info = structure[n]
        m = masks[n].astype(bool)
        used = np.any(
            np.moveaxis(m, info.bond_axes[0], -1).reshape(-1, m.shape[info.bond_axes[0]]), axis=0
        )
        cols = used if cols is None else cols & used
    return cols


def _tucker_split(names, structure):
    core = next(n for n in names if structure[n].index == 0)
    factors = [n for n in names if structure[n].index != 0]
    return core, factors


def _tucker_axes(core_shape, factor_shapes, factored=None):
    """Core axis of each factor: factors follow the factored modes in order. A factor of shape
    ``(dim, R)`` sits on the first unmatched core axis of size ``R`` (in order)."""
    axes, start = [], 0
    for shape in factor_shapes:
        r = shape[1]
        k = start
        while k < len(core_shape) and core_shape[k] != r:
            k += 1
        if k == len(core_shape):
            return None
        axes.append(k)
        start = k + 1
    return axes


def _tucker_live_core(masks, core, factors, structure):
    """Bool mask of the core entries all of whose factored indices hit a kept factor column."""
    cm = masks[core].astype(bool)
    axes = _tucker_axes(cm.shape, [masks[f].shape for f in factors])
    if axes is None:
        return cm
    ok = cm.copy()
    for f, ax in zip(factors, axes):
        col = np.any(masks[f].astype(bool), axis=0)
        shape = [1] * cm.ndim
        shape[ax] = col.shape[0]
        ok &= col.reshape(shape)
    return ok, axes


def analyse(
    masks: Mapping[str, Any], structure: Mapping[str, CoreInfo]
) -> dict[str, LayerLiveness]:
    """Liveness, path counts and connected effective ranks of every layer (see module doc)."""
    np_masks = {n: to_numpy(m).astype(bool) for n, m in masks.items()}
    out = {}
    for layer, names in layers_of({n: structure[n] for n in np_masks if n in structure}).items():
        fmt = structure[names[0]].format
        if fmt == "dense":
            kept = sum(int(np_masks[n].sum()) for n in names)
            live = all(np_masks[n].any() for n in names)
            out[layer] = LayerLiveness(layer, fmt, live, float(kept))
        elif fmt in ("tt", "tr"):
            mats, closings = _chain(np_masks, names, structure)
            paths = _count_paths(np_masks, names, structure)
            ranks = _chain_ranks(mats, closings) if closings else (0,) * (len(names) + 1)
            out[layer] = LayerLiveness(layer, fmt, bool(closings), paths, ranks)
        elif fmt == "cp":
            cols = _cp_columns(np_masks, names, structure)
            paths = 0.0
            for r in np.flatnonzero(cols):
                term = 1.0
                for n in names:
                    m = np.moveaxis(np_masks[n], structure[n].bond_axes[0], -1)
                    term *= float(m[..., r].sum())
                paths += term
            out[layer] = LayerLiveness(layer, fmt, bool(cols.any()), paths, (int(cols.sum()),))
        else:  # tucker
            core, factors = _tucker_split(names, structure)
            res = _tucker_live_core(np_masks, core, factors, structure)
            ok = res[0] if isinstance(res, tuple) else res
            live = bool(ok.any()) and all(np_masks[f].any() for f in factors)
            out[layer] = LayerLiveness(layer, fmt, live, float(ok.sum()) if live else 0.0)
    return out


def useful_entries(
    masks: Mapping[str, Any], structure: Mapping[str, CoreInfo]
) -> dict[str, np.ndarray]:
    """Kept entries lying on at least one complete path (NumPy bool arrays, same keys as ``masks``).
    Dense weights: every kept entry is useful."""
    np_masks = {n: to_numpy(m).astype(bool) for n, m in masks.items()}
    out = dict(np_masks)
    for _layer, names in layers_of({n: structure[n] for n in np_masks if n in structure}).items():
        fmt = structure[names[0]].format
        if fmt in ("tt", "tr"):
            _, closings = _chain(np_masks, names, structure)
            for k, n in enumerate(names):
                left, right = structure[n].bond_axes
                keep = np.zeros(np_masks[n].shape, bool)
                for fwd, bwd in closings:
                    lshape = [1] * keep.ndim
                    rshape = [1] * keep.ndim
                    lshape[left], rshape[right] = fwd[k].shape[0], bwd[k].shape[0]
                    keep |= fwd[k].reshape(lshape) & bwd[k].reshape(rshape)
                out[n] = np_masks[n] & keep
        elif fmt == "cp":
            cols = _cp_columns(np_masks, names, structure)
            for n in names:
                ax = structure[n].bond_axes[0]
                shape = [1] * np_masks[n].ndim
                shape[ax] = cols.shape[0]
                out[n] = np_masks[n] & cols.reshape(shape)
        elif fmt == "tucker":
            core, factors = _tucker_split(names, structure)
            res = _tucker_live_core(np_masks, core, factors, structure)
            if not isinstance(res, tuple):
                continue
            ok, axes = res
            out[core] = ok
            for f, ax in zip(factors, axes):
                used = np.any(np.moveaxis(ok, ax, 0).reshape(ok.shape[ax], -1), axis=1)
                out[f] = np_masks[f] & used.reshape(1, -1)
    return out


def best_paths(
    scores: Mapping[str, Any], structure: Mapping[str, CoreInfo]
) -> dict[str, np.ndarray]:
    """Per layer, the entries of its highest-scoring complete path (bool NumPy arrays; dense weights:
    the single best entry of each weight array). The path maximises the sum of its entries' scores."""
    np_scores = {n: to_numpy(s).astype(np.float64) for n, s in scores.items()}
    out = {n: np.zeros(s.shape, bool) for n, s in np_scores.items()}
    for _layer, names in layers_of({n: structure[n] for n in np_scores if n in structure}).items():
        fmt = structure[names[0]].format
        if fmt == "dense":
            for n in names:
                out[n].flat[int(np.argmax(np_scores[n]))] = True
        elif fmt in ("tt", "tr"):
            _best_chain(np_scores, names, structure, out)
        elif fmt == "cp":
            best_r, best_v = 0, -math.inf
            r_count = np_scores[names[0]].shape[structure[names[0]].bond_axes[0]]
            for r in range(r_count):
                v = sum(
                    float(np.max(np.take(np_scores[n], r, axis=structure[n].bond_axes[0])))
                    for n in names
                )
                if v > best_v:
                    best_r, best_v = r, v
            for n in names:
                ax = structure[n].bond_axes[0]
                col = np.take(np_scores[n], best_r, axis=ax)
                idx = list(np.unravel_index(int(np.argmax(col)), col.shape))
                idx.insert(ax, best_r)
                out[n][tuple(idx)] = True
        else:  # tucker: the best core entry, then the best row of each factor in its column
            core, factors = _tucker_split(names, structure)
            cs = np_scores[core]
            axes = _tucker_axes(cs.shape, [np_scores[f].shape for f in factors])
            cidx = np.unravel_index(int(np.argmax(cs)), cs.shape)
            out[core][cidx] = True
            for f, ax in zip(factors, axes or []):
                col = cidx[ax]
                out[f][int(np.argmax(np_scores[f][:, col])), col] = True
    return out


def _best_chain(np_scores, names, structure, out):
    """Max-sum path over the bond indices of a TT/TR chain (Viterbi), reserved in ``out``."""
    trans, arg = [], []
    for n in names:
        info = structure[n]
        left, right = info.bond_axes
        moved = np.moveaxis(np_scores[n], (left, right), (0, 1))
        flat = moved.reshape(moved.shape[0], moved.shape[1], -1)
        trans.append(flat.max(axis=2))
        arg.append((flat.argmax(axis=2), moved.shape[2:], (left, right), info))
    r0 = trans[0].shape[0]
    best_total, best_path = -math.inf, None
    for c in range(r0):
        v = np.full(r0, -math.inf)
        v[c] = 0.0
        back = []
        for t in trans:
            cand = v[:, None] + t
            back.append(cand.argmax(axis=0))
            v = cand.max(axis=0)
        if v[c] > best_total:
            # backtrack from the closing index c
            path = [c]
            b = c
            for k in range(len(trans) - 1, -1, -1):
                b = int(back[k][b])
                path.append(b)
            path.reverse()  # bond indices a_0 … a_d
            best_total, best_path = v[c], path
    for k, n in enumerate(names):
        a, b = best_path[k], best_path[k + 1]
        am, rest_shape, (left, right), _info = arg[k]
        rest = np.unravel_index(int(am[a, b]), rest_shape)
        # rebuild the index in the array's own axis order
        order = [left, right] + [ax for ax in range(np_scores[n].ndim) if ax not in (left, right)]
        idx = [0] * np_scores[n].ndim
        for ax, val in zip(order, (a, b, *rest)):
            idx[ax] = int(val)
        out[n][tuple(idx)] = True
