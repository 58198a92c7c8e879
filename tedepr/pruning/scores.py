"""Pruning scores, registered by name, and the (iterative) pruning driver.

Each score is a small dataclass: ``importance(problem, masks, rng)`` returns ``name -> array`` (higher
= keep), computed with array-API operations from what the backend's `ScoringProblem` provides; the
fields say whether it needs data and how many rounds of the exponential schedule it runs. `prune`
runs the schedule and the global selection (`tedepr.pruning.selection.select`).

Registered: ``random``, ``magnitude``, ``snip`` (Lee et al. 2019), ``grasp`` (Wang et al. 2020),
``synflow`` (Tanaka et al. 2020), ``force`` (de Jorge et al. 2021), ``trainability`` — the TEDEPR
score (docs/method.md §6, §10): structured pruning of whole bond indices by connection sensitivity per
entry — and ``trainability-entries``, its entry-wise, progressive, connected-only variant.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np

from ..validation import check_seed
from .problem import ScoringProblem, canonical_order
from .selection import Guards, exponential_schedule, select

__all__ = [
    "Score",
    "register",
    "available",
    "get",
    "prune",
    "compute_scores",
    "Random",
    "Magnitude",
    "SNIP",
    "GraSP",
    "SynFlow",
    "FORCE",
    "Trainability",
    "TrainabilityEntries",
]

_REGISTRY: dict[str, type[Score]] = {}


def register(cls: type[Score]) -> type[Score]:
    """Class decorator: make a `Score` subclass available under ``cls.name``."""
    if not cls.name or cls.name in _REGISTRY:
        raise ValueError(f"score name {cls.name!r} is empty or already registered")
    _REGISTRY[cls.name] = cls
    return cls


def available() -> tuple[str, ...]:
    """Names of the registered scores."""
    return tuple(_REGISTRY)


def get(method: str | Score, **options: Any) -> Score:
    """A score instance by name (``options`` override its fields), or ``method`` itself."""
    if isinstance(method, Score):
        return replace(method, **options) if options else method
    if method not in _REGISTRY:
        raise ValueError(f"score must be one of {', '.join(map(repr, _REGISTRY))}; got {method!r}")
    return _REGISTRY[method](**options)


@dataclass(frozen=True)
class Score:
    """Base class. ``rounds`` > 1 runs the exponential schedule, rescoring the pruned network."""

    name: ClassVar[str] = ""
    needs_data: ClassVar[bool] = True
    rounds: int = 1
    #: guards applied at every selection; the default keeps one complete path per layer (no dead
    #: layer, SPEC §3); ``Guards.none()`` disables them
    guards: Guards | None = field(default_factory=Guards)

    def importance(
        self, problem: ScoringProblem, masks: Mapping[str, Any] | None, rng: np.random.Generator
    ) -> dict[str, Any]:
        raise NotImplementedError


def _ones(xp, weights):
    return {n: xp.ones(tuple(w.shape), dtype=xp.bool) for n, w in weights.items()}


@register
@dataclass(frozen=True)
class Random(Score):
    """Uniform random scores (seeded): the sanity baseline."""

    name: ClassVar[str] = "random"
    needs_data: ClassVar[bool] = False

    def importance(self, problem, masks, rng):
        xp = problem.xp
        weights = problem.weights()
        structure = problem.structure()
        out = {}
        # drawn in canonical name order and canonical layout, so both backends draw the same numbers
        for n in canonical_order(weights):
            shape, perm = tuple(weights[n].shape), structure[n].layout
            if perm is None:
                out[n] = xp.asarray(rng.random(shape), dtype=weights[n].dtype)
            else:
                canonical = tuple(shape[perm.index(i)] for i in range(len(shape)))
                draw = xp.asarray(rng.random(canonical), dtype=weights[n].dtype)
                out[n] = xp.permute_dims(draw, perm)
        return out


@register
@dataclass(frozen=True)
class Magnitude(Score):
    """``|θ|``."""

    name: ClassVar[str] = "magnitude"
    needs_data: ClassVar[bool] = False

    def importance(self, problem, masks, rng):
        xp = problem.xp
        return {n: xp.abs(w) for n, w in problem.weights().items()}


def _sensitivity(problem, masks):
    """``|θ ⊙ ∂L/∂w|`` at ``w = θ ⊙ m`` (SNIP when m = 1; FORCE's score on the pruned network)."""
    xp = problem.xp
    weights = problem.weights()
    grads = problem.loss_gradient(masks if masks is not None else _ones(xp, weights))
    return {n: xp.abs(weights[n] * grads[n]) for n in weights}


@register
@dataclass(frozen=True)
class SNIP(Score):
    """Connection sensitivity ``|θ ⊙ ∂L/∂θ|`` (Lee et al. 2019), one shot."""

    name: ClassVar[str] = "snip"

    def importance(self, problem, masks, rng):
        return _sensitivity(problem, None)


@register
@dataclass(frozen=True)
class GraSP(Score):
    """Gradient signal preservation (Wang et al. 2020): GraSP removes the largest ``−θ ⊙ Hg``, so the
    importance kept here is ``θ ⊙ Hg``."""

    name: ClassVar[str] = "grasp"

    def importance(self, problem, masks, rng):
        weights = problem.weights()
        hg = problem.hessian_gradient_product(_ones(problem.xp, weights))
        return {n: weights[n] * hg[n] for n in weights}


@register
@dataclass(frozen=True)
class SynFlow(Score):
    """Iterative synaptic flow (Tanaka et al. 2020): ``|θ ⊙ ∂R/∂θ|`` on the ``|θ|`` network with an
    all-ones input, rescored on the pruned network over 100 exponential rounds by default."""

    name: ClassVar[str] = "synflow"
    needs_data: ClassVar[bool] = False
    rounds: int = 100

    def importance(self, problem, masks, rng):
        xp = problem.xp
        weights = problem.weights()
        grads = problem.synflow_gradient(masks if masks is not None else _ones(xp, weights))
        out = {}
        for n, w in weights.items():
            g = xp.astype(grads[n], w.dtype) if grads[n].dtype != w.dtype else grads[n]
            # scored on the pruned |θ| network: a pruned entry has weight 0, so it stays pruned
            effective = w if masks is None else w * xp.astype(masks[n], w.dtype)
            out[n] = xp.abs(effective * g)
        return out


@register
@dataclass(frozen=True)
class FORCE(Score):
    """Foresight connection sensitivity (de Jorge et al. 2021): SNIP recomputed on the pruned network
    over an exponential schedule; pruned entries are rescored too and may come back."""

    name: ClassVar[str] = "force"
    rounds: int = 10

    def importance(self, problem, masks, rng):
        return _sensitivity(problem, masks)


@register
@dataclass(frozen=True)
class Trainability(Score):
    """TEDEPR's trainability (docs/method.md §6, §10): the fine grain prunes whole *bond indices* of
    the low-rank network's cores — lowering each rank where that costs least — ranked by their
    connection sensitivity per entry (``|θ ⊙ ∂L/∂w|`` summed over the entries an index carries, over
    their number; `tedepr.pruning.structured.select_bonds`), one shot on the unpruned low-rank
    network; what is kept is connected by construction and every layer keeps a path."""

    name: ClassVar[str] = "trainability"
    structured: ClassVar[bool] = True

    def importance(self, problem, masks, rng):
        return _sensitivity(problem, None)


@register
@dataclass(frozen=True)
class TrainabilityEntries(Score):
    """The entry-wise TEDEPR candidate (docs/method.md §10): the connection sensitivity of the
    *pruned* low-rank network, recomputed progressively on an exponential schedule (FORCE on the
    cores), keeping only connected entries (the ``connected`` guard) and one path per layer."""

    name: ClassVar[str] = "trainability-entries"
    rounds: int = 10
    guards: Guards | None = field(default_factory=lambda: Guards(keep_path=True, connected=True))

    def importance(self, problem, masks, rng):
        return _sensitivity(problem, masks)


def _check_finite(xp, scores, method):
    for n, s in scores.items():
        if not bool(xp.all(xp.isfinite(s))):
            raise FloatingPointError(
                f"score {method!r} produced NaN or infinite values for parameter {n!r}; check the "
                "model's initialisation and the scoring data (or use a data-free score)"
            )


def compute_scores(
    problem: ScoringProblem, method: str | Score = "snip", *, seed: int = 0, **options: Any
) -> dict[str, Any]:
    """One round of a score on the unpruned network: ``name -> importance`` (nothing is pruned)."""
    score = get(method, **options)
    if score.needs_data and not problem.has_data:
        raise ValueError(
            f"score {score.name!r} needs data; pass data batches (or use one of the "
            f"data-free scores: {', '.join(n for n, c in _REGISTRY.items() if not c.needs_data)})"
        )
    out = score.importance(problem, None, np.random.default_rng(check_seed(seed)))
    _check_finite(problem.xp, out, score.name)
    return out


def prune(
    problem: ScoringProblem,
    method: str | Score,
    keep: int,
    *,
    guards: Guards | None = None,
    rounds: int | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Masks keeping exactly ``keep`` entries of ``problem.weights()``, chosen by ``method``.

    ``rounds`` overrides the score's schedule length; ``guards`` overrides the score's own guards
    (``Guards.none()`` disables them). ``progress(k, rounds)`` is called after each round.
    """
    score = get(method)
    if rounds is not None:
        score = replace(score, rounds=rounds)
    if score.needs_data and not problem.has_data:
        raise ValueError(
            f"score {score.name!r} needs data; pass data batches (or a data-free score: "
            f"{', '.join(n for n, c in _REGISTRY.items() if not c.needs_data)})"
        )
    guards = guards if guards is not None else score.guards
    structure = problem.structure() if guards is not None else None
    xp = problem.xp
    total = sum(math.prod(w.shape) for w in problem.weights().values())
    if isinstance(keep, bool) or not isinstance(keep, int) or not 0 < keep <= total:
        raise ValueError(f"keep must be an int in [1, {total}]; got {keep!r}")
    rng = np.random.default_rng(check_seed(seed))
    if getattr(score, "structured", False):
        from .structured import select_bonds

        imp = score.importance(problem, None, rng)
        _check_finite(xp, imp, score.name)
        masks = select_bonds(imp, keep, problem.structure(), xp=xp)
        if progress is not None:
            progress(1, 1)
        return masks
    masks = None
    schedule = exponential_schedule(keep / total, score.rounds)
    for k, density in enumerate(schedule, start=1):
        count = keep if k == len(schedule) else max(keep, round(density * total))
        imp = score.importance(problem, masks, rng)
        _check_finite(xp, imp, score.name)
        masks = select(imp, count, structure=structure, guards=guards, xp=xp)
        if progress is not None:
            progress(k, len(schedule))
    return masks
