"""Variance-restoring rescale of the kept entries after pruning (docs/method.md §8).

Pruning shrinks a layer's weight; at extreme sparsity the network's signal all but vanishes and
training starts slowly. The fix measured best is exact: scale the kept entries so that every layer's
(reconstructed) weight has the Frobenius norm — hence the empirical variance — of its unpruned init.
A dense weight is scaled by ``‖W‖ / ‖W ⊙ m‖``; the ``n`` cores of a tensorized layer each by the
``n``-th root of the same ratio computed on the reconstructed matrices.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..formats import Factorized
from ..namespace import get_namespace

__all__ = ["restoring_scales"]


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
