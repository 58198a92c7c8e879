"""Moving a model's weights and masks between backends, losslessly (the format of
``tedepr.backends.torch.interchange``).

The interchange format is ``{"params": {name: ndarray}, "masks": {name: bool ndarray}}`` with
canonical names in canonical layouts (`tedepr.pruning.problem.canonical_name`; dense weights
``(out, in)``), which torch's modules happen to use natively: a JAX layer ``hidden/0`` is the torch module
``hidden.0``; a `Dense` weight ``(in, out)`` is ``nn.Linear.weight`` ``(out, in)``; the cores of a
tensorized layer are ``<layer>.core_k``; BatchNorm's ``scale``/``bias``/``mean``/``var`` are
``weight``/``bias``/``running_mean``/``running_var``; an LSTM's maps are ``weight_ih_l0`` /
``weight_hh_l0`` (``.core_k`` when tensorized); a dense attention's Q/K/V weights are packed in
``in_proj_weight``. A masked parameter's value is zero at its pruned entries.

So a torch zoo model and the JAX model of the same name (and the same `tensorize` arguments) hold
the same arrays: ``import_arrays(model, torch_export_arrays(net))`` gives JAX params computing the
torch network's function.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .attention import _Composite, _XavierPacked
from .conv import Conv2d, TensorizedConv2d
from .layers import BatchNorm, Dense, LayerNorm, TensorizedLinear
from .masking import leaf_paths, normalize_masks, path_string
from .models import Model, Parameter
from .recurrent import GRU, LSTM, TensorizedGRU, TensorizedLSTM

__all__ = ["export_arrays", "import_arrays", "torch_names"]

_PACKED = ("q_proj", "k_proj", "v_proj")


def _entries(layer, jpath: tuple, tname: str):
    """``(jax key path, torch name, how)`` of every array of ``layer``; ``how`` is ``"same"``,
    ``"T"`` (transposed) or ``("pack", i, E)`` (rows ``i·E:(i+1)·E`` of a packed Q/K/V array,
    transposed when it is a weight)."""
    dot = f"{tname}." if tname else ""
    if isinstance(layer, _XavierPacked):
        layer = layer.dense
    if isinstance(layer, Dense):
        yield jpath + ("weight",), f"{dot}weight", "T"
        if layer.bias:
            yield jpath + ("bias",), f"{dot}bias", "same"
    elif isinstance(layer, Conv2d):
        yield jpath + ("weight",), f"{dot}weight", "same"
        if layer.bias:
            yield jpath + ("bias",), f"{dot}bias", "same"
    elif isinstance(layer, (TensorizedLinear, TensorizedConv2d)):
        for k in range(len(layer.core_shapes)):
            yield jpath + ("cores", k), f"{dot}core_{k}", "same"
        if layer.bias:
            yield jpath + ("bias",), f"{dot}bias", "same"
    elif isinstance(layer, BatchNorm):
        for ours, theirs in (
            ("scale", "weight"),
            ("bias", "bias"),
            ("mean", "running_mean"),
            ("var", "running_var"),
        ):
            yield jpath + (ours,), f"{dot}{theirs}", "same"
    elif isinstance(layer, LayerNorm):
        yield jpath + ("scale",), f"{dot}weight", "same"
        yield jpath + ("bias",), f"{dot}bias", "same"
    elif isinstance(layer, Parameter):
        yield jpath + ("value",), tname, "same"
    elif isinstance(layer, (LSTM, GRU, TensorizedLSTM, TensorizedGRU)):
        # the recurrent keys are the interchange names themselves (weight_ih_l0, ...)
        maps = getattr(layer, "maps", {})
        for k in range(layer.num_layers):
            for w in (f"weight_ih_l{k}", f"weight_hh_l{k}"):
                sub = maps.get(w)
                if sub is None or isinstance(sub, Dense):  # a plain (n_in, G·H) array
                    yield jpath + (w,), f"{dot}{w}", "T"
                else:
                    yield from _entries(sub, jpath + (w,), f"{dot}{w}")
            if layer.bias:
                for b in (f"bias_ih_l{k}", f"bias_hh_l{k}"):
                    yield jpath + (b,), f"{dot}{b}", "same"
    elif isinstance(layer, _Composite):
        subs = layer.sublayers()
        dense_attention = all(isinstance(subs.get(n), _XavierPacked) for n in _PACKED)
        for name, sub in subs.items():
            if dense_attention and name in _PACKED:
                e = sub.dense.in_features
                i = _PACKED.index(name)
                yield jpath + (name, "weight"), f"{dot}in_proj_weight", ("pack", i, e)
                if sub.dense.bias:
                    yield jpath + (name, "bias"), f"{dot}in_proj_bias", ("pack", i, e)
            else:
                yield from _entries(sub, jpath + (name,), f"{dot}{name}")
    else:
        raise TypeError(f"no interchange layout for a {type(layer).__name__} layer")


def _model_entries(model: Model):
    for name, layer in model.layers.items():
        yield from _entries(layer, (name,), name.replace("/", "."))


def torch_names(model: Model) -> dict[str, str]:
    """``{jax path: torch name}`` of every array of ``model`` (packed Q/K/V share a torch name)."""
    return {"/".join(map(str, jp)): tn for jp, tn, _ in _model_entries(model)}


def _get(tree, keys):
    for k in keys:
        tree = tree[k]
    return tree


def _export(tree, entries, fill=None):
    out: dict[str, Any] = {}
    packed: dict[str, list] = {}
    for jp, tn, how in entries:
        try:
            a = _get(tree, jp)
        except (KeyError, IndexError, TypeError):
            a = None
        if a is None:
            if fill is None:
                continue
            a = fill(jp)
        a = np.asarray(a)
        if how == "same":
            out[tn] = a.copy()
        elif how == "T":
            out[tn] = a.T.copy()
        else:
            _, i, _e = how
            packed.setdefault(tn, [None] * 3)[i] = a.T if a.ndim == 2 else a
    for tn, parts in packed.items():
        out[tn] = np.concatenate(parts, axis=0)
    return out


def export_arrays(model: Model, params, masks=None) -> dict[str, dict]:
    """``{"params": name -> ndarray, "masks": name -> bool ndarray}`` of a (masked) JAX model."""
    if not isinstance(model, Model):
        raise TypeError(f"model must be a tedepr.backends.jax Model; got {type(model).__name__}")
    entries = list(_model_entries(model))
    full = normalize_masks(params, masks)
    if full is not None:
        params = jax.tree.map(
            lambda m, p: p if m is None else np.where(np.asarray(m), p, 0),
            full,
            params,
            is_leaf=lambda x: x is None,
        )
    out = {"params": _export(params, entries), "masks": {}}
    if full is not None:
        masked_paths = {path_string(p) for p, _ in jax.tree_util.tree_flatten_with_path(full)[0]}
        mask_entries = [
            e
            for e in entries
            if "/".join(map(str, e[0])) in masked_paths
            or _packed_with_masked(e, entries, masked_paths)
        ]

        def ones(jp):
            return np.ones(np.shape(_get(params, jp)), bool)

        out["masks"] = {
            k: v.astype(bool) for k, v in _export(full, mask_entries, fill=ones).items()
        }
    return out


def _packed_with_masked(entry, entries, masked_paths):
    # a packed Q/K/V array is masked as a whole when any of its three parts is
    return entry[2] not in ("same", "T") and any(
        e[1] == entry[1] and "/".join(map(str, e[0])) in masked_paths for e in entries
    )


def import_arrays(model: Model, arrays: dict[str, dict], dtype=None):
    """``(params, masks)`` for ``model`` from ``arrays`` (see `export_arrays`); ``masks`` is flat
    ``{path: bool array}`` (empty when ``arrays`` has none). Every array must be given, with the
    model's shapes; unknown names are an error. ``dtype``: of the params (default: the arrays')."""
    if not isinstance(model, Model):
        raise TypeError(f"model must be a tedepr.backends.jax Model; got {type(model).__name__}")
    if not isinstance(arrays, dict) or "params" not in arrays:
        raise ValueError(
            "arrays must be a dict with 'params' (and optionally 'masks'), as export_arrays returns"
        )
    entries = list(_model_entries(model))
    given, expected = set(arrays["params"]), {tn for _, tn, _ in entries}
    if given != expected:
        raise ValueError(
            f"arrays do not match the model: missing {sorted(expected - given)[:5]}, "
            f"unknown {sorted(given - expected)[:5]}"
        )
    template = jax.eval_shape(model.init, jax.random.key(0))

    def take(source, jp, tn, how):
        a = np.asarray(source[tn])
        if how == "T":
            a = a.T
        elif how != "same":
            _, i, e = how
            a = a[i * e : (i + 1) * e]
            a = a.T if a.ndim == 2 else a
        want = tuple(_get(template, jp).shape)
        if a.shape != want:
            raise ValueError(
                f"arrays[{tn!r}] gives {'/'.join(map(str, jp))} the shape {a.shape}; "
                f"the model needs {want}"
            )
        return a

    by_path = {"/".join(map(str, jp)): (jp, tn, how) for jp, tn, how in entries}
    leaves, treedef = jax.tree_util.tree_flatten(template)
    values = []
    for path in leaf_paths(template):
        a = take(arrays["params"], *by_path[path])
        values.append(jnp.asarray(a, dtype=dtype if dtype is not None else a.dtype))
    params = jax.tree_util.tree_unflatten(treedef, values)
    masks = {}
    for tn in arrays.get("masks") or {}:
        if tn not in expected:
            raise ValueError(f"arrays['masks'] has {tn!r}, which is not a parameter of the model")
        for path, (jp, name, how) in by_path.items():
            if name == tn:
                masks[path] = jnp.asarray(take(arrays["masks"], jp, name, how), dtype=jnp.bool_)
    return params, masks
