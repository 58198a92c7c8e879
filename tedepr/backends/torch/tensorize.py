"""`tensorize`: a copy of a model with its large layers replaced by tensorized ones."""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from ...tensorizing import CONV2D_FIELDS, DEFAULT_MIN_PARAMS, LAYER_KINDS, LayerChooser, bind
from .attention import TensorizedMultiheadAttention, TensorizedTransformerEncoderLayer
from .conv import conv_class
from .layers import TensorizedLayer, linear_class
from .masking import prunable_parameters
from .recurrent import TensorizedGRU, TensorizedLSTM, _TensorizedRNNBase

__all__ = ["tensorize", "LAYER_KINDS", "DEFAULT_MIN_PARAMS"]

_TENSORIZED = (
    TensorizedLayer,
    _TensorizedRNNBase,
    TensorizedMultiheadAttention,
    TensorizedTransformerEncoderLayer,
)


def _kind(module: nn.Module) -> str | None:
    if isinstance(module, nn.MultiheadAttention):
        return "attention"
    if isinstance(module, nn.LSTM):
        return "lstm"
    if isinstance(module, nn.GRU):
        return "gru"
    if isinstance(module, nn.Conv2d):
        return "conv2d"
    if isinstance(module, nn.Linear):
        return "linear"
    return None


def _unsupported(kind: str, m: nn.Module) -> str | None:
    """Why ``m`` cannot be tensorized (it then stays dense, with a warning), or None."""
    if any(nn.parameter.is_lazy(p) for p in m.parameters(recurse=False)):
        return "its parameters are not initialised yet (lazy module); run one forward pass first"
    if nn.utils.parametrize.is_parametrized(m):
        return "it is parametrized (e.g. masked); tensorize before masking"
    if kind == "conv2d" and m.padding_mode != "zeros":
        return f"padding_mode={m.padding_mode!r} (tensorized convolutions pad with zeros only)"
    if kind in ("lstm", "gru") and (m.bidirectional or getattr(m, "proj_size", 0)):
        return "bidirectional and projected recurrent layers are not tensorized"
    if kind == "attention" and (m.bias_k is not None or m.add_zero_attn):
        return "add_bias_kv / add_zero_attn attention is not tensorized"
    return None


#: what a replacement takes over from the dense module: these attributes, by keyword
_COPIED = {
    "linear": ("in_features", "out_features"),
    "conv2d": (*CONV2D_FIELDS, "padding_mode"),
    "lstm": ("input_size", "hidden_size", "num_layers", "batch_first", "dropout"),
    "attention": ("embed_dim", "num_heads", "batch_first", "dropout", "kdim", "vdim"),
}
_COPIED["gru"] = _COPIED["lstm"]


def _has_bias(kind: str, m: nn.Module) -> bool:
    if kind in ("lstm", "gru"):
        return bool(m.bias)
    if kind == "attention":
        return m.in_proj_bias is not None
    return m.bias is not None


def _build(
    kind: str, m: nn.Module, fmt: str, rank, kw: dict[str, Any], decompose: bool
) -> nn.Module:
    if kind in ("linear", "conv2d"):
        cls, fmt_kw = (linear_class if kind == "linear" else conv_class)(fmt), {}
    else:
        cls = {"lstm": TensorizedLSTM, "gru": TensorizedGRU}.get(kind, TensorizedMultiheadAttention)
        fmt_kw = {"format": fmt}
    if decompose:
        return cls.from_dense(m, *fmt_kw.values(), rank, **kw)
    w = next(iter(prunable_parameters(m).values()))  # the new weights' device and dtype
    copied = {a: getattr(m, a) for a in _COPIED[kind]}
    return cls(
        **copied,
        **fmt_kw,
        rank=rank,
        bias=_has_bias(kind, m),
        device=w.device,
        dtype=w.dtype,
        **kw,
    )


def _weight_count(module: nn.Module) -> int:
    return sum(p.numel() for p in prunable_parameters(module).values())


def _tensorize(model: nn.Module, format, rank, *, layers, decompose, params, **options):
    """`tensorize` on an ``nn.Module`` (the arguments checked by `tedepr.tensorizing.bind`)."""
    del params  # None here: bind checks it (a torch module holds its weights)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module; got {type(model).__name__}")
    chooser = LayerChooser.for_call(
        [n for n, _ in model.named_modules(remove_duplicate=False)],
        format,
        rank,
        options,
        what="module",
        hints=getattr(model, "tensorize_hints", None),
    )
    new_model = copy.deepcopy(model)
    handled: list[str] = []  # modules whose descendants are never visited
    memo: dict[int, nn.Module | None] = {}  # a module shared under several names is replaced once
    root_replacement, replaced = None, []
    for name, m in list(new_model.named_modules(remove_duplicate=False)):
        if any(name.startswith(h + ".") for h in handled if h) or (handled and handled[0] == ""):
            continue
        if isinstance(m, _TENSORIZED):
            handled.append(name)
            continue
        kind = _kind(m)
        if kind is None:
            continue
        handled.append(name)
        if id(m) not in memo:
            memo[id(m)] = _decide(chooser, name, kind, m, layers, decompose)
        new = memo[id(m)]
        if new is None:
            continue
        replaced.append(name)
        if name == "":
            root_replacement = new
        else:
            parent_name, _, child = name.rpartition(".")
            setattr(new_model.get_submodule(parent_name), child, new)
    chooser.finish(
        type(model).__name__, "nn.Linear, nn.Conv2d, nn.LSTM, nn.GRU or nn.MultiheadAttention"
    )
    if root_replacement is not None:
        return root_replacement
    for name, m in new_model.named_modules():
        # torch's nested-tensor fast path reads dense attention weights the new layers do not have.
        if isinstance(m, nn.TransformerEncoder) and any(
            r.startswith(name + ".") or not name for r in replaced
        ):
            m.use_nested_tensor = False
    return new_model


def _decide(chooser, name, kind, m, layers, decompose) -> nn.Module | None:
    """The replacement of ``m``, or None (the reason recorded by ``chooser``)."""
    label = name or "<root>"
    if kind not in layers:
        return chooser.skip(label, f"{kind!r} not in layers")
    if not chooser.selected(name, label):
        return None
    why = _unsupported(kind, m)
    if why is not None:
        return chooser.skip(label, why, warn=True)
    dense = _weight_count(m)
    features = (m.in_features, m.out_features) if kind == "linear" else None
    kw = chooser.options(name, label, kind, dense, features)
    if kw is None:
        return None
    fmt, rank = kw.pop("format"), kw.pop("rank")
    new = chooser.build(
        name,
        label,
        type(m).__name__,
        dense,
        lambda: _build(kind, m, fmt, rank, kw, decompose),
        _weight_count,
        fmt,
    )
    if new is not None:
        new.train(m.training)
    return new


#: `tedepr.tensorizing.tensorize` on ``nn.Module`` s: a torch module holds its weights, so
#: ``params`` must be None (``decompose=True`` decomposes the modules' own weights)
tensorize = bind(_tensorize, __name__, holds_weights=True)
