"""The model zoo by name, for either backend: ``tedepr.models.get("lenet5", backend="torch")``.

This front imports nothing heavy: the backend's ``models`` module (and with it torch or jax) is
imported on the first call that names it. Each backend module provides

- ``MODELS``: a mapping from model name to its constructor;
- ``get(name, num_classes=10, in_channels=1, image_size=28, **kw)``: build one model (an
  ``nn.Module`` for torch; for jax whatever its backend documents, e.g. an init/apply pair).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

#: VGG layer tables (CIFAR variant, Simonyan & Zisserman 2015): channels per conv, "M" = 2x2 max-pool.
#: Shared by both backends' zoos.
# fmt: off
VGG_CONFIGS = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"),
}
# fmt: on

__all__ = ["BACKENDS", "get", "available"]

BACKENDS = ("torch", "jax")

# The framework each backend needs, to tell a missing framework from a bug inside the backend.
_FRAMEWORK = {"torch": "torch", "jax": "jax"}


def _backend_models(backend: str) -> ModuleType:
    if backend not in BACKENDS:
        raise ValueError(
            f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}"
        )
    try:
        return importlib.import_module(f"tedepr.backends.{backend}.models")
    except ModuleNotFoundError as exc:
        framework = _FRAMEWORK[backend]
        if exc.name == framework or (exc.name or "").startswith(framework + "."):
            raise ImportError(
                f"backend={backend!r} needs {framework}, which is not installed: "
                f"pip install 'tedepr[{backend}]'"
            ) from exc
        raise


def available(backend: str = "torch") -> tuple[str, ...]:
    """The model names that ``backend`` provides, sorted."""
    return tuple(sorted(_backend_models(backend).MODELS))


def get(name: str, backend: str = "torch", **kw: Any) -> Any:
    """Build the zoo model ``name`` with ``backend``'s implementation.

    Parameters
    ----------
    name : str
        One of `available(backend)`, e.g. ``"lenet300_100"``, ``"lenet5"``, ``"vgg16"``,
        ``"resnet20"``, ``"resnet18"``, ``"lstm"``, ``"vit"``.
    backend : ``"torch"`` or ``"jax"``
    **kw
        Passed to the backend's ``get``: ``num_classes``, ``in_channels``, ``image_size`` and
        model-specific options.
    """
    return _backend_models(backend).get(name, **kw)
