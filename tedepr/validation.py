"""Validation shared by the core and both backends: a user's data batch, and option values.

`check_batch` is the one validator of a data batch, used by ``compress``/``score`` (the scoring
problems), ``make_loader`` and ``fit`` (per batch) in both backends: a user's own data is the
riskiest input, so it is checked at the door. It accepts NumPy, torch, JAX (or any array-API)
arrays and imports no framework: the namespace comes from the arrays
(`tedepr.namespace.get_namespace`). A batch part that is not an array at all is a `TypeError`;
everything else is a `ValueError` (a non-floating input, a float/bool label, an empty batch,
mismatched lengths, a wrong sample shape, NaN/inf, a label outside ``[0, num_classes)``). Every
message names the argument (``data``, ``train_data``, ``eval_data``, ...), the batch index and what
was expected.

The option checks (`check_int`, `check_real`, `check_tolerance`, `check_seed`,
`check_float_dtype`, `check_input_shape`, `check_globs_match`) follow the house rule: `TypeError`
for a wrong type, `ValueError` for a wrong value, the argument named in both.
"""

from __future__ import annotations

import difflib
import fnmatch
import itertools
import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .namespace import get_namespace, is_array

__all__ = [
    "batches_of",
    "check_batch",
    "check_float_dtype",
    "check_globs_match",
    "check_input_shape",
    "check_int",
    "check_labels",
    "check_real",
    "check_seed",
    "check_tolerance",
]


def _where(name: str, index: int | None) -> str:
    return name if index is None else f"{name} (batch {index})"


def _as_array(a: Any, what: str) -> Any:
    if is_array(a):
        return a
    raise TypeError(f"{what} must be an array (NumPy, torch or JAX); got {type(a).__name__}")


def check_input_shape(input_shape: Any, name: str = "input_shape") -> tuple[int, ...] | None:
    """``input_shape`` as a tuple of positive ints (one sample's shape), or None."""
    if input_shape is None:
        return None
    if isinstance(input_shape, (str, bytes)) or not hasattr(input_shape, "__iter__"):
        raise TypeError(
            f"{name} must be a tuple of positive ints (one sample's shape); "
            f"got {type(input_shape).__name__}"
        )
    dims = tuple(input_shape)
    for dim in dims:
        if isinstance(dim, bool) or not isinstance(dim, int) and not hasattr(dim, "__index__"):
            raise TypeError(f"{name} must be a tuple of positive ints; got {input_shape!r}")
    if not dims or any(int(dim) < 1 for dim in dims):
        raise ValueError(f"{name} must be a non-empty tuple of positive ints; got {input_shape!r}")
    return tuple(int(dim) for dim in dims)


def check_labels(
    y: Any, *, name: str = "data", index: int | None = None, num_classes: int | None = None
) -> None:
    """Labels ``y``: a 1-D integer array (not bool, not float) of class indices in
    ``[0, num_classes)`` (``num_classes`` None: only ``>= 0`` is checked)."""
    where = _where(name, index)
    y = _as_array(y, f"{where}: labels y")
    xp = get_namespace(y)
    if xp.isdtype(y.dtype, "bool") or not xp.isdtype(y.dtype, "integral"):
        raise ValueError(
            f"{where}: labels y must be a 1-D integer array of class indices; got dtype {y.dtype} "
            "(float or bool labels would be truncated to wrong classes: convert them explicitly)"
        )
    if len(y.shape) != 1:
        raise ValueError(
            f"{where}: labels y must be a 1-D integer array of class indices (one per sample); "
            f"got shape {tuple(y.shape)}"
        )
    if y.shape[0] == 0:
        return
    lo, hi = int(xp.min(y)), int(xp.max(y))
    if lo < 0 or (num_classes is not None and hi >= num_classes):
        allowed = (
            f"class indices in [0, {num_classes}) (the model's output width is {num_classes})"
            if num_classes is not None
            else "non-negative class indices"
        )
        raise ValueError(f"{where}: labels y must be {allowed}; got values from {lo} to {hi}")


def check_batch(
    x: Any,
    y: Any,
    *,
    name: str = "data",
    index: int | None = None,
    num_classes: int | None = None,
    input_shape: tuple[int, ...] | None = None,
    finite: bool = True,
) -> None:
    """Validate one ``(x, y)`` batch; raise a `TypeError`/`ValueError` naming ``name`` and ``index``.

    Parameters
    ----------
    x : array (B, *input_shape), real floating, finite (when ``finite``), B >= 1.
    y : array (B,), integer class indices in ``[0, num_classes)``.
    name : the argument the batch came from (``"data"``, ``"train_data"``, ...).
    index : the batch's position in that argument (None: the argument is one batch).
    num_classes : the model's output width, when known.
    input_shape : one sample's expected shape, when known.
    finite : whether to check that ``x`` holds no NaN/inf.
    """
    where = _where(name, index)
    x = _as_array(x, f"{where}: inputs x")
    y = _as_array(y, f"{where}: labels y")
    xp = get_namespace(x)
    if not xp.isdtype(x.dtype, "real floating"):
        raise ValueError(
            f"{where}: inputs x must be floating point (normalise images first, e.g. "
            f"tedepr.datasets.normalize); got {x.dtype}"
        )
    if len(x.shape) < 1 or x.shape[0] == 0:
        raise ValueError(
            f"{where}: the batch is empty (x has shape {tuple(x.shape)}); every batch needs at "
            "least one sample"
        )
    check_labels(y, name=name, index=index, num_classes=num_classes)
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{where}: x and y must have the same length (one label per sample); got x {tuple(x.shape)} and "
            f"y {tuple(y.shape)}"
        )
    if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
        raise ValueError(
            f"{where}: each sample must have shape {tuple(input_shape)} (the model's input); "
            f"got x of shape {tuple(x.shape)}"
        )
    # one reduction: NaN and ±inf propagate through a sum, so a finite sum proves every entry
    # finite; only a non-finite sum (bad data, or finite values whose sum overflows) is looked at
    if finite and not bool(xp.isfinite(xp.sum(x))):
        bad = ~xp.isfinite(x)
        if bool(xp.any(bad)):
            count = int(xp.sum(xp.astype(bad, xp.int64)))
            raise ValueError(
                f"{where}: inputs x hold {count} NaN or infinite value(s); clean the data "
                "(every input must be finite)"
            )


def batches_of(
    data: Any,
    num_batches: int | None,
    convert: Callable[[Any, int, str], Any],
    *,
    name: str = "data",
) -> list[tuple[Any, Any]]:
    """The first ``num_batches`` ``(x, y)`` batches of ``data``, each part ``convert(a, index,
    what)`` (the backend's array) and checked by `check_batch`; the scoring data of both backends.

    ``data``: None (no batches), one ``(x, y)`` tuple of arrays, or any iterable of ``(x, y)``
    pairs (a DataLoader, a list); a `TypeError` for anything else, a `ValueError` when it yields
    nothing.
    """
    if data is None:
        return []
    if isinstance(data, tuple) and len(data) == 2 and hasattr(data[0], "shape"):
        data = [data]  # one batch
    if not isinstance(data, Iterable):
        raise TypeError(
            f"{name} must be an (x, y) tuple of arrays, an iterable of (x, y) batches (e.g. a "
            f"DataLoader), or None; got {type(data).__name__}"
        )
    out = []
    for index, item in enumerate(itertools.islice(iter(data), num_batches)):
        if not (isinstance(item, (tuple, list)) and len(item) >= 2):
            raise TypeError(
                f"{name} must yield (x, y) batches; batch {index} is a {type(item).__name__}"
            )
        x, y = convert(item[0], index, "inputs x"), convert(item[1], index, "labels y")
        check_batch(x, y, name=name, index=index)
        out.append((x, y))
    if not out:
        raise ValueError(f"{name} yielded no batches")
    return out


# --------------------------------------------------------------------------- options
def check_int(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum``: `TypeError` for a non-int (bools included), `ValueError`
    below ``minimum``."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{name} must be an int >= {minimum}; got {type(value).__name__}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value}")
    return value


def check_sizes(**sizes: Any) -> None:
    """Every keyword's value must be an int >= 1 (a layer's sizes): `TypeError` for a non-int
    (bools included), `ValueError` below 1, naming the argument."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be a positive int; got {type(value).__name__} {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be a positive int; got {value!r}")


def check_dropout(p: Any, name: str = "dropout") -> float:
    """A dropout probability as a float in [0, 1]."""
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        raise TypeError(f"{name} must be a number in [0, 1]; got {type(p).__name__}")
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be in [0, 1]; got {p}")
    return p


def check_real(value: Any, name: str, allowed: str = "a real number") -> float:
    """``value`` as a Python float: a `TypeError` naming ``name`` for a str, bool, complex, None or
    anything else that is not a real number (NumPy/0-d array scalars are fine)."""
    if isinstance(value, (str, bytes, bool, complex)) or not hasattr(value, "__float__"):
        raise TypeError(f"{name} must be {allowed}; got {type(value).__name__} {value!r:.40}")
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be {allowed}; got {type(value).__name__}") from exc


def check_tolerance(value: Any, name: str = "tol") -> float:
    """A finite, non-negative tolerance."""
    value = check_real(value, name, "a finite number >= 0")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0; got {value}")
    return value


def check_seed(seed: Any, name: str = "seed") -> Any:
    """A seed for `numpy.random.default_rng`: None, an int >= 0, or a `numpy.random.Generator`."""
    if seed is None or isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not hasattr(seed, "__index__"):
        raise TypeError(
            f"{name} must be None, an int >= 0 or a numpy Generator; got {type(seed).__name__}"
        )
    if int(seed) < 0:
        raise ValueError(f"{name} must be an int >= 0 (or None, or a numpy Generator); got {seed}")
    return int(seed)


def check_float_dtype(dtype: Any, xp: Any, name: str = "dtype") -> Any:
    """``dtype`` if it is a real floating dtype of the namespace ``xp`` (None: left to the caller).

    Strings and NumPy scalar types are resolved through ``xp`` where it knows them (``"float32"``,
    ``numpy.float64``); integer, bool, complex and object dtypes are a `ValueError`, anything that
    is not a dtype of ``xp`` a `TypeError`.
    """
    if dtype is None:
        return None
    resolved = dtype
    if isinstance(dtype, str):
        resolved = getattr(xp, dtype, None)
        if resolved is None:
            try:
                resolved = np.dtype(dtype)
            except TypeError as exc:
                raise TypeError(f"{name} must be a real floating dtype; got {dtype!r}") from exc
    try:
        floating = bool(xp.isdtype(resolved, "real floating"))
    except Exception:  # noqa: BLE001 - namespaces raise different errors for a non-dtype
        try:
            floating = np.issubdtype(np.dtype(resolved), np.floating)
        except TypeError as exc:
            raise TypeError(f"{name} must be a real floating dtype; got {dtype!r}") from exc
        if floating and xp.__name__.endswith("numpy"):
            return np.dtype(resolved)
        if not floating:
            raise ValueError(
                f"{name} must be a real floating dtype (e.g. float32, float64); got {dtype!r}"
            ) from None
        raise TypeError(
            f"{name} {dtype!r} is not a dtype of the array library {xp.__name__}"
        ) from None
    if not floating:
        raise ValueError(
            f"{name} must be a real floating dtype (e.g. float32, float64); got {dtype!r}"
        )
    return resolved


def check_globs_match(globs: Any, names: Any, argument: str, what: str = "layer") -> None:
    """Every glob of ``globs`` (None: nothing to check) must match at least one of ``names``
    (`fnmatch.fnmatchcase`); else a `ValueError` naming ``argument``, with a "did you mean"
    suggestion (`difflib`) and the names there are — a typo never passes as "no such layer"."""
    if globs is None:
        return
    names = [n for n in names if n]
    for glob in globs:
        if any(fnmatch.fnmatchcase(n, glob) for n in names):
            continue
        close = difflib.get_close_matches(glob, names, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        shown = ", ".join(map(repr, names[:12])) + (", ..." if len(names) > 12 else "")
        raise ValueError(
            f"{argument}: the pattern {glob!r} matches no {what} of the model{hint} "
            f"(the {what}s are {shown or 'none'})"
        )
