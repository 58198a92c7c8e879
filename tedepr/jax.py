"""``tedepr.jax``: a short alias of `tedepr.backends.jax` (importing it imports jax)."""

from .backends import jax as _backend
from .backends.jax import *  # noqa: F401,F403

__all__ = getattr(_backend, "__all__", None) or [n for n in dir(_backend) if not n.startswith("_")]
