"""Variance-restoring rescale of the kept entries after pruning (docs/method.md §8).

Pruning shrinks a layer's weight; at extreme sparsity the network's signal all but vanishes and
training starts slowly. The fix measured best is exact: scale the kept entries so that every layer's
(reconstructed) weight has the Frobenius norm — hence the empirical variance — of its unpruned init.
A dense weight is scaled by ``‖W‖ / ‖W ⊙ m‖``; the ``n`` cores of a tensorized layer each by the
``n``-th root of the same ratio computed on the reconstructed matrices.

`mask_aware_init` is the Round-4 alternative (docs/method.md §10): instead of scaling the kept
values, it *re-draws* them, i.i.d. Gaussian, with scales chosen from the mask's surviving paths so
that every live entry of the reconstructed weight has the init's target variance — exactly when
every live entry has the same number of paths (any mask made of whole bond indices and mode slices:
the exact init of the smaller network), on average over the live entries otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..formats import Factorized
from ..namespace import get_namespace, to_numpy

__all__ = ["REINIT_KINDS", "restoring_scales", "path_counts", "mask_aware_init"]

#: the draws `mask_aware_init` can make
REINIT_KINDS = ("gaussian", "orthogonal")


def _norm(xp, a) -> float:
    return float(xp.sqrt(xp.sum(a * a)))


def _ratio(full: float, kept: float) -> float:
    return full / kept if kept > 0 else 1.0  # an all-pruned array stays as it is (all zero)


def restoring_scales(
    weights: Sequence[Any],
    masks: Sequence[Any],
    factorized: Factorized | None = None,
    *,
    xp: Any = None,
) -> list[float]:
    """One scale per array of ``weights`` (aligned with ``masks``).

    Without ``factorized`` each array is a dense weight, scaled on its own. With it, ``weights`` are
    ``factorized.cores`` in order and all get the same scale, the ``n``-th root of the reconstructed
    weight's norm ratio.
    """
    xp = get_namespace(*weights, xp=xp)
    masked = [w * xp.astype(m, w.dtype) for w, m in zip(weights, masks)]
    if factorized is None:
        return [_ratio(_norm(xp, w), _norm(xp, mw)) for w, mw in zip(weights, masked)]
    if len(weights) != len(factorized.cores):
        raise ValueError(
            f"weights must be the {len(factorized.cores)} cores of factorized; got {len(weights)}"
        )
    full = _norm(xp, factorized.with_cores(list(weights)).to_dense())
    kept = _norm(xp, factorized.with_cores(masked).to_dense())
    return [_ratio(full, kept) ** (1.0 / len(weights))] * len(weights)


def path_counts(masks: Sequence[Any], factorized: Factorized) -> np.ndarray:
    """The number of complete paths (one kept entry per core, chained by equal bond indices) through
    every entry of ``factorized``'s reconstructed ``(N_in, N_out)`` matrix, for the core masks
    ``masks`` — the reconstruction with every kept entry 1 and every pruned one 0."""
    ones = [to_numpy(m).astype(np.float64) for m in masks]
    return np.asarray(to_numpy(factorized.with_cores(ones).to_dense()), dtype=np.float64)


def mask_aware_init(
    weights: Sequence[Any],
    masks: Sequence[Any],
    factorized: Factorized | None,
    rng: np.random.Generator,
    layouts: Sequence[tuple[int, ...] | None] | None = None,
    kind: str = "gaussian",
) -> list[np.ndarray]:
    """Fresh values (NumPy float64, pruned entries 0) for one layer's kept entries.

    The target variance ``σ²`` of an entry of the layer's weight is that of its unpruned init, the
    mean square of the reconstructed weight (what the norm rescale restores too). Core ``k`` is
    re-drawn as ``c · rms(G_k) · N(0, 1)`` on its kept entries; distinct paths are uncorrelated, so
    an entry with ``P`` surviving paths has variance ``c^{2d} ∏_k mean(G_k²) · P``, and ``c`` makes
    that ``σ²`` on average over the live entries (``P > 0``) — exactly, for every live entry, where
    all have the same ``P`` (masks made of whole bond indices and mode slices). A dense weight's
    kept entries are re-drawn ``N(0, σ²)``. Draws are made array by array, in the order given,
    each in its canonical layout (``layouts[k]``: the permutation to the array's layout, as
    `tedepr.pruning.problem.CoreInfo.layout`), so the backends draw alike.

    ``kind="orthogonal"`` draws, instead of i.i.d. normals, the kept box of every array (the
    indices of each axis that keep an entry) as a Haar-random matrix with orthonormal columns (or
    rows, if wider than tall) of its unfolding ``(all axes but the last, last axis)`` — a TT core's
    left unfolding; a dense weight ``(out, in)`` itself — scaled to mean square 1 and then by the
    same std; its entries are uncorrelated with equal second moments, so the variances above hold
    alike (in expectation over the draw).
    """
    if kind not in REINIT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, REINIT_KINDS))}; got {kind!r}")
    w = [np.asarray(to_numpy(a), dtype=np.float64) for a in weights]
    m = [np.asarray(to_numpy(a)).astype(bool) for a in masks]
    layouts = list(layouts) if layouts is not None else [None] * len(w)
    if not (len(w) == len(m) == len(layouts)):
        raise ValueError(
            f"weights, masks and layouts must align; got {len(w)}, {len(m)}, {len(layouts)}"
        )
    if factorized is not None and len(w) != len(factorized.cores):
        raise ValueError(
            f"weights must be the {len(factorized.cores)} cores of factorized; got {len(w)}"
        )
    rms = [math.sqrt(float(np.mean(a * a))) for a in w]
    if factorized is None:
        stds = rms
    else:
        dense = np.asarray(to_numpy(factorized.with_cores(w).to_dense()), dtype=np.float64)
        target = float(np.mean(dense * dense))  # σ²
        paths = path_counts(m, factorized)
        live = paths[paths > 0]
        base = math.prod(r * r for r in rms) * float(np.mean(live)) if live.size else 0.0
        c = (target / base) ** (1.0 / (2 * len(w))) if base > 0 else 1.0
        stds = [c * r for r in rms]
    out = []
    for a, mask, std, perm in zip(w, m, stds, layouts, strict=True):
        shape = a.shape if perm is None else tuple(a.shape[perm.index(i)] for i in range(a.ndim))
        if kind == "orthogonal":
            canon = mask if perm is None else np.transpose(mask, np.argsort(perm))
            draw = _orthogonal_box(canon, rng)
        else:
            draw = rng.standard_normal(shape)
        if perm is not None:
            draw = np.transpose(draw, perm)
        out.append(np.where(mask, std * draw, 0.0))
    return out


def _orthogonal_box(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A draw of ``mask``'s shape, zero outside the box of indices that keep an entry, inside it a
    Haar-orthogonal unfolding ``(prod of all axes but the last, last axis)`` with mean square 1."""
    keep = [
        np.flatnonzero(mask.any(axis=tuple(j for j in range(mask.ndim) if j != i)))
        for i in range(mask.ndim)
    ]
    box = tuple(len(k) for k in keep)
    out = np.zeros(mask.shape)
    if 0 in box:
        return out
    rows, cols = math.prod(box[:-1]), box[-1]
    g = rng.standard_normal((rows, cols))
    tall = rows >= cols
    q, r = np.linalg.qr(g if tall else g.T)
    q = q * np.sign(np.where(np.diag(r) == 0, 1.0, np.diag(r)))  # Haar: fix the signs of QR
    q = q if tall else q.T
    q = q * math.sqrt(rows * cols / min(rows, cols))  # mean square 1
    out[np.ix_(*keep)] = q.reshape(box)
    return out
