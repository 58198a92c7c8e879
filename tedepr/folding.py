"""When to fold a tensorized layer for inference: the planner's cost of its chain against the cost
of one dense product with the pre-contracted weight. Shared by both backends' ``finalize``."""

from __future__ import annotations

import numpy as np

from .contraction import plan_contraction
from .formats import Factorized, from_cores

__all__ = ["fold_costs"]


def fold_costs(f: Factorized, batch_size: int, strategy: str = "auto") -> tuple[float, float]:
    """``(unfolded, folded)`` cost, in the planner's FLOP-equivalents (`ContractionPlan.cost`), of
    ``x @ W`` for ``batch_size`` rows: ``f``'s own plan (with ``strategy``) vs the plan of the
    one-core network holding the dense ``W`` (a single ``(batch, N_in) @ (N_in, N_out)`` product).
    Only shapes are used."""
    if not isinstance(f, Factorized):
        raise TypeError(f"f must be a tedepr Factorized matrix; got {type(f).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    n_in, n_out = f.in_features, f.out_features
    unfolded = plan_contraction(f, batch_size, strategy).cost
    # a zero-strided view: a shape template that allocates nothing
    core = np.broadcast_to(np.zeros((), np.float32), (1, n_in, n_out, 1))
    folded = plan_contraction(from_cores("tt", [core], (n_in,), (n_out,)), batch_size, "chain").cost
    return float(unfolded), float(folded)
