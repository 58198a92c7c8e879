"""Backend-neutral pruning: score math, global selection with structural guards, schedules."""

from . import scores
from .problem import CoreInfo, ScoringProblem
from .scores import available, compute_scores, prune
from .selection import Guards, count_kept, effective_ranks, exponential_schedule, select

__all__ = [
    "CoreInfo",
    "Guards",
    "ScoringProblem",
    "available",
    "compute_scores",
    "count_kept",
    "effective_ranks",
    "exponential_schedule",
    "prune",
    "scores",
    "select",
]
