"""Backend dispatch for the one-call entry points `tedepr.compress` and `tedepr.score`.

The backend is named (``backend="torch"`` / ``"jax"``) or inferred from the model's type among the
frameworks already imported; the backend module is imported only then.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

__all__ = ["BACKENDS", "compress", "score", "backend_module"]

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
    """
    mod = backend_module(backend, model)
    return mod.compress(model, data, sparsity=sparsity, format=format, score=score, **options)


def score(model, data=None, method: str = "snip", *, backend: str | None = None, **options: Any):
    """Per-parameter score arrays keyed by parameter name, without pruning anything."""
    mod = backend_module(backend, model)
    return mod.score(model, data, method=method, **options)
