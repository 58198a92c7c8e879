"""``tedepr.torch``: a short alias of `tedepr.backends.torch` (importing it imports torch)."""

from .backends import torch as _backend
from .backends.torch import *  # noqa: F401,F403

__all__ = getattr(_backend, "__all__", None) or [n for n in dir(_backend) if not n.startswith("_")]
