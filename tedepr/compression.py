"""Backend dispatch for the one-call entry points `tedepr.compress` and `tedepr.score`.

The backend is named (``backend="torch"`` / ``"jax"``) or inferred from the model's type among the
frameworks already imported; the backend module is imported only then.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from .budget import BudgetError
from .pipeline import (
    CompressionResult,
    DeadLayerError,
    check_alive,
    core_budget,
    resolve_budget,
    run_compress,
    run_score,
    skip_pruning,
)
from .pruning import Guards
from .report import DEFAULT_OVERSAMPLE

__all__ = [
    "BACKENDS",
    "BudgetError",
    "CompressionResult",
    "compress",
    "score",
    "backend_module",
    "resolve_budget",
    "core_budget",
    "skip_pruning",
    "DeadLayerError",
    "check_alive",
]


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
    rank=None,
    oversample: float = DEFAULT_OVERSAMPLE,
    guards: Guards | None = None,
    rounds: int | None = None,
    num_batches: int = 1,
    seed: int = 0,
    input_shape: tuple[int, ...] | None = None,
    loss_fn=None,
    rescale: bool = True,
    tensorize_options: dict[str, Any] | None = None,
    progress=None,
    probe_data=None,
    probe_epochs: int = 3,
    probe_fit: dict[str, Any] | None = None,
    probe_draws: int = 1,
    compact: bool = True,
    params=None,
    dtype=None,
    backend: str | None = None,
) -> CompressionResult:
    """Compress ``model`` to ``sparsity`` of its dense weights, before training.

    The same signature (without ``backend``) is every backend's ``compress``
    (`tedepr.pipeline.bind`); one pipeline runs them all (`tedepr.pipeline.run_compress`).

    Parameters
    ----------
    model : torch ``nn.Module``, or a JAX `tedepr.backends.jax.Model` (not modified)
    data : (x, y) arrays, an iterable of (x, y) batches (a DataLoader), or None (data-free scores)
        Inputs floating point, labels integer class indices.
    sparsity : float in [0, 1)
        Fraction of the dense model's weights removed (whole model, SPEC §5).
    format : "tt", "tr", "tucker", "cp", or None
        None prunes the dense model (the pruning-at-initialization baselines).
    score : a registered score name (`tedepr.scores.available()`), or None
        None keeps every core entry (low-rank only): the ranks are then allocated to the whole
        budget (`BudgetError` when it cannot be met, e.g. a user-given rank over budget).
    rank : int, tuple, float or None
        Ranks of the tensorized layers; None allocates them to the budget
        (`tedepr.budget.allocate_ranks`), every eligible layer tensorized.
    oversample : float >= 1, or a sequence of them
        Coarse/fine split: the cores hold ``oversample`` times the kept count before pruning.
        A sequence, e.g. ``(1.0, 2.0)``, is a set of candidate splits (``1.0`` = the low-rank
        network alone): each is compressed, a copy of it trained for ``probe_epochs`` epochs on
        ``probe_data``, and the one of lowest probe training loss is returned untrained
        (`tedepr.probe.compress_probed`, docs/method.md §10).
    guards : Guards, optional
        Override the score's structural guards (`Guards.none()` disables them).
    rounds : int >= 1, optional
        Override the score's number of schedule rounds.
    num_batches : int >= 1
        Batches of ``data`` the scores average over.
    seed : int >= 0
        Seeds the fresh cores (the caller's RNG state is left alone), random scores and ties.
    input_shape : tuple of ints, optional
        One sample's shape, for data-free SynFlow (default: from ``data``, or the JAX model's).
    loss_fn : None, "cross_entropy" or a callable ``(logits, labels) -> mean loss``
    rescale : bool
        After pruning, scale the kept entries so that every layer's (reconstructed) weight keeps
        the Frobenius norm — hence the variance — of its unpruned init (docs/method.md §8); the
        cores of a tensorized layer share one factor, every dense weight has its own.
    tensorize_options : dict, optional
        Passed to the backend's ``tensorize`` (``min_params``, ``include``, ``exclude``,
        ``overrides`` …).
    progress : callable(k, rounds), optional
        Called after each scoring round.
    probe_draws : int >= 1
        Candidate initialisations per split (seeds ``seed``, ``seed + 10007``, …), probed like the
        splits; 1 (default) draws only ``seed``. With ``probe_draws > 1`` the probe runs even for a
        single split (or ``score=None``, the low-rank network alone).
    probe_data, probe_epochs, probe_fit : only with candidates (splits or draws) to probe
        The probe's training batches (as ``fit`` takes them), its epochs (default 3) and its
        recipe (``fit`` keywords; default `tedepr.probe.PROBE_FIT`, the study's recipe).
    compact : bool
        Remove the bond indices that lie on no complete path of kept entries from the cores and
        masks (`tedepr.backends.torch.compact` / `tedepr.backends.jax.compact`; default True).
        Exact: the same function and the same gradient for every remaining entry, so training
        is unchanged, on fewer FLOPs (usually faster; docs/performance.md, *Round 4*, has the
        measurements and the exceptions, which are plan choices). Kept entries on no
        complete path (never influencing the output, never getting a gradient) go with their
        index; the report's kept count then drops by them and a note says how many. False
        returns the cores at the ranks they were tensorized with.
    params : optional (JAX only)
        Params of a JAX ``model``: layers left dense keep them, new layers are initialised from
        ``seed``; default: the compressed model initialised from ``jax.random.key(seed)``. A torch
        module holds its own weights (a `ValueError` if given).
    dtype : a real floating dtype, optional
        JAX: the dtype of freshly initialised params (default float32). Torch: the compressed
        model's dtype (default: the model's own).
    backend : "torch", "jax" or None (inferred from ``model`` among the imported frameworks)

    Returns
    -------
    CompressionResult
        ``(model, report, masks, params)``.
    """
    arguments = dict(locals())  # every argument, by name: the pipeline takes them all
    return run_compress(_adapter(arguments.pop("backend"), model), **arguments)


def score(
    model,
    data=None,
    method: str = "snip",
    *,
    num_batches: int = 1,
    seed: int = 0,
    input_shape: tuple[int, ...] | None = None,
    loss_fn=None,
    params=None,
    dtype=None,
    backend: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Per-weight score arrays keyed by weight name (higher = keep), without pruning anything.

    ``model``, ``data``, ``num_batches``, ``seed``, ``input_shape``, ``loss_fn``, ``params``,
    ``dtype`` and ``backend`` as in `compress`; ``method`` a registered score name; ``options``
    go to the score (e.g. ``density=`` for ``"erk"``). The same signature (without ``backend``)
    is every backend's ``score``.
    """
    arguments = dict(locals())
    arguments.update(arguments.pop("options"))
    return run_score(_adapter(arguments.pop("backend"), model), **arguments)


def _adapter(backend: str | None, model):
    return backend_module(backend, model).ADAPTER
