"""Array-namespace dispatch: the namespace comes from the inputs, never from global state.

`get_namespace(*arrays, xp=None)` returns an array-API namespace (through `array_api_compat`) for the
arrays given, or `xp` when the caller passes one. Mixing array libraries is a `TypeError`. Nothing here
imports torch or jax: `array_api_compat` only looks at modules that are already imported.
"""

from __future__ import annotations

from typing import Any

import array_api_compat

# the default namespace: a subpackage is not imported with its parent (imports NumPy only)
import array_api_compat.numpy  # noqa: F401
import numpy as np

__all__ = ["get_namespace", "check_namespace", "to_numpy", "is_array", "default_float"]


def get_namespace(*arrays: Any, xp: Any = None) -> Any:
    """The array-API namespace of ``arrays`` (``None`` entries are ignored), or ``xp`` if given.

    Python scalars and NumPy arrays alone give the NumPy namespace. Raises ``TypeError`` naming the
    libraries when the arrays come from different ones.
    """
    if xp is not None:
        check_namespace(xp)
        return _compat(xp)
    arrays = tuple(a for a in arrays if a is not None and not isinstance(a, (int, float, complex)))
    if not arrays:
        return array_api_compat.numpy
    try:
        return array_api_compat.array_namespace(*arrays)
    except TypeError as exc:
        kinds = sorted({type(a).__module__.split(".")[0] + "." + type(a).__name__ for a in arrays})
        raise TypeError(
            f"arrays from different array libraries cannot be mixed: got {', '.join(kinds)}; "
            "convert them to one library first (or pass xp= explicitly)"
        ) from exc


def check_namespace(xp: Any, name: str = "xp") -> None:
    """``xp`` must be None or an array namespace (a module such as ``numpy``, ``torch``,
    ``jax.numpy`` or ``array_api_strict``): a `TypeError` naming ``name`` otherwise."""
    if xp is None:
        return
    if not all(callable(getattr(xp, op, None)) for op in ("asarray", "reshape", "matmul")):
        raise TypeError(
            f"{name} must be an array namespace (e.g. numpy, torch, jax.numpy, array_api_strict) "
            f"or None; got {type(xp).__name__} {xp!r:.60}"
        )


def _compat(xp: Any) -> Any:
    """The array-API-compatible wrapper of a raw ``numpy``/``torch`` module; other namespaces as is."""
    name = getattr(xp, "__name__", "")
    if name == "numpy":
        return array_api_compat.numpy
    if name == "torch":
        import array_api_compat.torch as compat_torch  # torch is already imported by the caller

        return compat_torch
    return xp


def is_array(obj: Any) -> bool:
    """True for an array of any array-API library (without importing any framework)."""
    return array_api_compat.is_array_api_obj(obj)


def to_numpy(a: Any) -> np.ndarray:
    """A NumPy copy of any array (torch tensors are detached and moved to the CPU)."""
    if isinstance(a, np.ndarray):
        return a
    if array_api_compat.is_torch_array(a):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def default_float(xp: Any) -> Any:
    """The default floating dtype of a namespace (float32 for torch/jax defaults, float64 for NumPy)."""
    info = getattr(xp, "__array_namespace_info__", None)
    if info is not None:
        try:
            return info().default_dtypes()["real floating"]
        except Exception:  # pragma: no cover - namespaces without the 2023.12 inspection API
            pass
    return xp.float64 if xp is array_api_compat.numpy else xp.float32
