"""`tedepr.save` / `tedepr.load`: a compact, checksummed, backend-neutral model file.

The file is a `safetensors <https://github.com/huggingface/safetensors>`_ container (docs/io.md
says why) holding three flat tensors and one JSON document in its metadata:

``kept``
    The kept (mask = True) entries of every masked array, concatenated in ``arrays`` order, each
    array's entries in C order. Pruned entries are not stored.
``full``
    Every unmasked floating array (biases, normalisation parameters and statistics, weights that
    were not pruned), concatenated.
``bits``
    The masks, concatenated in ``arrays`` order and bit-packed with `numpy.packbits`.

The JSON document (metadata key ``"tedepr"``) holds the format version, the stored and training
dtypes, the arrays' names/shapes/kinds (canonical names and layouts, `tedepr.pruning.problem`:
``.``-joined paths, cores ``core_k``, dense weights ``(out, in)``), the tensorized layers'
structure (format, modes, ranks, kind, shapes, bias, strategy) and, for a zoo model, its name and
constructor arguments. The metadata key ``"sha256"`` is the SHA-256 of the JSON document followed by the three tensors'
bytes; `load` recomputes it before building anything, so a corrupt or truncated file is a
`CorruptFileError`, never a wrong model.

This module imports neither torch nor jax; the backend halves live in
``tedepr.backends.<backend>.storage`` and are imported by `save`/`load` when needed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from .checkpoint import atomic_write_bytes

__all__ = ["FORMAT_VERSION", "CorruptFileError", "save", "load", "read_structure"]

#: Version of the file layout written by `save`; `load` reads this version only.
FORMAT_VERSION = 1
_MAGIC = "tedepr"
_STORED_DTYPES = ("float32", "float16", "float64")
_TENSORS = ("kept", "full", "bits")


class CorruptFileError(ValueError):
    """The file is not a complete, intact tedepr model file (bad checksum, truncated, garbled)."""


# ---------------------------------------------------------------------------- packing (NumPy)
def pack_arrays(arrays: dict[str, dict], stored_dtype: str | None) -> tuple[dict, list, str]:
    """``(tensors, entries, training dtype)`` of an interchange dict (see
    `tedepr.backends.torch.interchange`): the three flat tensors and the per-array table
    ``[name, shape, dtype, masked]``."""
    params, masks = arrays["params"], arrays.get("masks") or {}
    float_dtypes = {str(np.asarray(a).dtype) for a in params.values() if _is_float(a)}
    if len(float_dtypes) > 1:
        raise ValueError(
            f"the model mixes floating dtypes {sorted(float_dtypes)}; tedepr.save stores one "
            "training dtype (cast the model first)"
        )
    train = float_dtypes.pop() if float_dtypes else "float32"
    stored = np.dtype(train if stored_dtype is None else stored_dtype)
    kept, full, bits, entries = [], [], [], []
    for name, a in params.items():
        a = np.asarray(a)
        if not _is_float(a):
            raise TypeError(
                f"array {name!r} has dtype {a.dtype}; tedepr.save stores floating arrays only"
            )
        m = masks.get(name)
        if m is not None:
            m = np.asarray(m, dtype=bool)
            if m.shape != a.shape:
                raise ValueError(f"mask of {name!r} has shape {m.shape}; the array has {a.shape}")
            kept.append(a[m].astype(stored))
            bits.append(m.ravel())
        else:
            full.append(a.ravel().astype(stored))
        entries.append([name, list(a.shape), m is not None])
    for name in masks:
        if name not in params:
            raise ValueError(f"mask {name!r} names no array of the model")
    tensors = {
        "kept": np.concatenate(kept) if kept else np.zeros(0, stored),
        "full": np.concatenate(full) if full else np.zeros(0, stored),
        "bits": np.packbits(np.concatenate(bits)) if bits else np.zeros(0, np.uint8),
    }
    return tensors, entries, train


def unpack_arrays(tensors: dict, entries: list, dtype) -> dict[str, dict]:
    """The interchange dict back from `pack_arrays`' output; values cast to ``dtype``."""
    kept, full = tensors["kept"], tensors["full"]
    n_bits = sum(math.prod(shape) for _, shape, masked in entries if masked)
    n_kept = n_full = 0
    flat_bits = np.unpackbits(tensors["bits"], count=n_bits).astype(bool) if n_bits else None
    pos_bits = 0
    params, masks = {}, {}
    for name, shape, masked in entries:
        size = math.prod(shape)
        if masked:
            m = flat_bits[pos_bits : pos_bits + size].reshape(shape)
            pos_bits += size
            k = int(m.sum())
            a = np.zeros(shape, dtype)
            a[m] = kept[n_kept : n_kept + k]
            n_kept += k
            masks[name] = m
        else:
            a = full[n_full : n_full + size].astype(dtype).reshape(shape)
            n_full += size
        params[name] = a
    if n_kept != kept.size or n_full != full.size:
        raise CorruptFileError("the file's tensors do not match its structure")
    return {"params": params, "masks": masks}


def _is_float(a) -> bool:
    return np.issubdtype(np.asarray(a).dtype, np.floating)


# ---------------------------------------------------------------------------- checksum
def _digest(doc: str, tensors: dict) -> str:
    h = hashlib.sha256(doc.encode("utf-8"))
    for key in _TENSORS:
        t = np.ascontiguousarray(tensors[key])
        h.update(f"{key}:{t.dtype.str}:{t.shape}".encode())
        h.update(t.tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------- backend dispatch
def _backend_of(obj) -> str:
    torch = sys.modules.get("torch")
    if torch is not None:
        if isinstance(obj, torch.nn.Module) or isinstance(
            getattr(obj, "model", None), torch.nn.Module
        ):
            return "torch"
    if "jax" in sys.modules and hasattr(obj, "params") and hasattr(obj, "model"):
        return "jax"
    nnx = sys.modules.get("flax.nnx")
    if nnx is not None and isinstance(obj, nnx.Module):
        return "jax"
    raise TypeError(
        "result_or_model must be a torch CompressionResult or nn.Module, or a JAX "
        "CompressionResult (model, params, masks), or a Flax NNX model or its "
        f"FlaxCompressionResult; got {type(obj).__name__}"
    )


def _storage(backend: str):
    from .compression import backend_module

    return backend_module(backend, submodule="storage")


# ---------------------------------------------------------------------------- public API
def save(result_or_model, path: str | os.PathLike, *, dtype: str | None = None) -> int:
    """Write a compressed model to ``path`` as a compact, checksummed tedepr file.

    Parameters
    ----------
    result_or_model : CompressionResult or model
        A `tedepr.compress` result of either backend (a Flax model's `FlaxCompressionResult`
        too), a (masked) torch ``nn.Module`` or a (compressed, trained) Flax NNX model.
    path : str or path-like
        Written atomically (`tedepr.checkpoint.atomic_save`); by convention ``*.tedepr``.
    dtype : None, "float32", "float16" or "float64"
        The dtype the values are stored in; None keeps the training dtype (lossless).
        ``"float16"`` halves the values' bytes (each value rounded to the nearest float16).

    Returns
    -------
    int
        The file's size in bytes.

    Only the kept core entries, bit-packed masks, the unmasked arrays (biases, norms) and the
    structure are stored. `load` rebuilds zoo models (`tedepr.models.get`) by themselves; other
    models need their architecture passed as ``model=`` to `load`.
    """
    if dtype is not None and dtype not in _STORED_DTYPES:
        raise ValueError(
            f"dtype must be None or one of {', '.join(map(repr, _STORED_DTYPES))}; got {dtype!r}"
        )
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or path-like; got {type(path).__name__}")
    backend = _backend_of(result_or_model)
    arrays, layers, zoo = _storage(backend).export_model(result_or_model)
    tensors, entries, train = pack_arrays(arrays, dtype)
    if zoo is not None:
        try:
            json.dumps(zoo)
        except TypeError:
            zoo = None  # arguments JSON cannot hold: load then needs model=
    structure = {
        "format": _MAGIC,
        "version": FORMAT_VERSION,
        "source_backend": backend,
        "dtype": train,
        "stored_dtype": str(tensors["kept"].dtype),
        "zoo": zoo,
        "layers": layers,
        "arrays": entries,
    }
    doc = json.dumps(structure, separators=(",", ":"), sort_keys=True)
    metadata = {"tedepr": doc, "sha256": _digest(doc, tensors)}
    from safetensors.numpy import save as st_save

    data = st_save(tensors, metadata=metadata)
    atomic_write_bytes(path, data)
    return len(data)


def _read(path) -> tuple[dict, dict]:
    """``(structure, tensors)`` of a verified file."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or path-like; got {type(path).__name__}")
    with open(path, "rb") as f:
        data = f.read()
    from safetensors import SafetensorError
    from safetensors.numpy import load as st_load

    try:
        tensors = st_load(data)
        metadata = _metadata(data)
    except (SafetensorError, ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise CorruptFileError(
            f"{os.fspath(path)!r} is not a readable tedepr file (truncated or corrupt): {exc}"
        ) from None
    doc, digest = metadata.get("tedepr"), metadata.get("sha256")
    if doc is None or digest is None or set(tensors) != set(_TENSORS):
        raise CorruptFileError(f"{os.fspath(path)!r} is a safetensors file but not a tedepr file")
    if _digest(doc, tensors) != digest:
        raise CorruptFileError(f"{os.fspath(path)!r} failed its SHA-256 check: the file is corrupt")
    try:
        structure = json.loads(doc)
    except json.JSONDecodeError as exc:  # only reachable with a matching forged checksum
        raise CorruptFileError(f"{os.fspath(path)!r}: unreadable structure: {exc}") from None
    if structure.get("format") != _MAGIC:
        raise CorruptFileError(f"{os.fspath(path)!r} is not a tedepr file")
    version = structure.get("version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{os.fspath(path)!r} has file format version {version!r}; this tedepr reads "
            f"version {FORMAT_VERSION} only"
        )
    return structure, tensors


def _metadata(data: bytes) -> dict:
    # safetensors' header: 8-byte little-endian length, then JSON with "__metadata__"
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise ValueError("metadata is not a mapping")
    return meta


def read_structure(path: str | os.PathLike) -> dict:
    """The verified structure document of a tedepr file (version, dtypes, layers, arrays, zoo)."""
    return _read(path)[0]


def load(
    path: str | os.PathLike,
    backend: str = "torch",
    *,
    model: Any = None,
    dtype: str | None = None,
    device: Any = None,
):
    """Read a file written by `save` into ``backend``'s compressed-model result.

    Parameters
    ----------
    path : str or path-like
    backend : "torch" or "jax"
        Either backend can read a file written by either.
    model : optional
        The architecture to load into, when the file's model did not come from the zoo: the dense
        model that was compressed, or a compressed model of the same structure (its weights are
        replaced). Checked against the file: every layer and array must match in name and shape.
        With ``backend="jax"`` a Flax NNX model may be given; a file saved from a Flax zoo model
        loads into that zoo model by itself. Either way the result is then a
        `FlaxCompressionResult` whose ``model`` is an NNX model.
    dtype : str, optional
        The parameters' dtype (default: the training dtype recorded in the file).
    device : optional (torch only)
        Where the torch parameters go (default: CPU).

    Returns
    -------
    A `tedepr.pipeline.CompressionResult` ``(model, report, masks, params)``, masked and ready
    to train or evaluate (``params`` None for torch, the params pytree for JAX).

    Raises
    ------
    CorruptFileError (a ValueError)
        The file is truncated, garbled or fails its SHA-256 check.
    ValueError
        Wrong version, or ``model`` does not match the file.
    """
    from .compression import BACKENDS

    if backend not in BACKENDS:
        raise ValueError(
            f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}"
        )
    if dtype is not None and dtype not in _STORED_DTYPES:
        raise ValueError(
            f"dtype must be None or one of {', '.join(map(repr, _STORED_DTYPES))}; got {dtype!r}"
        )
    structure, tensors = _read(path)
    train = dtype or structure["dtype"]
    arrays = unpack_arrays(tensors, structure["arrays"], np.dtype(train))
    return _storage(backend).import_model(
        structure, arrays, model=model, dtype=train, device=device
    )


def json_lists(value):
    """Tuples (nested) as lists, for the structure JSON."""
    return [json_lists(v) for v in value] if isinstance(value, (tuple, list)) else value


def json_tuples(value):
    """The inverse of `json_lists` on a decoded structure: lists back to tuples, in dicts too."""
    if isinstance(value, list):
        return tuple(json_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: json_tuples(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------- layer records
# The backends' storage modules only say which of their classes are tensorized layers and how to
# construct one; what a record holds, whether a skeleton's layer can take it and the order of the
# constructors' arguments are written here once.
def linear_record(layer: Any, *, bias: bool) -> dict[str, Any]:
    """The structure record of a tensorized linear layer (its ``format``, features, modes, ranks
    and ``strategy`` attributes)."""
    return {
        "kind": "linear",
        "format": layer.format,
        "in_features": layer.in_features,
        "out_features": layer.out_features,
        "in_modes": list(layer.in_modes),
        "out_modes": list(layer.out_modes),
        "ranks": json_lists(layer.ranks),
        "bias": bias,
        "strategy": layer.strategy,
    }


def conv_record(layer: Any, *, bias: bool, in_modes: Any, out_modes: Any) -> dict[str, Any]:
    """The structure record of a tensorized 2-D convolution; ``in_modes``/``out_modes`` are the
    channel modes (None for formats that keep the channels whole)."""
    padding = layer.padding
    return {
        "kind": "conv2d",
        "format": layer.format,
        "in_channels": layer.in_channels,
        "out_channels": layer.out_channels,
        "kernel_size": list(layer.kernel_size),
        "stride": list(layer.stride),
        "padding": padding if isinstance(padding, str) else list(padding),
        "dilation": list(layer.dilation),
        "groups": layer.groups,
        "bias": bias,
        "in_modes": None if in_modes is None else list(in_modes),
        "out_modes": None if out_modes is None else list(out_modes),
        "ranks": json_lists(layer.ranks),
        "strategy": layer.strategy,
    }


def other_record(class_name: str) -> dict[str, Any]:
    """The record of a composite layer holding tensorized sublayers (attention, recurrent), which
    load does not rebuild from the file: it needs ``model=`` of the same structure."""
    return {"kind": "other", "class": class_name}


def layer_arguments(rec: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
    """``(args, kwargs)`` for the backend's tensorized class of ``rec["kind"]`` and
    ``rec["format"]`` (both backends' constructors take the same arguments)."""
    rec = json_tuples(rec)
    if rec["kind"] == "linear":
        args = tuple(
            rec[k] for k in ("in_features", "out_features", "ranks", "in_modes", "out_modes")
        )
        return args, {"bias": rec["bias"], "strategy": rec["strategy"]}
    keys = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation")
    args = (*(rec[k] for k in keys), rec["groups"], rec["bias"])
    kwargs: dict[str, Any] = {"rank": rec["ranks"], "strategy": rec["strategy"]}
    if rec["in_modes"] is not None:
        kwargs.update(in_modes=rec["in_modes"], out_modes=rec["out_modes"])
    return args, kwargs


def _record_fits(current: Any, rec: dict[str, Any], linear_types: tuple, conv_types: tuple) -> bool:
    if rec["kind"] == "linear":
        return isinstance(current, linear_types) and (
            current.in_features,
            current.out_features,
        ) == (rec["in_features"], rec["out_features"])
    return isinstance(current, conv_types) and (
        current.in_channels,
        current.out_channels,
        tuple(current.kernel_size),
        current.groups,
    ) == (rec["in_channels"], rec["out_channels"], tuple(rec["kernel_size"]), rec["groups"])


def skeleton_model(structure: dict[str, Any], backend: str, what: str, **framework: Any) -> Any:
    """The zoo model the file records, for ``model=None``; ``what`` names the model= to pass,
    ``framework`` are keywords of the backend's ``get`` (JAX: ``flax=False`` for a `Model`)."""
    zoo = structure.get("zoo")
    if zoo is None:
        raise ValueError(
            "the file's model was not built by tedepr.models.get, so its architecture is "
            f"not recorded: pass model= ({what}, or a compressed model of the same structure)"
        )
    from . import models

    return models.get(zoo["name"], backend=backend, **framework, **json_tuples(zoo["kwargs"]))


def rebuild_layers(
    structure: dict[str, Any],
    layer: Callable[[str], Any],
    *,
    is_composite: Callable[[Any], bool],
    linear_types: tuple,
    conv_types: tuple,
    build: Callable[[dict[str, Any], Any], Any],
) -> dict[str, Any]:
    """``{file layer name: new layer}``: every recorded layer built by ``build(rec, current)``
    after checking that the skeleton's layer ``current = layer(name)`` (None when the skeleton has
    none) can take it. Composite layers (``"other"``) are not rebuilt; the skeleton's own must
    already be tensorized (``is_composite``)."""
    new = {}
    for name, rec in structure["layers"].items():
        current = layer(name)
        if current is None:
            raise ValueError(
                f"model has no layer {name!r}, which the file holds; the model does not match "
                "the file"
            )
        if rec["kind"] == "other":
            if not is_composite(current):
                raise ValueError(
                    f"the file's layer {name!r} is a {rec['class']}, which load cannot rebuild "
                    "from the file: pass model= a compressed model of this architecture"
                )
            continue
        if not _record_fits(current, rec, linear_types, conv_types):
            raise ValueError(
                f"model's layer {name!r} ({type(current).__name__}) does not match the file's "
                f"{rec['format'].upper()} {rec['kind']} layer"
            )
        new[name] = build(rec, current)
    return new
