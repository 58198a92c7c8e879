"""Layer-wise isometry oracle (the ``trainability-isometry`` score): the log participation ratio of
each matrix's squared singular values, from ``np.linalg.svd`` (not from Gram traces, as tedepr
computes it), summed over the matrices of a model given as dense reconstructions."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

__all__ = ["log_participation_svd", "isometry_objective_reference"]


def log_participation_svd(W: np.ndarray) -> float:
    """``log((Σ σ²)² / Σ σ⁴)`` of a 2-D matrix, σ its singular values."""
    s2 = np.linalg.svd(np.asarray(W, dtype=np.float64), compute_uv=False) ** 2
    return float(np.log(np.sum(s2) ** 2 / np.sum(s2**2)))


def isometry_objective_reference(
    params: Mapping[str, np.ndarray],
    matrices: Sequence[Callable[[Mapping[str, np.ndarray]], np.ndarray]],
) -> float:
    """``Σ_l log PR(W_l)`` where ``matrices[l](params)`` builds the l-th matrix (e.g. a
    ``to_dense`` of some cores, or a dense weight)."""
    return float(sum(log_participation_svd(build(params)) for build in matrices))
