"""Backend dispatch for the one-call entry points `tedepr.compress` and `tedepr.score`.

The backend is named (``backend="torch"`` / ``"jax"``) or inferred from the model's type among the
frameworks already imported; the backend module is imported only then.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from .budget import BudgetError

__all__ = [
    "BACKENDS",
    "BudgetError",
    "compress",
    "score",
    "backend_module",
    "resolve_budget",
    "core_budget",
    "skip_pruning",
    "DeadLayerError",
    "check_alive",
]


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


BACKENDS = ("torch", "jax")


def _infer_backend(model) -> str:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        return "torch"
    if "jax" in sys.modules:
        return "jax"
    raise ValueError(
        "backend could not be inferred from the model; pass backend='torch' or backend='jax'"
    )


def backend_module(backend: str | None, model: Any = None, submodule: str = "compress"):
    """Import ``tedepr.backends.<backend>.<submodule>``, with a clear error if the framework is missing."""
    backend = _infer_backend(model) if backend is None else backend
    if backend not in BACKENDS:
        raise ValueError(
            f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}"
        )
    try:
        return importlib.import_module(f"tedepr.backends.{backend}.{submodule}")
    except ModuleNotFoundError as exc:
        if exc.name in ("torch", "jax", "jaxlib", "optax"):
            raise ImportError(
                f"backend={backend!r} needs {exc.name}: pip install 'tedepr[{backend}]'"
            ) from exc
        raise


def compress(
    model,
    data=None,
    sparsity: float = 0.99,
    format: str | None = "tt",
    score: str | None = "trainability",
    *,
    backend: str | None = None,
    **options: Any,
):
    """Compress ``model`` before training: tensorize, score, prune to ``sparsity`` of its dense weights.

    See `tedepr.backends.torch.compress.compress` (and its JAX twin) for every option. Returns an
    object with ``.model`` (compressed, masked, ready to train) and ``.report`` (`tedepr.report.Report`).

    ``oversample`` may also be a sequence of candidate splits, e.g. ``(1.0, 2.0)`` (``1.0`` = the
    low-rank network alone): each candidate is compressed, a copy of it trained for
    ``probe_epochs`` (default 3) epochs on ``probe_data`` with the recipe ``probe_fit`` (default
    `tedepr.probe.PROBE_FIT`), and the one with the lowest probe training loss is returned
    untrained (`tedepr.probe.compress_probed`, docs/method.md §10).
    """
    mod = backend_module(backend, model)
    oversample = options.get("oversample")
    probe_keys = {"probe_data", "probe_epochs", "probe_fit"} & set(options)
    if oversample is not None and not isinstance(oversample, (int, float)):
        from .probe import compress_probed

        return compress_probed(
            model,
            data,
            sparsity,
            format,
            score,
            backend=mod.__name__.split(".")[2],
            **options,
        )
    if probe_keys:
        raise TypeError(
            f"{', '.join(sorted(probe_keys))} only apply when oversample is a sequence of "
            "candidate splits (e.g. oversample=(1.0, 2.0))"
        )
    return mod.compress(model, data, sparsity=sparsity, format=format, score=score, **options)


def score(model, data=None, method: str = "snip", *, backend: str | None = None, **options: Any):
    """Per-parameter score arrays keyed by parameter name, without pruning anything."""
    mod = backend_module(backend, model)
    return mod.score(model, data, method=method, **options)


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
