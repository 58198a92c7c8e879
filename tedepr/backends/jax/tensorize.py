"""Replace the dense layers of a JAX `Model` by tensorized ones (the coarse grain of TEDEPR).

`tensorize` returns a *new* `Model` (the caller's is untouched) with the same forward function and
layer names: eligible `Dense` → ``{TT,TR,Tucker,CP}Linear``, `Conv2d` → ``{TT,TR,Tucker,CP}Conv2d``,
`LSTM` → `TensorizedLSTM`, `GRU` → `TensorizedGRU`, `MultiheadAttention` → `TensorizedMultiheadAttention`,
`TransformerEncoderLayer` → `TensorizedTransformerEncoderLayer`, each with the dense layer's shapes,
options and target init std.
"""

from __future__ import annotations

import fnmatch
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import jax

from ...shapes import check_format
from ...validation import check_globs_match
from .attention import (
    MultiheadAttention,
    TensorizedMultiheadAttention,
    TensorizedTransformerEncoderLayer,
    TransformerEncoderLayer,
)
from .conv import CONV_CLASSES, CONV_STRATEGIES, Conv2d
from .layers import LINEAR_CLASSES, Dense
from .models import Model
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


def _patterns(value, name: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise TypeError(f"{name} must be a glob string or a sequence of them; got {value!r}")


def tensorize_layer(
    layer,
    format: str = "tt",
    rank=8,
    *,
    d: int | None = None,
    strategy: str = "auto",
    conv_strategy: str = "auto",
    tensorize_hidden: bool = False,
):
    """The tensorized counterpart of one dense layer (same shapes, options and init target)."""
    format = check_format(format)
    if isinstance(layer, Dense):
        return LINEAR_CLASSES[format](
            layer.in_features,
            layer.out_features,
            rank,
            bias=layer.bias,
            d=d,
            weight_init=layer.weight_init,
            strategy=strategy,
        )
    if isinstance(layer, Conv2d):
        kw: dict[str, Any] = {"weight_init": layer.weight_init}
        if layer.weight_init == "he_fan_out":  # not a tedepr.target_std scheme: give the std itself
            fan_out = layer.out_channels * layer.kernel_size[0] * layer.kernel_size[1]
            kw = {"std": math.sqrt(2.0 / fan_out)}
        return CONV_CLASSES[format](
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            rank=rank,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            groups=layer.groups,
            bias=layer.bias,
            d=d,
            strategy=conv_strategy,
            **kw,
        )
    if isinstance(layer, (LSTM, GRU)):
        return (TensorizedLSTM if isinstance(layer, LSTM) else TensorizedGRU)(
            layer.input_size,
            layer.hidden_size,
            layer.num_layers,
            layer.bias,
            layer.batch_first,
            layer.dropout,
            format=format,
            rank=rank,
            d=d,
            tensorize_hidden=tensorize_hidden,
            strategy=strategy,
        )
    if isinstance(layer, MultiheadAttention):
        return TensorizedMultiheadAttention(
            layer.embed_dim,
            layer.num_heads,
            format=format,
            rank=rank,
            bias=layer.bias,
            batch_first=layer.batch_first,
            d=d,
            strategy=strategy,
        )
    if isinstance(layer, TransformerEncoderLayer):
        return TensorizedTransformerEncoderLayer(
            layer.d_model,
            layer.nhead,
            layer.dim_feedforward,
            format=format,
            rank=rank,
            activation=layer.activation,
            layer_norm_eps=layer.layer_norm_eps,
            batch_first=layer.batch_first,
            norm_first=layer.norm_first,
            bias=layer.bias,
            d=d,
            strategy=strategy,
        )
    raise TypeError(
        f"layer must be one of {', '.join(t.__name__ for t in TENSORIZABLE)}; "
        f"got {type(layer).__name__}"
    )


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
    budget cannot be met even at rank 1, stays dense with a warning. ``ValueError`` (giving each
    candidate's reason) when no layer is replaced at all.
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be a tedepr.backends.jax Model; got {type(model).__name__}")
    format = check_format(format)
    if isinstance(min_params, bool) or not isinstance(min_params, int) or min_params < 0:
        raise ValueError(f"min_params must be a non-negative int; got {min_params!r}")
    kinds = (layers,) if isinstance(layers, str) else tuple(layers)
    if not kinds or any(k not in LAYER_KINDS for k in kinds):
        raise ValueError(
            f"layers must be a non-empty sequence of {', '.join(map(repr, LAYER_KINDS))}; "
            f"got {layers!r}"
        )
    include, exclude = _patterns(include, "include"), _patterns(exclude, "exclude")
    overrides = dict(overrides or {})
    for pattern, opts in overrides.items():
        if not isinstance(pattern, str) or not isinstance(opts, Mapping):
            raise TypeError(
                f"overrides must map glob strings to dicts of options; got {overrides!r}"
            )
        unknown = set(opts) - set(_OVERRIDABLE)
        if unknown:
            raise ValueError(
                f"overrides[{pattern!r}] may set {', '.join(map(repr, _OVERRIDABLE))}; "
                f"got {sorted(unknown)}"
            )
    defaults = {
        "format": format,
        "rank": rank,
        "d": d,
        "strategy": strategy,
        "conv_strategy": conv_strategy,
        "tensorize_hidden": tensorize_hidden,
    }
    _check_options(defaults)
    names = list(model.layers)
    check_globs_match(include, names, "include")
    check_globs_match(exclude, names, "exclude")
    check_globs_match(overrides, names, "overrides")
    layers = dict(model.layers)
    reasons, used = [], set()
    for name, layer in model.layers.items():
        if not isinstance(layer, TENSORIZABLE):
            continue
        if _kind(layer) not in kinds:
            reasons.append(f"{name}: kind {_kind(layer)!r} not in layers={kinds!r}")
            continue
        if include is not None and not any(fnmatch.fnmatchcase(name, p) for p in include):
            reasons.append(f"{name}: not matched by include")
            continue
        if exclude is not None and any(fnmatch.fnmatchcase(name, p) for p in exclude):
            reasons.append(f"{name}: excluded")
            continue
        dense = layer.num_weights
        if dense < min_params:
            reasons.append(f"{name}: {dense} weights < min_params={min_params}")
            continue
        opts = dict(defaults)
        for pattern, extra in overrides.items():
            if fnmatch.fnmatchcase(name, pattern):
                opts.update(extra)
                used.add(pattern)
        _check_options(opts)
        try:
            new = tensorize_layer(layer, opts.pop("format"), opts.pop("rank"), **opts)
        except ValueError as exc:
            if not isinstance(rank, float) and not isinstance(opts.get("rank"), float):
                raise
            warnings.warn(f"tensorize leaves {name!r} dense: {exc}", stacklevel=2)
            reasons.append(f"{name}: {exc}")
            continue
        if new.num_weights >= dense:
            why = f"its cores would hold {new.num_weights} >= {dense} dense weights"
            warnings.warn(f"tensorize leaves {name!r} dense: {why}", stacklevel=2)
            reasons.append(f"{name}: {why}")
            continue
        layers[name] = new
    for pattern in overrides:
        if pattern not in used:
            warnings.warn(f"overrides pattern {pattern!r} matched no replaced layer", stacklevel=2)
    if all(layers[n] is model.layers[n] for n in layers):
        detail = "; ".join(reasons[:12]) + ("; ..." if len(reasons) > 12 else "")
        raise ValueError(
            f"tensorize found no eligible layer to replace in model {model.name!r} ("
            + (
                detail
                or "it holds no Dense, Conv2d, LSTM, GRU, MultiheadAttention or "
                "TransformerEncoderLayer"
            )
            + ")"
        )
    return model.with_layers(layers)


_OVERRIDABLE = ("format", "rank", "d", "strategy", "conv_strategy", "tensorize_hidden")


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
    fresh_keys = jax.random.split(key, len(new_model.layers))
    out = {}
    for (name, layer), k in zip(new_model.layers.items(), fresh_keys, strict=True):
        if model.layers[name] == layer:
            out[name] = params[name]
        else:
            dtype = (
                jax.tree.leaves(params[name])[0].dtype if jax.tree.leaves(params[name]) else None
            )
            out[name] = layer.init(k, dtype) if dtype is not None else layer.init(k)
    return out
