"""Is an object a Flax NNX module? Answered without importing flax: a user holding an NNX model has
imported ``flax.nnx`` already, so the check only looks in `sys.modules` (as array-api-compat does).
The hooks of `compress`, `score`, `fit` and `tensorize` use it to hand Flax models to
`tedepr.backends.jax.nnx`."""

from __future__ import annotations

import sys

__all__ = ["is_nnx_module", "nnx_entry"]


def is_nnx_module(obj) -> bool:
    """True when ``obj`` is a ``flax.nnx.Module`` (False whenever flax is not imported)."""
    nnx = sys.modules.get("flax.nnx")
    return nnx is not None and isinstance(obj, nnx.Module)


def nnx_entry(name: str):
    """``tedepr.backends.jax.nnx.<name>`` (imported on first use: it imports flax)."""
    import importlib

    return getattr(importlib.import_module("tedepr.backends.jax.nnx"), name)
