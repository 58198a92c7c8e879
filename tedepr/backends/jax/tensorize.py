"""Replace the dense layers of a JAX `Model` by tensorized ones (the coarse grain of TEDEPR).

`tensorize` returns a *new* `Model` (the caller's is untouched) with the same forward function and
layer names: eligible `Dense` → ``{TT,TR,Tucker,CP}Linear``, `Conv2d` → ``{TT,TR,Tucker,CP}Conv2d``,
`LSTM` → `TensorizedLSTM`, `GRU` → `TensorizedGRU`, `MultiheadAttention` → `TensorizedMultiheadAttention`,
`TransformerEncoderLayer` → `TensorizedTransformerEncoderLayer`, each with the dense layer's shapes,
options and target init std.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax

from ...shapes import check_format
from ...tensorizing import CONV2D_FIELDS, LayerChooser
from .attention import (
    MultiheadAttention,
    TensorizedMultiheadAttention,
    TensorizedTransformerEncoderLayer,
    TransformerEncoderLayer,
)
from .conv import CONV_CLASSES, CONV_STRATEGIES, Conv2d
from .layers import LINEAR_CLASSES, Dense
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

#: dense layers with fewer weights stay dense by default (a small classifier gains nothing)
DEFAULT_MIN_PARAMS = 1024
TENSORIZABLE = (Dense, Conv2d, LSTM, GRU, MultiheadAttention, TransformerEncoderLayer)
#: the kinds of layer `tensorize` can replace (its ``layers=``), as the torch backend names them
LAYER_KINDS = ("linear", "conv2d", "lstm", "gru", "attention")
_DEFAULT_LAYERS = ("linear", "conv2d", "lstm", "attention")


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
    if isinstance(layer, TransformerEncoderLayer):
        # torch replaces its attention and its feed-forward nn.Linear maps
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
    ``in_modes``/``out_modes`` apply to a Dense layer only."""
    format = check_format(format)
    kind = next((t for t in TENSORIZABLE if isinstance(layer, t)), None)
    if kind is None:
        raise TypeError(
            f"layer must be one of {', '.join(t.__name__ for t in TENSORIZABLE)}; "
            f"got {type(layer).__name__}"
        )
    copied = {a: getattr(layer, a) for a in _COPIED[kind]}
    if (in_modes is not None or out_modes is not None) and kind is not Dense:
        raise ValueError(f"in_modes/out_modes apply to Dense layers only; got {kind.__name__}")
    if kind is Dense:
        cls = LINEAR_CLASSES[format]
        kw = {"strategy": strategy, "in_modes": in_modes, "out_modes": out_modes}
    elif kind is Conv2d:
        cls, kw = CONV_CLASSES[format], {"strategy": conv_strategy}
        if layer.weight_init == "he_fan_out":  # not a tedepr.target_std scheme: give the std itself
            fan_out = layer.out_channels * layer.kernel_size[0] * layer.kernel_size[1]
            copied.pop("weight_init")
            kw["std"] = math.sqrt(2.0 / fan_out)
    else:
        cls = _TENSORIZED[kind]
        kw = {"format": format, "strategy": strategy}
        if kind in (LSTM, GRU):
            kw["tensorize_hidden"] = tensorize_hidden
    return cls(**copied, **kw, rank=rank, d=d)


#: what a tensorized layer takes over from the dense one: these fields, by keyword
_COPIED = {
    Dense: ("in_features", "out_features", "bias", "weight_init"),
    Conv2d: (*CONV2D_FIELDS, "bias", "weight_init"),
    LSTM: ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout"),
    GRU: ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout"),
    MultiheadAttention: ("embed_dim", "num_heads", "bias", "batch_first"),
    TransformerEncoderLayer: (
        "d_model",
        "nhead",
        "dim_feedforward",
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


def tensorize(
    model: Model,
    format: str = "tt",
    rank=8,
    *,
    min_params: int = DEFAULT_MIN_PARAMS,
    include=None,
    exclude=None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    d: int | None = None,
    strategy: str = "auto",
    conv_strategy: str = "auto",
    tensorize_hidden: bool = False,
    layers: Sequence[str] = _DEFAULT_LAYERS,
) -> Model:
    """A new model whose eligible dense layers are tensorized.

    Parameters
    ----------
    model : Model
    format : {"tt", "tr", "tucker", "cp"}
    rank : int, tuple or float
        Every tensorized layer's ranks (a float is a per-layer parameter budget, the fraction of the
        layer's dense weights the cores may hold).
    min_params : int
        Layers with fewer dense weights stay dense.
    include, exclude : glob or sequence of globs over layer names, optional
        Only layers matching ``include`` (default: all) and not matching ``exclude`` are tensorized.
    overrides : ``{glob: {option: value}}``, optional
        Per-layer options (``"format"``, ``"rank"``, ``"d"``, ``"strategy"``, ``"conv_strategy"``,
        ``"tensorize_hidden"``); every matching glob applies, later ones winning (as torch).
    d, strategy, conv_strategy, tensorize_hidden :
        Passed to the layers (number of modes; contraction strategy; the convolutions' strategy;
        whether the recurrent layers' hidden maps are tensorized too).
    layers : sequence of {"linear", "conv2d", "lstm", "gru", "attention"}
        Kinds of layers to replace (`LAYER_KINDS`; ``"attention"`` covers `MultiheadAttention`
        and `TransformerEncoderLayer`); by default all but ``"gru"``, as the torch backend.

    A layer whose cores would hold at least as many entries as its dense weights, or whose float
    budget cannot be met even at rank 1, stays dense with a warning (the rule of every backend,
    `tedepr.tensorizing`). ``ValueError`` (giving each candidate's reason) when no layer is
    replaced at all.
    """
    if is_nnx_module(model):  # a Flax NNX model: tedepr.backends.jax.nnx.tensorize
        return nnx_entry("tensorize")(**locals())
    if not isinstance(model, Model):
        raise TypeError(f"model must be a tedepr.backends.jax Model; got {type(model).__name__}")
    defaults = {
        "format": format,
        "rank": rank,
        "d": d,
        "strategy": strategy,
        "conv_strategy": conv_strategy,
        "tensorize_hidden": tensorize_hidden,
    }
    chooser = LayerChooser(
        list(model.layers),
        defaults,
        min_params=min_params,
        include=include,
        exclude=exclude,
        overrides=overrides,
        overridable=_OVERRIDABLE,
        hints=getattr(model, "tensorize_hints", None),
    )
    _check_options(chooser.defaults)
    kinds = (layers,) if isinstance(layers, str) else tuple(layers)
    if not kinds or any(k not in LAYER_KINDS for k in kinds):
        raise ValueError(
            f"layers must be a non-empty sequence of {', '.join(map(repr, LAYER_KINDS))}; "
            f"got {layers!r}"
        )
    new_layers = dict(model.layers)
    for name, layer in model.layers.items():
        if not isinstance(layer, TENSORIZABLE):
            continue
        if _kind(layer) not in kinds:
            chooser.skip(name, f"kind {_kind(layer)!r} not in layers={kinds!r}")
            continue
        if not chooser.selected(name, name):
            continue
        features = (layer.in_features, layer.out_features) if isinstance(layer, Dense) else None
        opts = chooser.options(name, name, layer.num_weights, features)
        if opts is None:
            continue
        _check_options(opts)
        fmt, rank_l = opts.pop("format"), opts.pop("rank")
        new = chooser.build(
            name,
            name,
            type(layer).__name__,
            layer.num_weights,
            lambda layer=layer, fmt=fmt, rank_l=rank_l, opts=opts: tensorize_layer(
                layer, fmt, rank_l, **opts
            ),
            lambda new: new.num_weights,
            fmt,
        )
        if new is not None:
            new_layers[name] = new
    chooser.finish(
        f"model {model.name!r}",
        "Dense, Conv2d, LSTM, GRU, MultiheadAttention or TransformerEncoderLayer",
    )
    return model.with_layers(new_layers)


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


def _check_options(opts):
    check_format(opts["format"])
    if opts["conv_strategy"] not in CONV_STRATEGIES:
        raise ValueError(
            f"conv_strategy must be one of {', '.join(map(repr, CONV_STRATEGIES))}; "
            f"got {opts['conv_strategy']!r}"
        )


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
