"""Replace the dense layers of a JAX `Model` by tensorized ones (the coarse grain of TEDEPR).

`tensorize` returns a *new* `Model` (the caller's is untouched) with the same forward function and
layer names: eligible `Dense` → ``{TT,TR,Tucker,CP}Linear``, `Conv2d` → ``{TT,TR,Tucker,CP}Conv2d``,
`LSTM` → `TensorizedLSTM`, `GRU` → `TensorizedGRU`, `MultiheadAttention` → `TensorizedMultiheadAttention`,
each with the dense layer's shapes, options and target init std. A `TransformerEncoderLayer` is a
container, as torch's ``nn.TransformerEncoderLayer``: its ``self_attn`` (kind ``"attention"``) and its
``linear1``/``linear2`` (kind ``"linear"``) are candidates of their own, named
``"<layer>/self_attn"``, ``"<layer>/linear1"``, ... (so globs, ``min_params`` and rank allocation treat
them as torch treats ``layers.0.self_attn`` and ``layers.0.linear1``); the layer keeps its class with
those sublayers replaced (`TransformerEncoderLayer.with_sublayers`).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ...decompositions import decompose as decompose_matrix
from ...decompositions import decompose_conv
from ...shapes import check_format
from ...tensorizing import (
    CONV2D_FIELDS,
    DEFAULT_MIN_PARAMS,
    LAYER_KINDS,
    LayerChooser,
    bind,
    layer_options,
)
from .attention import (
    MultiheadAttention,
    TensorizedMultiheadAttention,
    TensorizedTransformerEncoderLayer,
    TransformerEncoderLayer,
    _Composite,
)
from .conv import CONV_CLASSES, Conv2d, TensorizedConv2d
from .layers import LINEAR_CLASSES, Dense, TensorizedLinear
from .models import Model
from .nnx_detect import is_nnx_module, nnx_entry
from .recurrent import GRU, LSTM, TensorizedGRU, TensorizedLSTM

__all__ = [
    "tensorize",
    "tensorize_layer",
    "transfer_params",
    "DEFAULT_MIN_PARAMS",
    "LAYER_KINDS",
    "TENSORIZABLE",
]

TENSORIZABLE = (Dense, Conv2d, LSTM, GRU, MultiheadAttention, TransformerEncoderLayer)


def _kind(layer) -> str | None:
    if isinstance(layer, Dense):
        return "linear"
    if isinstance(layer, Conv2d):
        return "conv2d"
    if isinstance(layer, LSTM):
        return "lstm"
    if isinstance(layer, GRU):
        return "gru"
    if isinstance(layer, MultiheadAttention):
        return "attention"
    if isinstance(layer, TransformerEncoderLayer):  # `tensorize_layer` on the whole layer
        return "attention"
    return None


def tensorize_layer(
    layer,
    format: str = "tt",
    rank=8,
    *,
    d: int | None = None,
    strategy: str = "auto",
    conv_strategy: str = "auto",
    tensorize_hidden: bool = False,
    in_modes=None,
    out_modes=None,
):
    """The tensorized counterpart of one dense layer (same shapes, options and init target);
    ``in_modes``/``out_modes`` apply to a Dense layer only; the options as `tensorize` gives them
    (`tedepr.tensorizing.layer_options`)."""
    format = check_format(format)
    if not isinstance(layer, TENSORIZABLE):
        raise TypeError(
            f"layer must be one of {', '.join(t.__name__ for t in TENSORIZABLE)}; "
            f"got {type(layer).__name__}"
        )
    if (in_modes is not None or out_modes is not None) and not isinstance(layer, Dense):
        raise ValueError(
            f"in_modes/out_modes apply to Dense layers only; got {type(layer).__name__}"
        )
    options = {"d": d, "strategy": strategy, "conv_strategy": conv_strategy}
    options["tensorize_hidden"] = tensorize_hidden
    if in_modes is not None or out_modes is not None:
        options.update(in_modes=in_modes, out_modes=out_modes)
    return _build(layer, format, rank, layer_options(_kind(layer), options))


def _build(layer, format: str, rank, kw: dict[str, Any]):
    """The tensorized ``layer`` in ``format`` at ``rank``, ``kw`` the new layer's keywords."""
    kind = next(t for t in TENSORIZABLE if isinstance(layer, t))
    copied = {a: getattr(layer, a) for a in _COPIED[kind]}
    if kind is Dense:
        cls = LINEAR_CLASSES[format]
    elif kind is Conv2d:
        cls = CONV_CLASSES[format]
        if layer.weight_init == "he_fan_out":  # not a tedepr.target_std scheme: give the std itself
            fan_out = layer.out_channels * layer.kernel_size[0] * layer.kernel_size[1]
            copied.pop("weight_init")
            kw = {**kw, "std": math.sqrt(2.0 / fan_out)}
    else:
        cls, kw = _TENSORIZED[kind], {"format": format, **kw}
    return cls(**copied, **kw, rank=rank)


#: what a tensorized layer takes over from the dense one: these fields, by keyword
_COPIED = {
    Dense: ("in_features", "out_features", "bias", "weight_init"),
    Conv2d: (*CONV2D_FIELDS, "bias", "weight_init"),
    LSTM: ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout"),
    GRU: ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout"),
    MultiheadAttention: ("embed_dim", "num_heads", "bias", "batch_first", "dropout"),
    TransformerEncoderLayer: (
        "d_model",
        "nhead",
        "dim_feedforward",
        "dropout",
        "activation",
        "layer_norm_eps",
        "batch_first",
        "norm_first",
        "bias",
    ),
}
_TENSORIZED = {
    LSTM: TensorizedLSTM,
    GRU: TensorizedGRU,
    MultiheadAttention: TensorizedMultiheadAttention,
    TransformerEncoderLayer: TensorizedTransformerEncoderLayer,
}


def _tensorize(model: Model, format, rank, *, layers, decompose, params, **options):
    """`tensorize` on a `Model` or a Flax NNX model (the arguments checked by
    `tedepr.tensorizing.bind`)."""
    if is_nnx_module(model):  # a Flax NNX model: tedepr.backends.jax.nnx.tensorize
        if decompose:
            raise ValueError(
                "decompose=True applies to a tedepr.backends.jax Model; a Flax NNX model's "
                "tensorize draws fresh cores (decompose its Linear weights with tedepr.decompose)"
            )
        return nnx_entry("tensorize")(model, format, rank, layers=layers, **options)
    if not isinstance(model, Model):
        raise TypeError(f"model must be a tedepr.backends.jax Model; got {type(model).__name__}")
    chooser = LayerChooser.for_call(
        [c for name, layer in model.layers.items() for c in _names(name, layer)],
        format,
        rank,
        options,
        overridable=_OVERRIDABLE,
        hints=getattr(model, "tensorize_hints", None),
    )
    new_layers = dict(model.layers)
    for name, layer in model.layers.items():
        replaced = {}
        for cname, cand in _candidates(name, layer):
            new = _decide(chooser, cname, cand, layers)
            if new is not None:
                replaced[cname] = new
        if not replaced:
            continue
        if isinstance(layer, TransformerEncoderLayer):
            new_layers[name] = layer.with_sublayers(
                **{c.rpartition("/")[2]: v for c, v in replaced.items()}
            )
        else:
            new_layers[name] = replaced[name]
    chooser.finish(
        f"model {model.name!r}",
        "Dense, Conv2d, LSTM, GRU, MultiheadAttention or TransformerEncoderLayer",
    )
    new_model = model.with_layers(new_layers)
    if not decompose:
        return new_model
    errors: dict[str, float] = {}
    new_params = {}
    for name, layer in new_model.layers.items():
        if name not in params:
            raise ValueError(f"params must hold every layer of model; missing {name!r}")
        new_params[name] = _decomposed(model.layers[name], params[name], layer, name, errors)
    new_model.decomposition_error = errors
    return new_model, new_params


#: `tedepr.tensorizing.tensorize` on a JAX `Model` (or a Flax NNX model: `nnx.tensorize`); a JAX
#: model does not hold its arrays, so ``decompose=True`` takes them as ``params``
tensorize = bind(_tensorize, __name__, holds_weights=False)


def _candidates(name: str, layer) -> list[tuple[str, Any]]:
    """The candidates of one top-level layer, ``(name, layer)``: a `TransformerEncoderLayer` is a
    container of its attention and both feed-forward maps, judged one by one (as torch's
    ``tensorize`` replaces the submodules of an ``nn.TransformerEncoderLayer``)."""
    if isinstance(layer, TransformerEncoderLayer):
        subs = layer.sublayers()
        return [(f"{name}/{s}", subs[s]) for s in _ENCODER_CANDIDATES]
    return [(name, layer)] if isinstance(layer, TENSORIZABLE) else []


def _names(name: str, layer) -> list[str]:
    """The names ``include``/``exclude``/``overrides`` globs may match under one layer."""
    return [name] + [c for c, _ in _candidates(name, layer) if c != name]


def _decide(chooser: LayerChooser, name: str, layer, kinds):
    """The tensorized replacement of the candidate ``name``, or None (reason recorded)."""
    if _kind(layer) not in kinds:
        return chooser.skip(name, f"kind {_kind(layer)!r} not in layers={kinds!r}")
    if not chooser.selected(name, name):
        return None
    features = (layer.in_features, layer.out_features) if isinstance(layer, Dense) else None
    opts = chooser.options(name, name, _kind(layer), layer.num_weights, features)
    if opts is None:
        return None
    fmt, rank_l = opts.pop("format"), opts.pop("rank")
    return chooser.build(
        name,
        name,
        type(layer).__name__,
        layer.num_weights,
        lambda: _build(layer, fmt, rank_l, opts),
        lambda new: new.num_weights,
        fmt,
    )


_ENCODER_CANDIDATES = ("self_attn", "linear1", "linear2")

_OVERRIDABLE = (
    "format",
    "rank",
    "d",
    "strategy",
    "conv_strategy",
    "tensorize_hidden",
    "in_shape",
    "in_modes",
    "out_modes",
)


def _decompose_into(layer, w, path: str, errors: dict, conv: bool = False) -> tuple:
    """The cores of the tensorized ``layer`` holding the decomposition of the dense ``w`` (float64,
    at the layer's ranks and modes), cast back to ``w``'s dtype."""
    fn = decompose_conv if conv else decompose_matrix
    f = fn(
        np.asarray(w, dtype=np.float64),
        layer.format,
        layer.ranks,
        in_modes=layer.in_modes,
        out_modes=layer.out_modes,
    )
    shapes = [tuple(c.shape) for c in f.cores]
    if shapes != list(layer.core_shapes):  # a guard: the layer and the decomposition disagree
        raise ValueError(
            f"{path}: the decomposition's cores {shapes} do not fit the layer's {layer.core_shapes}"
        )
    errors[path] = float(f.error)
    return tuple(jnp.asarray(c, dtype=w.dtype) for c in f.cores)


def _decomposed(old, p, new, path: str, errors: dict):
    """Params of ``new`` (``old`` or its tensorized counterpart) from ``old``'s trained ``p``."""
    if new == old:
        return p
    if isinstance(new, TensorizedLinear):  # from a Dense (or a packed attention projection)
        out = {"cores": _decompose_into(new, p["weight"], path, errors)}
    elif isinstance(new, TensorizedConv2d):
        out = {"cores": _decompose_into(new, p["weight"], path, errors, conv=True)}
    elif isinstance(new, (TensorizedLSTM, TensorizedGRU)):
        out = {}
        for key, sub in new.maps.items():  # the dense layer's keys: weight_ih_l0, weight_hh_l0...
            w = p[key]
            if isinstance(sub, Dense):
                out[key] = w
            else:
                out[key] = {"cores": _decompose_into(sub, w, f"{path}/{key}", errors)}
    elif isinstance(new, _Composite):
        old_subs, new_subs = old.sublayers(), new.sublayers()
        return {
            n: _decomposed(old_subs[n], p[n], sub, f"{path}/{n}", errors)
            for n, sub in new_subs.items()
        }
    else:  # pragma: no cover - tensorize builds only the layers above
        raise TypeError(f"{path}: no decomposition into a {type(new).__name__}")
    # biases (and anything else) are copied
    return {**{k: v for k, v in p.items() if not k.startswith("weight")}, **out}


def transfer_params(model: Model, params, new_model: Model, key) -> dict:
    """Params for ``new_model`` (e.g. a `tensorize`d ``model``): layers that did not change keep
    their ``params``; changed layers get a fresh init from ``key`` (a key per layer name, by
    position)."""
    if set(model.layers) != set(new_model.layers):
        raise ValueError("new_model must have the same layer names as model")
    position = {name: k for k, name in enumerate(new_model.layers)}
    changed = {}
    for name, layer in new_model.layers.items():
        if model.layers[name] != layer:
            leaves = jax.tree.leaves(params[name])
            changed[name] = (layer, leaves[0].dtype if leaves else None)

    # one jitted program, as `Model.init`: the fresh arrays are bitwise those of
    # ``new_model.init(key)`` (an eager init may round the init's scale differently)
    def fresh(key):
        keys = jax.random.split(key, len(position))
        return {
            name: layer.init(keys[position[name]], dtype)
            if dtype is not None
            else layer.init(keys[position[name]])
            for name, (layer, dtype) in changed.items()
        }

    new = jax.jit(fresh)(key) if changed else {}
    return {name: new[name] if name in new else params[name] for name in new_model.layers}
