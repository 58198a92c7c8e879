"""Pruning scores, registered by name, and the (iterative) pruning driver.

Each score is a small dataclass: ``importance(problem, masks, rng)`` returns ``name -> array`` (higher
= keep), computed with array-API operations from what the backend's `ScoringProblem` provides; the
fields say whether it needs data and how many rounds of the exponential schedule it runs. `prune`
runs the schedule and the global selection (`tedepr.pruning.selection.select`).

Registered: ``random``, ``magnitude``, ``snip`` (Lee et al. 2019), ``grasp`` (Wang et al. 2020),
``synflow`` (Tanaka et al. 2020), ``force`` (de Jorge et al. 2021), ``trainability`` — the TEDEPR
score (docs/method.md §6, §10): structured pruning of whole bond indices by connection sensitivity per
entry — and ``trainability-entries``, its entry-wise, progressive, connected-only variant; the research
candidates of docs/method.md §10 (``trainability-modes`` … ``trainability-orth``, the
``trainability-coarse-*`` ablations, and the layer-wise isometry scores ``trainability-isometry`` /
``trainability-isometry-exact``, `tedepr.pruning.isometry`). Stronger baselines
(docs/method.md, "Baselines"): ``erk`` (random with ERK layer-wise densities; Liu et al. 2022),
``prospr`` (meta-gradients through SGD steps; Alizadeh et al. 2022) and ``ntksap`` (NTK-trace
saliency; Wang et al. 2023).
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
    "TrainabilityModes",
    "TrainabilityInModes",
    "TrainabilityQuietModes",
    "TrainabilityReinit",
    "TrainabilityOrthogonal",
    "TrainabilityIsometry",
    "TrainabilityIsometryExact",
    "TrainabilityIsometryOrthogonal",
    "ERK",
    "ProsPr",
    "NTKSAP",
    "erk_counts",
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
    #: which mode slices of the TT/TR cores are units too, besides the bond indices:
    #: "none", "in", "out" or "inout" (`tedepr.pruning.structured.select_bonds`)
    modes: str = "none"
    #: with ``modes``: a mode slice is a unit only if its mean score is below ``quiet`` times its
    #: core's mean (None: every slice)
    quiet: float | None = None
    #: "none" (the norm rescale of §8), or re-draw the kept entries at the target variance of their
    #: surviving paths: "gaussian" / "orthogonal" (`tedepr.pruning.rescale.mask_aware_init`;
    #: applied by `tedepr.compress`)
    reinit: str = "none"
    #: layers (canonical names) left to the coarse grain alone: their ranks are allocated to
    #: their share of the kept count (oversample 1, `tedepr.compress` reads this) and none of
    #: their entries is pruned; the other layers keep the global split (docs/method.md §10, Round 5)
    coarse: tuple[str, ...] = ()

    def __post_init__(self):
        from .structured import MODE_OPTIONS

        if not isinstance(self.coarse, tuple) or not all(
            isinstance(c, str) and c for c in self.coarse
        ):
            raise TypeError(f"coarse must be a tuple of layer names (str); got {self.coarse!r:.60}")

        if not isinstance(self.modes, str) or self.modes not in MODE_OPTIONS:
            raise ValueError(
                f"modes must be one of {', '.join(map(repr, MODE_OPTIONS))}; got {self.modes!r:.40}"
            )
        if self.quiet is not None and (
            isinstance(self.quiet, bool)
            or not isinstance(self.quiet, (int, float))
            or not 0 < self.quiet <= 1
        ):
            raise ValueError(f"quiet must be None or a float in (0, 1]; got {self.quiet!r:.40}")
        from .rescale import REINIT_KINDS

        kinds = ("none", *REINIT_KINDS)
        if not isinstance(self.reinit, str) or self.reinit not in kinds:
            raise ValueError(
                f"reinit must be one of {', '.join(map(repr, kinds))}; got {self.reinit!r:.40}"
            )

    def importance(self, problem, masks, rng):
        scores = self.ranking(problem, rng)
        return exempt_layers(problem, scores, self.coarse) if self.coarse else scores

    def ranking(self, problem, rng):
        """The per-entry importance the units are ranked by, before the ``coarse`` layers are
        exempted (`importance`): connection sensitivity at the unpruned network."""
        return _sensitivity(problem, None)

    def unit_cost(self, problem):
        """An exact removal cost for `select_bonds` (``unit_cost``), or None: rank the units by
        their summed importance."""
        return None


def exempt_layers(problem, scores, layers):
    """``scores`` with every entry of the parameters of ``layers`` (canonical layer names) raised
    above every other score, so that a selection keeping at least as many entries keeps them all.
    Raises ``ValueError`` naming a layer that no scored parameter belongs to."""
    xp = problem.xp
    structure = problem.structure()
    from ..budget import layer_key

    owner = {n: layer_key(structure[n].layer if n in structure else n) for n in scores}
    layers = {layer_key(c) for c in layers}
    unknown = sorted(c for c in layers if c not in owner.values())
    if unknown:
        raise ValueError(
            f"coarse: no layer named {unknown[0]!r}; the layers are "
            f"{', '.join(sorted(set(owner.values())))}"
        )
    top = max(float(xp.max(s)) for s in scores.values())
    big = 2.0 * top + 1.0
    return {n: (s * 0 + big if owner[n] in layers else s) for n, s in scores.items()}


@register
@dataclass(frozen=True)
class TrainabilityModes(Trainability):
    """Round-4 candidate (docs/method.md §10): `Trainability` whose units are the bond indices
    *and* the input- and output-mode slices of the cores (a block of a layer's inputs or outputs),
    ranked together by connection sensitivity per entry."""

    name: ClassVar[str] = "trainability-modes"
    modes: str = "inout"


@register
@dataclass(frozen=True)
class TrainabilityInModes(Trainability):
    """Round-4 candidate (docs/method.md §10): `Trainability` whose units are the bond indices and
    the *input*-mode slices of the cores (blocks of each layer's inputs; no output is cut)."""

    name: ClassVar[str] = "trainability-inmodes"
    modes: str = "in"


@register
@dataclass(frozen=True)
class TrainabilityQuietModes(Trainability):
    """Round-4 candidate (docs/method.md §10): as ``trainability-inmodes``, but only *quiet*
    input-mode slices — mean connection sensitivity below half their core's mean (on MNIST: the
    bands of blank border pixels) — may be removed whole."""

    name: ClassVar[str] = "trainability-quietmodes"
    modes: str = "in"
    quiet: float | None = 0.5


@register
@dataclass(frozen=True)
class TrainabilityReinit(Trainability):
    """Round-4 candidate (docs/method.md §10): `Trainability`'s masks, then the kept entries are
    re-drawn so that every live entry of each reconstructed weight has the init's target variance
    given its surviving paths (the exact init of the smaller network), instead of the norm rescale."""

    name: ClassVar[str] = "trainability-reinit"
    reinit: str = "gaussian"


@register
@dataclass(frozen=True)
class TrainabilityOrthogonal(Trainability):
    """Round-4 candidate (docs/method.md §10): as ``trainability-reinit``, the kept entries re-drawn
    at the target variance of their surviving paths, but each core's kept block drawn orthogonal
    (Haar-random orthonormal columns of its left unfolding) instead of i.i.d. Gaussian."""

    name: ClassVar[str] = "trainability-orth"
    reinit: str = "orthogonal"


@register
@dataclass(frozen=True)
class TrainabilityIsometry(Trainability):
    """Round-6 candidate (docs/method.md §10): `Trainability`'s structured units (whole bond
    indices), budget and guards, ranked by their first-order effect on layer-wise dynamical
    isometry (Lee et al. 2020) instead of the loss: the importance of an entry is
    ``θ ⊙ ∂J/∂w`` with ``J = Σ_l log PR(W_l)`` the log participation ratio of each reconstructed
    weight's squared singular values (`tedepr.pruning.isometry`), so a unit's summed importance
    is the first-order drop of ``J`` its removal causes and the bonds whose removal spreads the
    spectra least go first. Data-free and deterministic."""

    name: ClassVar[str] = "trainability-isometry"
    needs_data: ClassVar[bool] = False

    def ranking(self, problem, rng):
        from ..namespace import to_numpy
        from .isometry import isometry_gradient
        from .selection import _like

        xp = problem.xp
        weights = problem.weights()
        host = {n: to_numpy(w).astype(np.float64) for n, w in weights.items()}
        grads = isometry_gradient(host, problem.structure())
        return {n: xp.astype(_like(xp, host[n] * grads[n], w), w.dtype) for n, w in weights.items()}


@register
@dataclass(frozen=True)
class TrainabilityIsometryExact(TrainabilityIsometry):
    """Round-6 candidate (docs/method.md §10): as ``trainability-isometry``, but the greedy removes
    the bond unit whose removal *exactly* costs the least ``log PR`` of its layer per entry, at the
    masks so far (`tedepr.pruning.isometry.removal_cost`: the layer rebuilt with the unit zeroed;
    every removal re-prices its layer's units); dense entries and the partial last unit use the
    first-order scores."""

    name: ClassVar[str] = "trainability-isometry-exact"

    def unit_cost(self, problem):
        from ..budget import layer_key
        from ..namespace import to_numpy
        from .isometry import removal_cost

        structure = problem.structure()
        host = {n: to_numpy(w).astype(np.float64) for n, w in problem.weights().items()}
        exact = removal_cost(host, structure)
        exempt = {layer_key(c) for c in self.coarse}

        def cost(masks, parts):  # an exempt layer's units keep their raised scores
            info = structure.get(parts[0][0])
            return None if info and layer_key(info.layer) in exempt else exact(masks, parts)

        return cost


@register
@dataclass(frozen=True)
class TrainabilityIsometryOrthogonal(TrainabilityIsometryExact):
    """Round-6 candidate (docs/method.md §10): ``trainability-isometry-exact``'s masks, then the
    kept cores re-drawn orthogonal at the target variance of their surviving paths (as
    ``trainability-orth``): isometry in the cut and in the values, the pairing Lee et al. (2020)
    recommend (prune, then restore approximate isometry of the kept weights)."""

    name: ClassVar[str] = "trainability-isometry-orth"
    reinit: str = "orthogonal"


@register
@dataclass(frozen=True)
class TrainabilityLookahead(Trainability):
    """Round-8 candidate (docs/method.md §10): `Trainability`'s structured units (whole bond
    indices), budget and guards, ranked by ProsPr's look-ahead saliency instead of the saliency at
    init: ``|θ ⊙ ∂L(w_M)/∂w_0|`` after ``steps`` SGD steps of ``lr`` differentiated through
    (`ProsPr`, Alizadeh et al. 2022) — a bond index is kept for what it does to the loss once
    training has started, not at the random init."""

    name: ClassVar[str] = "trainability-lookahead"
    steps: int = 3
    lr: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        ProsPr(steps=self.steps, lr=self.lr)  # the same argument checks

    def ranking(self, problem, rng):
        return ProsPr(steps=self.steps, lr=self.lr).importance(problem, None, rng)


@register
@dataclass(frozen=True)
class TrainabilityNTK(Trainability):
    """Round-8 candidate (docs/method.md §10): `Trainability`'s structured units, budget and guards,
    ranked by NTK-SAP's saliency of the NTK trace (`NTKSAP`, Wang et al. 2023), averaged over
    ``draws`` independent re-initialisations at the unpruned network (one shot): which bond
    indices — of which bonds, in which layers — carry the most of the network's NTK trace per
    entry, i.e. how fast the network can move under gradient descent. Data-free; needs the input
    shape."""

    name: ClassVar[str] = "trainability-ntk"
    needs_data: ClassVar[bool] = False
    draws: int = 8
    eps: float = 0.01
    samples: int = 100

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.draws, bool) or not isinstance(self.draws, int) or self.draws < 1:
            raise ValueError(f"draws must be a positive int; got {self.draws!r}")
        NTKSAP(eps=self.eps, samples=self.samples)  # the same argument checks

    def ranking(self, problem, rng):
        one = NTKSAP(eps=self.eps, samples=self.samples)
        draws = [one.importance(problem, None, rng) for _ in range(self.draws)]
        return {n: sum(d[n] for d in draws) / self.draws for n in draws[0]}


@register
@dataclass(frozen=True)
class TrainabilityNTKOrthogonal(TrainabilityNTK):
    """Round-8 candidate (docs/method.md §10): ``trainability-ntk``'s masks, then the kept cores
    re-drawn orthogonal at the target variance of their surviving paths (as ``trainability-orth``)."""

    name: ClassVar[str] = "trainability-ntk-orth"
    reinit: str = "orthogonal"


@register
@dataclass(frozen=True)
class TrainabilityCoarseHidden0(Trainability):
    """Round-5 ablation (docs/method.md §10): `Trainability` with the zoo MLP's first layer
    (``hidden.0``) left to the coarse grain alone (oversample 1, nothing pruned in it)."""

    name: ClassVar[str] = "trainability-coarse-hidden0"
    coarse: tuple[str, ...] = ("hidden.0",)


@register
@dataclass(frozen=True)
class TrainabilityCoarseHidden1(Trainability):
    """Round-5 ablation: as ``trainability-coarse-hidden0`` for the second layer (``hidden.1``)."""

    name: ClassVar[str] = "trainability-coarse-hidden1"
    coarse: tuple[str, ...] = ("hidden.1",)


@register
@dataclass(frozen=True)
class TrainabilityCoarseClassifier(Trainability):
    """Round-5 ablation: as ``trainability-coarse-hidden0`` for the classifier (``classifier``)."""

    name: ClassVar[str] = "trainability-coarse-classifier"
    coarse: tuple[str, ...] = ("classifier",)


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
        masks = select_bonds(
            imp,
            keep,
            problem.structure(),
            modes=getattr(score, "modes", "none"),
            quiet=getattr(score, "quiet", None),
            xp=xp,
            unit_cost=score.unit_cost(problem) if hasattr(score, "unit_cost") else None,
        )
        if progress is not None:
            progress(1, 1)
        return masks
    masks = None
    schedule = exponential_schedule(keep / total, score.rounds)
    for k, density in enumerate(schedule, start=1):
        count = keep if k == len(schedule) else max(keep, round(density * total))
        if getattr(score, "needs_keep", False):  # a score that needs the round's target (erk)
            imp = score.importance(problem, masks, rng, keep=count)
        else:
            imp = score.importance(problem, masks, rng)
        _check_finite(xp, imp, score.name)
        masks = select(imp, count, structure=structure, guards=guards, xp=xp)
        if progress is not None:
            progress(k, len(schedule))
    return masks


# ----------------------------------------------------------------------------- stronger baselines
# (docs/method.md, "Baselines"). Random draws are made in canonical name order and canonical layout,
# as `Random` does, so that both backends draw the same numbers for the same weights.


def _canonical_shape(shape, perm):
    return shape if perm is None else tuple(shape[perm.index(i)] for i in range(len(shape)))


def _to_layout(canonical: np.ndarray, perm) -> np.ndarray:
    return canonical if perm is None else np.transpose(canonical, perm)


def erk_counts(shapes: Mapping[str, tuple[int, ...]], keep: int) -> dict[str, int]:
    """Entries kept per array under Erdős–Rényi-Kernel densities (Evci et al. 2020; Liu et al. 2022).

    The density of an array of shape ``s`` is ``ε · sum(s) / prod(s)`` (for a Linear ``(out, in)``:
    ``ε (in + out) / (in · out)``; for a conv kernel or a tensor core, the same over every axis), with
    ``ε`` chosen so that the kept total is ``keep``; an array whose density would exceed 1 is kept
    dense and ``ε`` is re-solved for the rest. The real-valued counts are rounded by largest
    remainder (ties in canonical name order), so they sum to exactly ``keep``.
    """
    names = canonical_order(shapes)
    sizes = {n: math.prod(shapes[n]) for n in names}
    total = sum(sizes.values())
    if isinstance(keep, bool) or not isinstance(keep, int) or not 0 <= keep <= total:
        raise ValueError(f"keep must be an int in [0, {total}]; got {keep!r}")
    raw = {n: sum(shapes[n]) / sizes[n] for n in names}
    dense: set[str] = set()
    while True:
        rest = [n for n in names if n not in dense]
        budget = keep - sum(sizes[n] for n in dense)
        denom = sum(raw[n] * sizes[n] for n in rest)
        eps = budget / denom if denom > 0 else 0.0
        over = [n for n in rest if eps * raw[n] > 1.0]
        if not over:
            break
        dense.add(max(over, key=lambda n: raw[n]))  # the densest first, then re-solve
    real = {n: float(sizes[n]) if n in dense else eps * raw[n] * sizes[n] for n in names}
    counts = {n: min(sizes[n], math.floor(real[n])) for n in names}
    short = keep - sum(counts.values())
    order = sorted(
        (n for n in names if counts[n] < sizes[n]),
        key=lambda n: (-(real[n] - counts[n]), names.index(n)),
    )
    for n in order[:short]:
        counts[n] += 1
    return counts


@register
@dataclass(frozen=True)
class ERK(Score):
    """Random pruning with Erdős–Rényi-Kernel layer-wise densities (Liu et al., ICLR 2022, "The
    Unreasonable Effectiveness of Random Sparse Training"; ERK from Evci et al. 2020, RigL).

    Each prunable array keeps `erk_counts` entries, chosen uniformly at random inside the array. The
    per-array quotas go through the global selection unchanged: the quota's entries score ``1 + u``
    and the others ``u · 1e-6`` (``u`` uniform in [0, 1)), so a selection of exactly ``keep`` entries
    takes every quota (guard reservations, which are kept first, can displace a few quota entries —
    the total stays exact). Data-free, one shot. ``prune`` passes the target ``keep``; for
    `compute_scores` give ``density=`` (the kept fraction).
    """

    name: ClassVar[str] = "erk"
    needs_data: ClassVar[bool] = False
    #: `prune` passes ``keep=`` (the round's target count) to `importance`
    needs_keep: ClassVar[bool] = True
    density: float | None = None

    def __post_init__(self):
        if self.density is not None and (
            isinstance(self.density, bool)
            or not isinstance(self.density, (int, float))
            or not 0.0 < self.density <= 1.0
        ):
            raise ValueError(f"density must be a float in (0, 1]; got {self.density!r}")

    def importance(self, problem, masks, rng, keep: int | None = None):
        xp = problem.xp
        weights = problem.weights()
        structure = problem.structure()
        shapes = {n: tuple(w.shape) for n, w in weights.items()}
        if keep is None:
            if self.density is None:
                raise ValueError(
                    "score 'erk' needs its target: prune() passes keep=, or give density= (the "
                    "kept fraction in (0, 1]) to compute_scores"
                )
            keep = round(self.density * sum(math.prod(s) for s in shapes.values()))
        counts = erk_counts(shapes, keep)
        out = {}
        for n in canonical_order(weights):
            perm = structure[n].layout
            u = rng.random(_canonical_shape(shapes[n], perm))
            flat = u.reshape(-1)
            imp = flat * 1e-6
            top = np.argsort(-flat, kind="stable")[: counts[n]]
            imp[top] = 1.0 + flat[top]
            out[n] = xp.asarray(_to_layout(imp.reshape(u.shape), perm), dtype=weights[n].dtype)
        return out


@register
@dataclass(frozen=True)
class ProsPr(Score):
    """Prospect pruning (Alizadeh et al., ICLR 2022): the meta-gradient ``|∂L(w_M)/∂m|`` at ``m`` (all
    ones in one shot), where ``w_0 = θ ⊙ m`` and ``w_{k+1} = w_k − lr ∇L_k(w_k)`` are ``steps`` plain
    SGD steps, differentiated through the steps (second order). Since ``w_0 = θ ⊙ m``, the score is
    ``|θ ⊙ ∂L(w_M)/∂w_0|`` (`ScoringProblem.lookahead_gradient`).

    Defaults are those of the paper and its public code: ``steps=3``, ``lr=0.1`` (its SGD training
    learning rate), one shot (``rounds=1``; ``rounds > 1`` rescores the pruned network on the
    exponential schedule, as FORCE does). Step ``k`` uses scoring batch ``k mod B`` and the final loss
    batch ``steps mod B`` — with one batch (the default of `compress` and of the paper's code) every
    step and the final loss use the same batch. Deviation: only the prunable weights take the steps;
    biases and normalisation parameters stay at their initial values.
    """

    name: ClassVar[str] = "prospr"
    steps: int = 3
    lr: float = 0.1

    def __post_init__(self):
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"steps must be a non-negative int; got {self.steps!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"lr must be a positive float; got {self.lr!r}")

    def importance(self, problem, masks, rng):
        xp = problem.xp
        weights = problem.weights()
        m = masks if masks is not None else _ones(xp, weights)
        grads = problem.lookahead_gradient(m, self.steps, float(self.lr))
        return {n: xp.abs(weights[n] * grads[n]) for n in weights}


@register
@dataclass(frozen=True)
class NTKSAP(Score):
    """NTK-SAP (Wang et al., ICLR 2023): the saliency ``|∂R/∂m|`` of the finite-difference estimate of
    the NTK trace, ``R(m) = mean_x ||f(x; θ'⊙m) − f(x; (θ' + εΔ)⊙m)||²``
    (`ScoringProblem.ntk_perturbation_gradient`), data-agnostic and iterative.

    Every round draws, in canonical name order and layout: a fresh re-initialisation
    ``θ' ~ N(0, σ²)`` of each prunable array, σ the standard deviation of its current weights (a layer
    does not know its initialiser; "multi-sampling"), then ``Δ ~ N(0, 1)`` per array, then
    ``samples`` Gaussian inputs ``x ~ N(0, I)``. Entries already pruned score 0
    (the paper's ``|∂R/∂m| · [m ≠ 0]``), so they stay pruned. Defaults: ``eps=0.01`` and 100 inputs
    per round (the paper's code: 10 × classes), ``rounds=20`` on the exponential schedule (the paper
    uses 100; 20 keeps it CPU-friendly). Biases and normalisation keep their current values;
    normalisation runs in eval mode. Data-free; needs the input shape.
    """

    name: ClassVar[str] = "ntksap"
    needs_data: ClassVar[bool] = False
    rounds: int = 20
    eps: float = 0.01
    samples: int = 100

    def __post_init__(self):
        if isinstance(self.eps, bool) or not isinstance(self.eps, (int, float)) or not self.eps > 0:
            raise ValueError(f"eps must be a positive float; got {self.eps!r}")
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 1:
            raise ValueError(f"samples must be a positive int; got {self.samples!r}")

    def draws(self, problem, rng):
        """The round's random arrays, as NumPy float64 in the backend's layout: ``(θ', θ' + εΔ, x)``."""
        from ..namespace import to_numpy

        weights = problem.weights()
        structure = problem.structure()
        names = canonical_order(weights)
        theta = {}
        for n in names:
            perm = structure[n].layout
            sigma = float(np.std(to_numpy(weights[n]).astype(np.float64)))
            draw = rng.standard_normal(_canonical_shape(tuple(weights[n].shape), perm)) * sigma
            theta[n] = _to_layout(draw, perm)
        perturbed = {}
        for n in names:
            perm = structure[n].layout
            delta = rng.standard_normal(_canonical_shape(tuple(weights[n].shape), perm))
            perturbed[n] = theta[n] + self.eps * _to_layout(delta, perm)
        input_shape = getattr(problem, "input_shape", None)
        if input_shape is None:
            raise ValueError(
                "score 'ntksap' needs the input shape of one sample: pass input_shape="
            )
        x = rng.standard_normal((self.samples, *tuple(input_shape)))
        return theta, perturbed, x

    def importance(self, problem, masks, rng):
        xp = problem.xp
        weights = problem.weights()
        m = masks if masks is not None else _ones(xp, weights)
        theta, perturbed, x = self.draws(problem, rng)
        grads = problem.ntk_perturbation_gradient(m, theta, perturbed, x)
        out = {}
        for n, w in weights.items():
            g = xp.abs(grads[n])
            g = xp.astype(g, w.dtype) if g.dtype != w.dtype else g
            out[n] = g if masks is None else g * xp.astype(masks[n], w.dtype)
        return out
