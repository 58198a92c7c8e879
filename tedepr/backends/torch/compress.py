"""`compress` and `score` for PyTorch models: tensorize (coarse grain), score and mask (fine grain).

The budget is counted on the *dense* model (SPEC §5): ``keep = round((1 − sparsity) · dense weights)``.
The coarse grain tensorizes every eligible layer and allocates its ranks to a core budget
(`tedepr.budget.allocate_ranks`, `tedepr.compression.core_budget`): ``oversample`` times the layers'
share of ``keep`` when a score prunes afterwards, the whole of ``keep`` for low-rank only
(``score=None``, never over budget). The fine grain then keeps exactly ``keep`` entries over all
cores, chosen globally by the score under the structural guards (no dead layer).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from ...budget import tensorize_within
from ...compression import check_alive, core_budget, resolve_budget, skip_pruning
from ...pruning import Guards, effective_ranks, prune
from ...pruning.connectivity import analyse
from ...pruning.rescale import restoring_scales
from ...report import DEFAULT_OVERSAMPLE, Report, layer_row
from .masking import apply_masks, prunable_parameters
from .scoring import TorchScoringProblem

__all__ = [
    "CompressionResult",
    "compress",
    "score",
    "dense_weight_count",
    "build_report",
    "DEFAULT_OVERSAMPLE",
]


@dataclass
class CompressionResult:
    """``model``: the compressed, masked, ready-to-train model; ``report``: a `tedepr.report.Report`;
    ``masks``: ``name -> bool tensor`` as applied."""

    model: torch.nn.Module
    report: Report
    masks: dict[str, torch.Tensor]


def dense_weight_count(model: torch.nn.Module) -> int:
    """Weights of the model counted as SPEC §5 says (tensorized layers count their dense equivalent)."""
    total = 0
    for name, p in prunable_parameters(model).items():
        module_name = name.rpartition(".")[0]
        module = model.get_submodule(module_name) if module_name else model
        if callable(getattr(module, "factorized", None)):
            continue
        total += p.numel()
    for module in model.modules():
        if callable(getattr(module, "factorized", None)):
            total += module.factorized().dense_params
    return total


def _other_params(model, prunable) -> int:
    ids = {id(p) for p in prunable.values()}
    return sum(p.numel() for p in model.parameters() if id(p) not in ids)


def _class_name(module) -> str:
    # torch.nn.utils.parametrize swaps in a subclass named "Parametrized<Name>"
    cls = type(module)
    if torch.nn.utils.parametrize.is_parametrized(module):
        cls = cls.__mro__[1]
    return cls.__name__


def build_report(
    model: torch.nn.Module,
    masks: dict[str, torch.Tensor] | None,
    *,
    dense_weights: int,
    target_sparsity: float | None = None,
    method: str | None = None,
    structure=None,
) -> Report:
    """Per-layer accounting of a (masked) model; tensorized layers report modes, ranks and FLOPs."""
    params = prunable_parameters(model)
    by_module: dict[str, list[str]] = {}
    for name in params:
        by_module.setdefault(name.rpartition(".")[0], []).append(name)
    live = effective_ranks(masks, structure) if (masks and structure) else {}
    liveness = analyse(masks, structure) if (masks and structure) else {}
    rows = []
    for module_name, names in by_module.items():
        module = model.get_submodule(module_name) if module_name else model
        total = sum(params[n].numel() for n in names)
        kept = total if masks is None else sum(int(masks[n].sum()) for n in names)
        f = module.factorized() if callable(getattr(module, "factorized", None)) else None
        live_here = {n.rpartition(".")[2]: live[n] for n in names if n in live}
        rows.append(
            layer_row(
                module_name,
                _class_name(module),
                kept,
                total,
                f,
                strategy=getattr(module, "strategy", "auto"),
                effective_ranks=live_here,
                liveness=liveness.get(module_name),
            )
        )
    return Report(
        rows,
        dense_weights=dense_weights,
        other_params=_other_params(model, params),
        target_sparsity=target_sparsity,
        method=method,
    )


def compress(
    model: torch.nn.Module,
    data=None,
    sparsity: float = 0.99,
    format: str | None = "tt",
    rank=None,
    score: str | None = "trainability",
    *,
    oversample: float = DEFAULT_OVERSAMPLE,
    guards: Guards | None = None,
    rounds: int | None = None,
    num_batches: int = 1,
    seed: int = 0,
    input_shape=None,
    loss_fn=None,
    rescale: bool = True,
    tensorize_options: dict[str, Any] | None = None,
    progress=None,
) -> CompressionResult:
    """Compress ``model`` to ``sparsity`` of its dense weights, before training.

    Parameters
    ----------
    model : nn.Module (not modified)
    data : DataLoader, iterable of (x, y) batches, (x, y), or None (data-free scores only)
    sparsity : float in [0, 1)
        Fraction of the dense model's weights removed (whole model, SPEC §5).
    format : "tt", "tr", "tucker", "cp", or None
        None prunes the dense model (the pruning-at-initialization baselines).
    rank : int, tuple, float or None
        Ranks of the tensorized layers; None solves them from the budget with ``oversample``.
    score : a registered score name (`tedepr.scores.available()`), or None
        None keeps every core entry (low-rank only): the ranks are then allocated to the whole
        budget (``BudgetError`` when it cannot be met, e.g. a user-given rank over budget).
    oversample : float >= 1
        Coarse/fine split: the cores hold ``oversample`` times the kept count before pruning.
    guards : Guards, optional
        Override the score's structural guards (`Guards.none()` disables them).
    rounds : int, optional
        Override the score's number of schedule rounds.
    rescale : bool
        After pruning, scale the kept entries so that every layer's (reconstructed) weight keeps the
        Frobenius norm — hence the variance — of its unpruned init (docs/method.md §8). Applied alike
        to tensorized layers and dense weights (the baselines get it too).
    tensorize_options : dict
        Passed to `tensorize` (``min_params``, ``include``, ``exclude``, ``overrides`` …).
    progress : callable(k, rounds), optional
        Called after each scoring round.
    """
    from .tensorize import tensorize

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    dense = dense_weight_count(model)
    keep, rank = resolve_budget(dense, sparsity, format, score, rank, oversample, data is not None)
    notes: list[str] = []
    if format is None:
        cmodel = copy.deepcopy(model)
    else:
        options = dict(tensorize_options or {})
        if rank is None:
            # ranks allocated to the budget: every layer shares it, the small ones included
            options.setdefault("min_params", 0)
        cmodel = _tensorize_seeded(
            tensorize,
            model,
            format,
            rank,
            seed,
            options,
            core_budget(score, keep, dense, oversample),
            strict=score is None,
        )
    params = prunable_parameters(cmodel)
    total = sum(p.numel() for p in params.values())
    problem = None
    if skip_pruning(score, keep, total, notes):
        masks = None
    else:
        problem = TorchScoringProblem(
            cmodel, data, num_batches=num_batches, loss_fn=loss_fn, input_shape=input_shape
        )
        masks = prune(
            problem, score, keep, guards=guards, rounds=rounds, seed=seed, progress=progress
        )
        masks = {n: m.to(params[n].device) for n, m in masks.items()}
        if rescale:
            _rescale(cmodel, params, masks)
        apply_masks(cmodel, masks)
    structure = problem.structure() if problem is not None else None
    report = build_report(
        cmodel,
        masks,
        dense_weights=dense,
        target_sparsity=sparsity,
        method=score if format is None else f"{format}+{score}",
        structure=structure,
    )
    report.notes.extend(notes)
    check_alive(report)
    return CompressionResult(cmodel, report, masks or {})


def _factorized_layers(model) -> dict:
    return {
        name: m.factorized()
        for name, m in model.named_modules()
        if callable(getattr(m, "factorized", None))
    }


def _tensorize_seeded(tensorize, model, format, rank, seed, options, budget, *, strict):
    # the fresh cores are drawn from torch's RNG: seed it without disturbing the caller's stream
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if rank is not None:
            return tensorize(model, format=format, rank=rank, **options)
        cmodel, _, _ = tensorize_within(
            tensorize,
            _factorized_layers,
            model,
            format,
            budget,
            options,
            strict=strict,
            reseed=lambda: torch.manual_seed(seed),
        )
        return cmodel


def _rescale(model, params, masks):
    """Restore every layer's init norm after pruning (`tedepr.pruning.rescale`), in place."""
    groups: dict[str, list[str]] = {}
    for n in params:
        groups.setdefault(n.rpartition(".")[0], []).append(n)
    with torch.no_grad():
        for module_name, names in groups.items():
            module = model.get_submodule(module_name) if module_name else model
            f = module.factorized() if callable(getattr(module, "factorized", None)) else None
            if f is not None:
                prefix = f"{module_name}." if module_name else ""
                names = [f"{prefix}core_{k}" for k in range(len(f.cores))]
            scales = restoring_scales(
                [params[n].detach() for n in names], [masks[n] for n in names], f
            )
            for n, scale in zip(names, scales):
                params[n].mul_(scale)


def score(
    model: torch.nn.Module,
    data=None,
    method: str = "snip",
    *,
    num_batches: int = 1,
    seed: int = 0,
    input_shape=None,
    loss_fn=None,
    **options,
) -> dict[str, torch.Tensor]:
    """Per-parameter scores of ``model``'s prunable weights (higher = keep), nothing pruned."""
    from ...pruning import compute_scores

    problem = TorchScoringProblem(
        model, data, num_batches=num_batches, loss_fn=loss_fn, input_shape=input_shape
    )
    return compute_scores(problem, method, seed=seed, **options)
