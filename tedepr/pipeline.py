"""The TEDEPR compress pipeline, written once over a small adapter protocol.

`run_compress` is the whole method of `tedepr.compress`: argument checks, the dense weight count,
the budget, the seeded coarse grain (tensorize within the budget), the fine grain (score, prune,
rescale, masks), the report and the liveness check. It never touches a framework: each backend
hands it an object implementing `CompressAdapter` (``tedepr.backends.torch.compress.TorchAdapter``,
``tedepr.backends.jax.compress.JaxAdapter``), which does only what needs the framework — walk the
model, tensorize it, seed its RNG, build its `ScoringProblem`, read, scale and mask its weights.

The public entry points keep one signature: ``tedepr.compress`` / ``tedepr.score`` define it
(`tedepr.compression`), and every backend's ``compress`` / ``score`` is made from it by `bind`, so
the three never drift apart (``tests/test_pipeline.py`` compares them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .api import backend_entry
from .budget import BudgetError, tensorize_within
from .namespace import to_numpy
from .pruning import Guards, effective_ranks, prune
from .pruning.connectivity import analyse
from .pruning.problem import CoreInfo, ScoringProblem, canonical_name, canonical_order
from .pruning.rescale import mask_aware_init, restoring_scales
from .report import Report, layer_row
from .training import LOSSES  # the loss names of fit, the same for compress
from .validation import check_input_shape, check_int

__all__ = [
    "CompressAdapter",
    "DeadLayerError",
    "check_alive",
    "core_budget",
    "resolve_budget",
    "skip_pruning",
    "CompressionResult",
    "LayerWeights",
    "bind",
    "build_report",
    "counted_layers",
    "layer_counts",
    "LayerCount",
    "check_compress_args",
    "reinit_values",
    "restoring_factors",
    "run_compress",
    "run_score",
]


@dataclass
class CompressionResult:
    """What `tedepr.compress` returns, in every backend.

    ``model``: the compressed, masked, ready-to-train model (an ``nn.Module`` for torch; the JAX
    `Model` for JAX); ``report``: a `tedepr.report.Report`; ``masks``: ``{weight name: bool array}``
    as applied (empty when nothing was pruned); ``params``: the model's parameters where the
    framework keeps them apart from the model (JAX: the pytree, pruned entries exactly 0), else
    None (torch: the module holds them).
    """

    model: Any
    report: Report
    masks: dict[str, Any] = field(default_factory=dict)
    params: Any = None

    def apply(self, x, train: bool = False):
        """Run the masked model on the batch ``x`` (JAX: ``model.apply(params, x, masks)``;
        torch: ``model(x)`` in the mode the module is in — ``train`` applies to JAX only)."""
        if self.params is None:
            return self.model(x)
        return self.model.apply(self.params, x, self.masks or None, train=train)


@dataclass(frozen=True)
class LayerWeights:
    """One layer's prunable weights as the report and the rescale see them.

    ``weights``: the names of all its prunable weights (keys of `CompressAdapter.weights`);
    ``cores``: those that are the cores of ``factorized``, in core order (empty for a dense layer);
    ``kind``: the layer's class name; ``strategy``: its contraction strategy.
    """

    name: str
    kind: str
    weights: tuple[str, ...]
    factorized: Any = None
    cores: tuple[str, ...] = ()
    strategy: str = "auto"


@runtime_checkable
class CompressAdapter(Protocol):
    """What a backend provides to `run_compress` / `run_score` (and to `build_report`).

    A model is handled as ``(model, params)``: ``params`` is None where the model holds its own
    weights (torch). Weight names are the backend's own (``"hidden.0.core_1"`` /
    ``"hidden/0/cores/1"``); `tedepr.pruning.problem.canonical_name` maps them to one order.
    Called in the order of `run_compress` (docs/architecture.md, "Data flow of one compress call").
    """

    #: "torch" / "jax": used in error messages
    name: str

    def prepare(self, model: Any, params: Any, dtype: Any) -> tuple[Any, Any]:
        """Check ``model`` (a `TypeError` naming ``model``), ``params`` and ``dtype``; return the
        ``(model, params)`` to compress (the caller's objects are never changed)."""

    def dense_weight_count(self, model: Any) -> int:
        """Weights of the model as SPEC §5 counts them (tensorized layers: their dense size)."""

    def copy(self, model: Any) -> Any:
        """The model to prune when nothing is tensorized (``format=None``): a copy where the
        pipeline changes the model in place, the model itself where models are immutable."""

    def tensorize(self, model: Any, *, format: str, rank: Any, **options: Any) -> Any:
        """The backend's ``tensorize`` (a new model; ``options`` as ``tensorize_options``)."""

    def factorized_layers(self, model: Any) -> Mapping[str, Any]:
        """``{layer name: Factorized}`` of the tensorized layers, named as ``overrides`` globs
        match them (for `tedepr.budget.tensorize_within`)."""

    def seeded(self, seed: int) -> AbstractContextManager[Callable[[], None]]:
        """A context in which the fresh layers of `tensorize` are drawn from ``seed``, leaving the
        caller's RNG state as it was; it yields a ``reseed()`` that restarts the stream."""

    def init_params(self, source: Any, params: Any, model: Any, seed: int, dtype: Any) -> Any:
        """Params of ``model`` (``source`` after tensorizing): the given ``params`` of ``source``
        where a layer did not change, fresh ones from ``seed`` elsewhere (None for torch)."""

    def scoring_problem(
        self,
        model: Any,
        params: Any,
        data: Any,
        *,
        num_batches: int,
        loss_fn: Any,
        input_shape: tuple[int, ...] | None,
    ) -> ScoringProblem:
        """The backend's `ScoringProblem` over the model's prunable weights."""

    def weights(self, model: Any, params: Any) -> dict[str, Any]:
        """``{name: array}`` of every prunable weight, read-only views in the backend's layout
        (what the rescale reads and the report counts)."""

    def layers(self, model: Any, params: Any) -> list[LayerWeights]:
        """The prunable weights grouped by layer, in model order."""

    def structure(self, model: Any, params: Any) -> dict[str, CoreInfo]:
        """`CoreInfo` of every prunable weight (as the `ScoringProblem` gives it)."""

    def other_params(self, model: Any, params: Any) -> int:
        """Trainable parameters that are not prunable weights (biases, normalisation)."""

    def scale_weights(self, model: Any, params: Any, factors: Mapping[str, float]) -> Any:
        """Multiply each named weight by its factor; return the params (new ones where immutable)."""

    def replace_weights(self, model: Any, params: Any, values: Mapping[str, Any]) -> Any:
        """Set each named weight to the NumPy array ``values[name]`` (same shape, in the backend's
        layout, cast to the weight's dtype); return the params (new ones where immutable)."""

    def apply_masks(self, model: Any, params: Any, masks: Mapping[str, Any]) -> tuple[Any, dict]:
        """Fix the masks on the model (pruned entries exactly 0); return ``(params, masks)`` with
        the masks as the backend keeps them."""

    def compact(self, result: CompressionResult) -> CompressionResult:
        """The backend's ``compact(result)`` (dead bond indices removed; `tedepr.pruning.compact`):
        ``result`` itself when nothing can be compacted."""


# ----------------------------------------------------------------------------- budget, liveness
class DeadLayerError(ValueError):
    """Pruning left a layer with no complete input→output path: its weight is identically zero."""


def check_alive(report) -> None:
    """Raise `DeadLayerError` naming every layer of ``report`` that pruning left dead."""
    dead = [r.name for r in report.layers if r.live is False]
    if dead:
        raise DeadLayerError(
            f"pruning left {len(dead)} layer(s) with no complete input→output path (an all-zero "
            f"weight): {', '.join(dead)}; keep the structural guards on (the default: "
            "Guards(keep_path=True)) or lower the sparsity"
        )


def resolve_budget(
    dense: int,
    sparsity: float,
    format: str | None,
    score: str | None,
    rank,
    oversample: float,
    has_data: bool,
):
    """The shared first step of every backend's ``compress``: validate the request and solve the
    budget. Returns ``(keep, rank)``: the whole-model count of weights kept and the ranks for
    `tensorize` (``None``: allocate them to the budget with `core_budget`)."""
    from .pruning import scores as registry
    from .report import keep_count, low_rank_budget

    if dense == 0:
        raise ValueError(
            "model has no weights to compress: no eligible layer (Linear, Conv, "
            "recurrent, attention or tensorized)"
        )
    keep = keep_count(sparsity, dense)
    if score is not None:
        method = registry.get(score)  # validates the name before any work
        if method.needs_data and not has_data:
            free = ", ".join(
                repr(n) for n in registry.available() if not registry.get(n).needs_data
            )
            raise ValueError(
                f"score {score!r} needs data: pass data batches, or a data-free score ({free})"
            )
    if format is None:
        if score is None:
            raise ValueError(
                "format=None and score=None would leave the model unchanged; choose one"
            )
    else:
        low_rank_budget(sparsity, oversample)  # validates oversample
    return keep, rank


def core_budget(score: str | None, keep: int, dense: int, oversample: float):
    """The core budget of the coarse grain, as `tedepr.budget.tensorize_within` takes it: a function
    of the dense weights that get tensorized.

    - low-rank only (``score=None``): the cores get the whole budget minus the layers left dense,
      so the model holds at most ``keep`` weights (a `BudgetError` when it cannot);
    - with pruning: the cores get ``oversample`` times their share of ``keep`` (each tensorized
      layer's share is its dense size over the model's), and pruning takes the whole model to
      ``keep``.
    """

    def budget(dense_tensorized: int) -> int:
        left_dense = dense - dense_tensorized
        if score is None:
            if left_dense >= keep:
                raise BudgetError(
                    f"the layers left dense hold {left_dense:,} weights, the whole budget is "
                    f"{keep:,}: tensorize them too (tensorize_options={{'min_params': 0}})"
                )
            return keep - left_dense
        return max(1, round(oversample * keep * dense_tensorized / dense))

    return budget


def skip_pruning(score: str | None, keep: int, total: int, notes: list[str]) -> bool:
    """Whether the fine grain has nothing to do (no score, or the cores already fit the budget);
    when the low-rank model is below the target, say so in ``notes`` and in a warning. A low-rank-only
    model (``score=None``) over the budget is a `BudgetError`: an ablation over budget is no
    comparison."""
    if score is None and total > keep:
        raise BudgetError(
            f"the low-rank model holds {total:,} weights, over the budget of {keep:,}: pass rank=None "
            "(ranks allocated to the budget) or lower the ranks"
        )
    if score is not None and keep < total:
        return False
    if score is None:
        notes.append(f"low-rank only: {total:,} weights for a budget of {keep:,}")
    elif keep > total:
        notes.append(
            f"the low-rank model holds {total:,} weights, below the target {keep:,}: nothing pruned"
        )
        from .shapes import warn_user

        warn_user(notes[-1])
    return True


# ----------------------------------------------------------------------------- argument checks
def _check_loss(loss_fn: Any) -> None:
    if loss_fn is not None and not callable(loss_fn) and loss_fn not in LOSSES:
        raise ValueError(
            f"loss_fn must be None, one of {', '.join(map(repr, LOSSES))} or a callable "
            f"(logits, labels) -> mean loss; got {loss_fn!r:.40}"
        )


def _check_seed(seed: Any) -> int:
    # an int: it seeds the backend's RNG (torch.manual_seed, jax.random.key) as well as NumPy's
    if isinstance(seed, bool) or not hasattr(seed, "__index__"):
        raise TypeError(f"seed must be an int >= 0; got {type(seed).__name__} {seed!r:.40}")
    if int(seed) < 0:
        raise ValueError(
            f"seed must be an int >= 0 (it seeds the fresh cores, random scores and ties); got {seed}"
        )
    return int(seed)


def check_compress_args(
    *,
    format: Any,
    score: Any,
    rank: Any,
    guards: Any,
    rounds: Any,
    num_batches: Any,
    seed: Any,
    input_shape: Any,
    loss_fn: Any,
    rescale: Any,
    tensorize_options: Any,
    progress: Any,
) -> tuple[int, tuple[int, ...] | None]:
    """Every option of ``compress`` checked in one place: a `TypeError` for a wrong type, a
    `ValueError` for a wrong value, each naming the argument and what is allowed. (``sparsity`` and
    ``oversample`` are checked with the budget, `tedepr.compression.resolve_budget`; ``model``,
    ``params`` and ``dtype`` by the backend, `CompressAdapter.prepare`.) Returns ``(seed,
    input_shape)`` normalised."""
    from .pruning.scores import Score
    from .shapes import check_format

    if format is not None:
        check_format(format)
    if score is not None and not isinstance(score, (str, Score)):
        raise TypeError(
            f"score must be a registered score name (tedepr.scores.available()) or None; got "
            f"{type(score).__name__} {score!r:.40}"
        )
    if isinstance(rank, bool) or not (
        rank is None or isinstance(rank, (int, float, tuple, list)) or hasattr(rank, "__index__")
    ):
        raise TypeError(
            f"rank must be None (allocated to the budget), an int, a tuple of ints or a float in "
            f"(0, 1]; got {type(rank).__name__} {rank!r:.40}"
        )
    if guards is not None and not isinstance(guards, Guards):
        raise TypeError(
            f"guards must be a tedepr.Guards or None (the score's own); got {type(guards).__name__}"
        )
    if rounds is not None:
        check_int(rounds, "rounds")
    check_int(num_batches, "num_batches")
    seed = _check_seed(seed)
    input_shape = check_input_shape(input_shape)
    _check_loss(loss_fn)
    if not isinstance(rescale, bool):
        raise TypeError(f"rescale must be True or False; got {type(rescale).__name__}")
    if tensorize_options is not None and not isinstance(tensorize_options, Mapping):
        raise TypeError(
            "tensorize_options must be a dict of tensorize's keyword arguments (min_params, "
            f"include, exclude, overrides, ...) or None; got {type(tensorize_options).__name__}"
        )
    if progress is not None and not callable(progress):
        raise TypeError(
            f"progress must be None or a callable (round, rounds); got {type(progress).__name__}"
        )
    return seed, input_shape


# ----------------------------------------------------------------------------- the pipeline
def _redirect(adapter, model, entry: str):
    """The entry point that handles ``model`` instead of this pipeline, if the adapter names one
    (optional ``adapter.redirect(model, "compress" | "score")``: the JAX adapter hands a Flax NNX
    model to its bridge, which converts it and comes back here with a native model)."""
    redirect = getattr(adapter, "redirect", None)
    return redirect(model, entry) if redirect is not None else None


def run_compress(
    adapter: CompressAdapter,
    model,
    data,
    sparsity,
    format,
    score,
    *,
    rank,
    oversample,
    guards,
    rounds,
    num_batches,
    seed,
    input_shape,
    loss_fn,
    rescale,
    tensorize_options,
    progress,
    probe_data=None,
    probe_epochs=3,
    probe_fit=None,
    probe_draws=1,
    compact=True,
    params,
    dtype,
) -> CompressionResult:
    """The TEDEPR pipeline on ``adapter``'s model: see `tedepr.compress` for the arguments."""
    arguments = dict(locals())
    entry = _redirect(adapter, model, "compress")
    if entry is not None:
        return entry(**{k: v for k, v in arguments.items() if k != "adapter"})
    split_candidates = isinstance(oversample, bool) or not isinstance(oversample, (int, float))
    if split_candidates or probe_draws != 1:
        from .probe import compress_probed  # candidates: one pipeline run per split and draw

        return compress_probed(**arguments)
    if probe_data is not None or probe_epochs != 3 or probe_fit is not None:
        raise TypeError(
            "probe_data, probe_epochs and probe_fit only apply with candidates to probe: "
            "oversample a sequence of splits (e.g. oversample=(1.0, 2.0)) or probe_draws > 1"
        )
    if not isinstance(compact, bool):
        raise TypeError(f"compact must be True or False; got {type(compact).__name__}")
    seed, input_shape = check_compress_args(
        format=format,
        score=score,
        rank=rank,
        guards=guards,
        rounds=rounds,
        num_batches=num_batches,
        seed=seed,
        input_shape=input_shape,
        loss_fn=loss_fn,
        rescale=rescale,
        tensorize_options=tensorize_options,
        progress=progress,
    )
    source, params = adapter.prepare(model, params, dtype)
    dense = adapter.dense_weight_count(source)
    keep, rank = resolve_budget(dense, sparsity, format, score, rank, oversample, data is not None)
    with adapter.seeded(seed) as reseed:
        if format is None:
            cmodel = adapter.copy(source)
        else:
            options = dict(tensorize_options or {})
            if rank is not None:
                cmodel = adapter.tensorize(source, format=format, rank=rank, **options)
            else:
                # ranks allocated to the budget: every layer shares it, the small ones included
                options.setdefault("min_params", 0)
                # layers a score leaves to the coarse grain get oversample 1 (§10, Round 5)
                coarse = getattr(_score_object(score), "coarse", ())
                cmodel, _, _ = tensorize_within(
                    adapter.tensorize,
                    adapter.factorized_layers,
                    source,
                    format,
                    core_budget(score, keep, dense, oversample),
                    options,
                    strict=score is None,
                    reseed=reseed,
                    shares={c: 1.0 / oversample for c in coarse},
                )
        cparams = adapter.init_params(source, params, cmodel, seed, dtype)
    weights = adapter.weights(cmodel, cparams)
    total = sum(math.prod(w.shape) for w in weights.values())
    notes: list[str] = []
    masks, structure = None, None
    if not skip_pruning(score, keep, total, notes):
        problem = adapter.scoring_problem(
            cmodel,
            cparams,
            data,
            num_batches=num_batches,
            loss_fn=loss_fn,
            input_shape=input_shape,
        )
        masks = prune(
            problem, score, keep, guards=guards, rounds=rounds, seed=seed, progress=progress
        )
        structure = problem.structure()
        reinit = getattr(_score_object(score), "reinit", "none")
        if reinit != "none":
            # the kept entries re-drawn at the target variance of their surviving paths (§10):
            # replaces the norm rescale
            values = reinit_values(
                adapter.layers(cmodel, cparams), weights, masks, structure, seed, kind=reinit
            )
            cparams = adapter.replace_weights(cmodel, cparams, values)
        elif rescale:
            factors = restoring_factors(adapter.layers(cmodel, cparams), weights, masks)
            cparams = adapter.scale_weights(cmodel, cparams, factors)
        cparams, masks = adapter.apply_masks(cmodel, cparams, masks)
    elif getattr(_score_object(score), "reinit", "none") != "none":
        # nothing to prune (e.g. oversample=1: the low-rank network alone), but the score's
        # re-initialisation still applies, to every entry: the `lowrank-orth` control of §10
        layers = adapter.layers(cmodel, cparams)
        ones = {n: np.ones(tuple(w.shape), bool) for n, w in weights.items()}
        kind = _score_object(score).reinit
        values = reinit_values(
            layers, weights, ones, adapter.structure(cmodel, cparams), seed, kind
        )
        cparams = adapter.replace_weights(cmodel, cparams, values)
    report = build_report(
        adapter,
        cmodel,
        cparams,
        masks,
        dense_weights=dense,
        target_sparsity=sparsity,
        method=score if format is None else f"{format}+{score}",
        structure=structure,
    )
    report.notes.extend(notes)
    check_alive(report)
    result = CompressionResult(cmodel, report, masks or {}, cparams)
    return adapter.compact(result) if compact else result


def run_score(
    adapter: CompressAdapter,
    model,
    data,
    method,
    *,
    num_batches,
    seed,
    input_shape,
    loss_fn,
    params,
    dtype,
    **options,
) -> dict[str, Any]:
    """Per-weight scores of ``adapter``'s model, nothing pruned: see `tedepr.score`."""
    from .pruning import compute_scores

    entry = _redirect(adapter, model, "score")
    if entry is not None:
        return entry(
            model, data, method, num_batches=num_batches, seed=seed, input_shape=input_shape,
            loss_fn=loss_fn, params=params, dtype=dtype, **options,
        )  # fmt: skip

    check_int(num_batches, "num_batches")
    seed = _check_seed(seed)
    _check_loss(loss_fn)
    source, params = adapter.prepare(model, params, dtype)
    params = adapter.init_params(source, params, source, seed, dtype)
    problem = adapter.scoring_problem(
        source,
        params,
        data,
        num_batches=num_batches,
        loss_fn=loss_fn,
        input_shape=check_input_shape(input_shape),
    )
    return compute_scores(problem, method, seed=seed, **options)


def _score_object(score):
    from .pruning import scores as registry

    return registry.get(score) if score is not None else None


def reinit_values(
    layers: list[LayerWeights],
    weights: Mapping[str, Any],
    masks: Mapping[str, Any],
    structure: Mapping[str, CoreInfo],
    seed: int,
    kind: str = "gaussian",
) -> dict[str, Any]:
    """Fresh values of every masked weight by `tedepr.pruning.rescale.mask_aware_init` (docs/method.md
    §10, Round 4): layers in canonical name order, a tensorized layer's cores in core order, then
    its other weights in canonical order, all from one NumPy stream of ``seed`` — so both backends
    draw the same values for the same masks. ``kind``: "gaussian" or "orthogonal"."""
    rng = np.random.default_rng([seed, 0x7E1D])
    out: dict[str, Any] = {}
    for layer in sorted(layers, key=lambda lw: canonical_name(lw.name)):
        if layer.cores and all(n in masks for n in layer.cores):
            fresh = mask_aware_init(
                [weights[n] for n in layer.cores],
                [masks[n] for n in layer.cores],
                layer.factorized,
                rng,
                [structure[n].layout if n in structure else None for n in layer.cores],
                kind,
            )
            out.update(zip(layer.cores, fresh, strict=True))
        dense = [n for n in canonical_order(layer.weights) if n not in layer.cores and n in masks]
        for n in dense:
            layout = structure[n].layout if n in structure else None
            (out[n],) = mask_aware_init([weights[n]], [masks[n]], None, rng, [layout], kind)
    return out


def restoring_factors(
    layers: list[LayerWeights], weights: Mapping[str, Any], masks: Mapping[str, Any]
) -> dict[str, float]:
    """The factor of every masked weight that restores its layer's init norm after pruning
    (`tedepr.pruning.rescale`, docs/method.md §8): a tensorized layer's cores share one factor (the
    reconstructed weight keeps its norm); every other weight gets its own."""
    factors: dict[str, float] = {}
    for layer in layers:
        if layer.cores:
            scales = restoring_scales(
                [weights[n] for n in layer.cores], [masks[n] for n in layer.cores], layer.factorized
            )
            factors.update(zip(layer.cores, scales, strict=True))
        dense = [n for n in layer.weights if n not in layer.cores and n in masks]
        if dense:
            scales = restoring_scales([weights[n] for n in dense], [masks[n] for n in dense])
            factors.update(zip(dense, scales, strict=True))
    return factors


#: the packed query/key/value weight of a dense torch ``nn.MultiheadAttention``: ``[W_q; W_k; W_v]``
PACKED_IN_PROJ = "in_proj_weight"

#: the report kind of a dense affine map in every backend (torch's ``nn.Linear`` and its internal
#: subclasses, a packed attention's q/k/v rows; JAX's `Dense` and a dense attention's q/k/v maps):
#: one public name for the same layer, as the tensorized ones are ``TTLinear``, ... in both
LINEAR_KIND = "Linear"


@dataclass(frozen=True)
class LayerCount:
    """The weight counts of one report row, which is one `count_weights` layer in every backend.

    ``name``/``kind``: the row's name and kind; ``total``: its weight entries (core entries for a
    tensorized layer), ``kept``: those its masks keep; ``dense``: the entries of the dense map it
    stands for (``total`` for a dense one); ``layer``: the `LayerWeights` it counts; ``packed``: one
    projection of a dense attention's packed ``in_proj_weight`` (`layer_counts`).
    """

    name: str
    kind: str
    kept: int
    total: int
    dense: int
    layer: LayerWeights
    packed: bool = False


def layer_counts(
    layers: list[LayerWeights], shapes: Mapping[str, tuple], masks: Mapping[str, Any] | None
) -> list[LayerCount]:
    """The report rows' counts of a backend's ``layers`` (`CompressAdapter.layers`), with each
    weight's shape in ``shapes`` (names as in ``layers``) and ``masks`` (None, or bool arrays by
    weight name): one `LayerCount` per layer, of the layer's kind, but three for a dense attention's
    packed ``in_proj_weight`` (``(3E, in)``, rows ``[W_q; W_k; W_v]``): ``<layer>.q_proj`` /
    ``k_proj`` / ``v_proj`` (the layer's separator), of kind `LINEAR_KIND`, each counting its third
    of the mask, as a backend that holds the three maps apart (JAX) names them, and as a tensorized
    attention names them in both."""
    out = []
    for layer in layers:
        names = layer.weights
        cut = len(layer.name) + 1 if layer.name else 0  # a weight's name within its layer
        mask = {n: to_numpy(masks[n]) for n in names if masks and n in masks}
        if layer.factorized is None and [n[cut:] for n in names] == [PACKED_IN_PROJ]:
            shape, m = shapes[names[0]], mask.get(names[0])
            sep = names[0][len(layer.name)] if layer.name else ""
            size = shape[0] // 3
            total = size * math.prod(shape[1:])
            for k, proj in enumerate(("q_proj", "k_proj", "v_proj")):
                kept = total if m is None else int(m[k * size : (k + 1) * size].sum())
                name = f"{layer.name}{sep}{proj}"
                out.append(LayerCount(name, LINEAR_KIND, kept, total, total, layer, packed=True))
            continue
        total = sum(math.prod(shapes[n]) for n in names)
        kept = sum(int(mask[n].sum()) if n in mask else math.prod(shapes[n]) for n in names)
        dense = total if layer.factorized is None else layer.factorized.dense_params
        out.append(LayerCount(layer.name, layer.kind, kept, total, dense, layer))
    return out


def counted_layers(
    layers: list[LayerWeights], shapes: Mapping[str, tuple], masks: Mapping[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """The ``"layers"`` of every backend's ``count_weights``: ``{row name: {"type", "dense",
    "params", "kept"}}``, the name, kind and counts of the report's rows (`layer_counts`)."""
    return {
        c.name: {"type": c.kind, "dense": c.dense, "params": c.total, "kept": c.kept}
        for c in layer_counts(layers, shapes, masks)
    }


def build_report(
    adapter: CompressAdapter,
    model,
    params,
    masks: Mapping[str, Any] | None,
    *,
    dense_weights: int,
    target_sparsity: float | None = None,
    method: str | None = None,
    structure: Mapping[str, CoreInfo] | None = None,
) -> Report:
    """Per-layer accounting of a (masked) model: kept/total weights, modes, ranks and FLOPs of the
    tensorized layers, and — with masks — each layer's liveness and connected effective ranks."""
    weights = adapter.weights(model, params)
    if masks:
        structure = structure or adapter.structure(model, params)
        live, liveness = effective_ranks(masks, structure), analyse(masks, structure)
    else:
        live, liveness = {}, {}
    shapes = {n: tuple(w.shape) for n, w in weights.items()}
    rows = []
    for count in layer_counts(adapter.layers(model, params), shapes, masks):
        layer = count.layer
        if count.packed:
            # a dense map's liveness: live when it keeps an entry, one path per kept entry
            row = layer_row(count.name, count.kind, count.kept, count.total)
            if masks and layer.weights[0] in masks:
                row.live, row.paths = count.kept > 0, float(count.kept)
            rows.append(row)
            continue
        cut = len(layer.name) + 1 if layer.name else 0  # a weight's name within its layer
        rows.append(
            layer_row(
                layer.name,
                count.kind,
                count.kept,
                count.total,
                layer.factorized,
                strategy=layer.strategy,
                effective_ranks={n[cut:]: live[n] for n in layer.weights if n in live},
                liveness=liveness.get(layer.name),
            )
        )
    return Report(
        rows,
        dense_weights=dense_weights,
        other_params=adapter.other_params(model, params),
        target_sparsity=target_sparsity,
        method=method,
    )


# ----------------------------------------------------------------------------- entry points
def bind(front: Callable, adapter: CompressAdapter, module: str) -> Callable:
    """A backend's entry point made from the front door ``front`` (`tedepr.compression.compress`
    or ``.score``): the same signature without ``backend``, the same documentation, running
    ``front``'s pipeline on ``adapter`` (`tedepr.api.backend_entry`). Written once, so no backend
    can drift from it."""
    runner = {"compress": run_compress, "score": run_score}[front.__name__]

    def run(arguments: dict[str, Any]):
        arguments.update(arguments.pop("options", {}))
        return runner(adapter, **arguments)

    return backend_entry(front, run, module)
