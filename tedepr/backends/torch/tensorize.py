"""`tensorize`: a copy of a model with its large layers replaced by tensorized ones."""

from __future__ import annotations

import copy
import fnmatch
import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from ...shapes import check_format
from ...validation import check_globs_match
from .attention import TensorizedMultiheadAttention, TensorizedTransformerEncoderLayer
from .conv import CONV_STRATEGIES, conv_class
from .layers import TensorizedLayer, linear_class
from .masking import prunable_parameters
from .recurrent import TensorizedGRU, TensorizedLSTM, _TensorizedRNNBase

__all__ = ["tensorize", "LAYER_KINDS", "DEFAULT_MIN_PARAMS"]

logger = logging.getLogger(__name__)

LAYER_KINDS = ("linear", "conv2d", "lstm", "gru", "attention")
#: dense layers with fewer weights stay dense by default (a small classifier gains nothing)
DEFAULT_MIN_PARAMS = 1024
_DEFAULT_LAYERS = ("linear", "conv2d", "lstm", "attention")
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


def _build(
    kind: str, m: nn.Module, fmt: str, rank, kw: dict[str, Any], decompose: bool
) -> nn.Module:
    if kind == "linear":
        cls = linear_class(fmt)
        if decompose:
            return cls.from_dense(m, rank, **kw)
        return cls(
            m.in_features,
            m.out_features,
            rank,
            bias=m.bias is not None,
            device=m.weight.device,
            dtype=m.weight.dtype,
            **kw,
        )
    if kind == "conv2d":
        cls = conv_class(fmt)
        if decompose:
            return cls.from_dense(m, rank, **kw)
        return cls(
            m.in_channels,
            m.out_channels,
            m.kernel_size,
            m.stride,
            m.padding,
            m.dilation,
            m.groups,
            m.bias is not None,
            m.padding_mode,
            rank=rank,
            device=m.weight.device,
            dtype=m.weight.dtype,
            **kw,
        )
    if kind in ("lstm", "gru"):
        cls = TensorizedLSTM if kind == "lstm" else TensorizedGRU
        if decompose:
            return cls.from_dense(m, fmt, rank, **kw)
        w = m.weight_ih_l0
        return cls(
            m.input_size,
            m.hidden_size,
            m.num_layers,
            m.bias,
            m.batch_first,
            m.dropout,
            format=fmt,
            rank=rank,
            device=w.device,
            dtype=w.dtype,
            **kw,
        )
    if decompose:
        return TensorizedMultiheadAttention.from_dense(m, fmt, rank, **kw)
    w = m.out_proj.weight
    return TensorizedMultiheadAttention(
        m.embed_dim,
        m.num_heads,
        format=fmt,
        rank=rank,
        bias=m.in_proj_bias is not None,
        batch_first=m.batch_first,
        dropout=m.dropout,
        kdim=m.kdim,
        vdim=m.vdim,
        device=w.device,
        dtype=w.dtype,
        **kw,
    )


def _weight_count(module: nn.Module) -> int:
    return sum(p.numel() for p in prunable_parameters(module).values())


def _globs(value, name: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence) and all(isinstance(g, str) for g in value):
        return tuple(value)
    raise TypeError(f"{name} must be a glob string or a sequence of them; got {value!r}")


def tensorize(
    model: nn.Module,
    format: str = "tt",
    rank=8,
    *,
    min_params: int = DEFAULT_MIN_PARAMS,
    include=None,
    exclude=None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    layers: Sequence[str] = _DEFAULT_LAYERS,
    decompose: bool = False,
    d: int | None = None,
    strategy: str = "auto",
    conv_strategy: str = "auto",
    tensorize_hidden: bool = False,
) -> nn.Module:
    """A copy of ``model`` whose eligible layers are tensorized; ``model`` itself is not changed.

    Eligible: ``nn.Linear`` (-> `TTLinear` & co.), ``nn.Conv2d`` (-> `TTConv2d` & co.), ``nn.LSTM``
    (-> `TensorizedLSTM`), ``nn.GRU`` (-> `TensorizedGRU`, only when ``"gru"`` is in ``layers``) and
    ``nn.MultiheadAttention`` (-> `TensorizedMultiheadAttention`); the feed-forward maps of
    ``nn.TransformerEncoderLayer`` are ``nn.Linear`` and are replaced as such. The output projection
    inside an ``nn.MultiheadAttention`` is only replaced together with its attention.

    Parameters
    ----------
    model : nn.Module
    format : {"tt", "tr", "tucker", "cp"}
    rank : int, tuple or float
        Passed to every new layer (see `TTLinear`).
    min_params : int
        Layers with fewer dense weights than this stay dense.
    include, exclude : glob or sequence of globs, optional
        Module names (as in ``model.named_modules()``, matched with `fnmatch.fnmatchcase`) to
        consider / to leave dense.
    overrides : dict mapping a glob to a dict of keyword arguments, optional
        Per-layer arguments (``"format"``, ``"rank"``, and any argument of the new layer's class or
        of its ``from_dense``, e.g. ``{"classifier.*": {"rank": 4, "d": 2}, "*": {"weight_init": "he"}}``);
        every matching glob applies, later ones winning.
    layers : sequence of {"linear", "conv2d", "lstm", "gru", "attention"}
        Kinds of layers to replace.
    decompose : bool
        True: decompose the trained weights (``from_dense``; each new layer's
        ``decomposition_error`` reports the relative error). False: fresh exact variance-preserving
        init.
    d, strategy, conv_strategy, tensorize_hidden :
        Defaults for the new layers (number of modes; contraction strategy of the Linear,
        recurrent and attention maps; the convolutions' strategy; whether the recurrent layers'
        hidden maps are tensorized too), as the JAX backend's; ``overrides`` take precedence.

    Returns
    -------
    nn.Module
        The new model (parameters on the replaced layers' devices and dtypes, same training mode).

    Raises
    ------
    ValueError
        When no layer would be replaced (the message gives each candidate's reason).

    Notes
    -----
    A layer whose factorisation would not hold fewer weights than the dense layer stays dense, with
    a warning. Modules that are already tensorized are left as they are.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module; got {type(model).__name__}")
    format = check_format(format)
    if isinstance(min_params, bool) or not isinstance(min_params, int) or min_params < 0:
        raise ValueError(f"min_params must be a non-negative int; got {min_params!r}")
    layers = (layers,) if isinstance(layers, str) else tuple(layers)
    bad = [k for k in layers if k not in LAYER_KINDS]
    if bad or not layers:
        raise ValueError(
            f"layers must be a non-empty sequence of {', '.join(map(repr, LAYER_KINDS))}; "
            f"got {layers!r}"
        )
    if conv_strategy not in CONV_STRATEGIES:
        raise ValueError(
            f"conv_strategy must be one of {', '.join(map(repr, CONV_STRATEGIES))}; "
            f"got {conv_strategy!r}"
        )
    defaults = {
        "d": d,
        "strategy": strategy,
        "conv_strategy": conv_strategy,
        "tensorize_hidden": bool(tensorize_hidden),
    }
    include, exclude = _globs(include, "include"), _globs(exclude, "exclude")
    overrides = {} if overrides is None else overrides
    if not isinstance(overrides, Mapping) or not all(
        isinstance(g, str) and isinstance(kw, Mapping) for g, kw in overrides.items()
    ):
        raise TypeError(
            f"overrides must map glob strings to dicts of keyword arguments; got {overrides!r}"
        )

    names = [n for n, _ in model.named_modules(remove_duplicate=False)]
    check_globs_match(include, names, "include", "module")
    check_globs_match(exclude, names, "exclude", "module")
    check_globs_match(overrides, names, "overrides", "module")
    new_model = copy.deepcopy(model)
    handled: list[str] = []  # modules whose descendants are never visited
    memo: dict[int, nn.Module | None] = {}  # a module shared under several names is replaced once
    reasons: list[str] = []
    replaced: list[str] = []
    used_overrides: set[str] = set()
    root_replacement = None
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
        label = name or "<root>"
        if id(m) in memo:
            new = memo[id(m)]
        else:
            new = _decide(
                name,
                label,
                kind,
                m,
                format,
                rank,
                min_params,
                include,
                exclude,
                overrides,
                layers,
                decompose,
                reasons,
                used_overrides,
                defaults,
            )
            memo[id(m)] = new
        if new is None:
            continue
        replaced.append(name)
        if name == "":
            root_replacement = new
        else:
            parent_name, _, child = name.rpartition(".")
            setattr(new_model.get_submodule(parent_name), child, new)
    for glob in overrides:
        if glob not in used_overrides:
            warnings.warn(f"overrides pattern {glob!r} matched no replaced layer", stacklevel=2)
    if not replaced:
        detail = "; ".join(reasons[:12]) + ("; ..." if len(reasons) > 12 else "")
        raise ValueError(
            f"tensorize found no eligible layer to replace in {type(model).__name__} ("
            + (
                detail
                or "it holds no nn.Linear, nn.Conv2d, nn.LSTM, nn.GRU or nn.MultiheadAttention"
            )
            + ")"
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


def _layer_defaults(kind: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``tensorize``'s defaults give a new layer of ``kind`` (only those
    that differ from the layer's own defaults, so ``from_dense`` sees what it saw before)."""
    kw: dict[str, Any] = {}
    if defaults["d"] is not None:
        kw["d"] = defaults["d"]
    strategy = defaults["conv_strategy" if kind == "conv2d" else "strategy"]
    if strategy != "auto":
        kw["strategy"] = strategy
    if kind in ("lstm", "gru") and defaults["tensorize_hidden"]:
        kw["tensorize_hidden"] = True
    return kw


def _decide(
    name,
    label,
    kind,
    m,
    fmt,
    rank,
    min_params,
    include,
    exclude,
    overrides,
    layers,
    decompose,
    reasons,
    used_overrides,
    defaults,
) -> nn.Module | None:
    """The replacement of ``m``, or None (the reason appended to ``reasons``)."""
    if kind not in layers:
        reasons.append(f"{label}: {kind!r} not in layers")
        return None
    if include is not None and not any(fnmatch.fnmatchcase(name, g) for g in include):
        reasons.append(f"{label}: not matched by include")
        return None
    if exclude is not None and any(fnmatch.fnmatchcase(name, g) for g in exclude):
        reasons.append(f"{label}: excluded")
        return None
    why = _unsupported(kind, m)
    if why is not None:
        warnings.warn(f"tensorize leaves {label} ({type(m).__name__}) dense: {why}", stacklevel=3)
        reasons.append(f"{label}: {why}")
        return None
    dense = _weight_count(m)
    if dense < min_params:
        reasons.append(f"{label}: {dense} weights < min_params={min_params}")
        return None
    kw: dict[str, Any] = {"format": fmt, "rank": rank, **_layer_defaults(kind, defaults)}
    matched = []
    for glob, extra in overrides.items():
        if fnmatch.fnmatchcase(name, glob):
            kw.update(extra)
            matched.append(glob)
    fmt_l, rank_l = check_format(kw.pop("format")), kw.pop("rank")
    try:
        new = _build(kind, m, fmt_l, rank_l, kw, decompose)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"tensorize could not replace {label} ({type(m).__name__}): {exc}") from exc
    count = _weight_count(new)
    if count >= dense:
        warnings.warn(
            f"tensorize leaves {label} dense: its {fmt_l!r} factorisation would hold {count} "
            f"weights, not fewer than the dense {dense}",
            stacklevel=3,
        )
        reasons.append(f"{label}: factorisation not smaller ({count} >= {dense})")
        return None
    used_overrides.update(matched)
    new.train(m.training)
    logger.info(
        "tensorize: %s %s -> %s (%d -> %d weights)",
        label,
        type(m).__name__,
        type(new).__name__,
        dense,
        count,
    )
    return new
