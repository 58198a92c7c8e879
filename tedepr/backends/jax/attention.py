"""Multi-head attention and Transformer encoder layers for JAX, dense and tensorized.

The tensorized versions hold each of the Q/K/V/output projections and both feed-forward projections
as its own tensor network (SPEC §3). Inputs are ``(T, B, E)`` by default and ``(B, T, E)`` with
``batch_first=True`` (as the zoo's ViT uses), as in PyTorch. Dropout is not modelled (the layers
are pure functions).

Initialisation follows PyTorch's ``nn.MultiheadAttention``: Q/K/V weights Xavier-uniform over the
packed ``(3E, E)`` input projection (std ``√(1/(2E))``), output weight ``nn.Linear``'s default (std
``1/√(3E)``), all attention biases zero. The tensorized projections reproduce those stds exactly.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp

from ...pruning.problem import CoreInfo
from .layers import (
    LINEAR_CLASSES,
    Dense,
    LayerNorm,
    _check_choice,
    _check_dtype,
    _check_positive_int,
    _sub,
    draw,
)

__all__ = [
    "MultiheadAttention",
    "TensorizedMultiheadAttention",
    "TransformerEncoderLayer",
    "TensorizedTransformerEncoderLayer",
    "scaled_dot_product_attention",
]

_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")
ACTIVATIONS = ("gelu", "relu")


def scaled_dot_product_attention(q, k, v):
    """``softmax(q kᵀ / √d) v`` over the last two axes: q ``(..., T, d)``, k/v ``(..., S, d)``."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    logits = jnp.einsum("...td,...sd->...ts", q, k) * jnp.asarray(scale, q.dtype)
    return jnp.einsum("...ts,...sd->...td", jax.nn.softmax(logits, axis=-1), v)


def _linear_class(layer) -> type:
    """The tensorized linear class of ``layer.format`` (checked); a list ``layer.rank`` becomes a
    tuple (the frozen dataclass stays hashable)."""
    _check_choice(layer.format, tuple(LINEAR_CLASSES), "format")
    if isinstance(layer.rank, list):
        object.__setattr__(layer, "rank", tuple(layer.rank))
    return LINEAR_CLASSES[layer.format]


class _Composite:
    """A layer made of named sublayers: params and masks nest by sublayer name."""

    def sublayers(self) -> dict[str, Any]:
        raise NotImplementedError

    def _init_sublayers(self, key, dtype) -> dict:
        subs = self.sublayers()
        keys = jax.random.split(key, len(subs))
        return {
            name: layer.init(k, dtype) for (name, layer), k in zip(subs.items(), keys, strict=True)
        }

    def _call(self, name, params, x, masks):
        return self.sublayers()[name].apply(params[name], x, masks=_sub(masks, name))

    @property
    def num_weights(self) -> int:
        return sum(
            layer.num_weights
            for layer in self.sublayers().values()
            if hasattr(layer, "num_weights")
        )

    @property
    def dense_weights(self) -> int:
        return sum(
            getattr(layer, "dense_weights", getattr(layer, "num_weights", 0))
            for layer in self.sublayers().values()
        )

    def structure(self, prefix: str = "") -> dict[str, CoreInfo]:
        out = {}
        for name, layer in self.sublayers().items():
            out.update(layer.structure(f"{prefix}{name}/"))
        return out


class _AttentionBase(_Composite):
    def _check(self):
        _check_positive_int(self.embed_dim, "embed_dim")
        _check_positive_int(self.num_heads, "num_heads")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"num_heads={self.num_heads} must divide embed_dim={self.embed_dim}")

    def init(self, key, dtype=jnp.float32) -> dict:
        dtype = _check_dtype(dtype)
        params = self._init_sublayers(key, dtype)
        if self.bias:  # nn.MultiheadAttention zeroes every projection bias
            params = {name: {**p, "bias": jnp.zeros_like(p["bias"])} for name, p in params.items()}
        return params

    def apply(self, params, query, key=None, value=None, masks=None):
        """Self-attention when ``key``/``value`` are None. ``query (T, B, E)`` -> ``(T, B, E)``
        (``(B, T, E)`` with ``batch_first=True``)."""
        key = query if key is None else key
        value = key if value is None else value
        for name, a in (("query", query), ("key", key), ("value", value)):
            if a.ndim != 3 or a.shape[-1] != self.embed_dim:
                raise ValueError(
                    f"{name} must have 3 axes, the last of size {self.embed_dim}; "
                    f"got {tuple(a.shape)}"
                )
        if not self.batch_first:
            query, key, value = (jnp.swapaxes(a, 0, 1) for a in (query, key, value))
        h, e = self.num_heads, self.embed_dim

        def heads(a):  # (B, T, E) -> (B, h, T, E/h)
            return jnp.swapaxes(jnp.reshape(a, a.shape[:2] + (h, e // h)), 1, 2)

        q = heads(self._call("q_proj", params, query, masks))
        k = heads(self._call("k_proj", params, key, masks))
        v = heads(self._call("v_proj", params, value, masks))
        out = jnp.swapaxes(scaled_dot_product_attention(q, k, v), 1, 2)
        out = self._call("out_proj", params, jnp.reshape(out, out.shape[:2] + (e,)), masks)
        return out if self.batch_first else jnp.swapaxes(out, 0, 1)


@dataclass(frozen=True)
class MultiheadAttention(_AttentionBase):
    """Dense multi-head attention: params ``{"q_proj", "k_proj", "v_proj", "out_proj"}``, each a
    `Dense` ``(E, E)`` (weights stored ``(in, out)``)."""

    embed_dim: int
    num_heads: int
    bias: bool = True
    batch_first: bool = False
    _subs: dict = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self):
        self._check()
        e = self.embed_dim
        qkv = _XavierPacked(Dense(e, e, self.bias))
        object.__setattr__(
            self,
            "_subs",
            {"q_proj": qkv, "k_proj": qkv, "v_proj": qkv, "out_proj": Dense(e, e, self.bias)},
        )

    def sublayers(self) -> dict[str, Any]:
        return self._subs


@dataclass(frozen=True)
class _XavierPacked:
    """A `Dense` ``(E, E)`` initialised as a third of torch's packed ``(3E, E)`` Xavier-uniform."""

    dense: Dense

    @property
    def num_weights(self) -> int:
        return self.dense.num_weights

    def init(self, key, dtype=jnp.float32) -> dict:
        e = self.dense.in_features
        bound = math.sqrt(6.0 / (e + 3 * e))
        params = {"weight": draw(key, "uniform", [(e, e)], dtype, bound)[0]}
        if self.dense.bias:
            params["bias"] = jnp.zeros((e,), dtype)
        return params

    def apply(self, params, x, masks=None):
        return self.dense.apply(params, x, masks)

    def structure(self, prefix: str = "") -> dict[str, CoreInfo]:
        return self.dense.structure(prefix)


@dataclass(frozen=True)
class TensorizedMultiheadAttention(_AttentionBase):
    """Multi-head attention whose Q/K/V/output projections are tensor networks.

    ``rank``, ``format``, ``in_modes``/``out_modes`` (of each ``(E, E)`` projection), ``d`` and
    ``strategy`` as `tedepr.backends.jax.TensorizedLinear`. Params: ``{"q_proj": {"cores", "bias"},
    ...}``.
    """

    embed_dim: int
    num_heads: int
    format: str = field(default="tt", kw_only=True)
    rank: Any = field(default=8, kw_only=True)
    bias: bool = field(default=True, kw_only=True)
    batch_first: bool = field(default=False, kw_only=True)
    in_modes: tuple | None = field(default=None, kw_only=True)
    out_modes: tuple | None = field(default=None, kw_only=True)
    d: int | None = field(default=None, kw_only=True)
    strategy: str = field(default="auto", kw_only=True)
    _subs: dict = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self):
        self._check()
        cls = _linear_class(self)
        e = self.embed_dim
        stds = {
            "q_proj": math.sqrt(1.0 / (2 * e)),
            "k_proj": math.sqrt(1.0 / (2 * e)),
            "v_proj": math.sqrt(1.0 / (2 * e)),
            "out_proj": 1.0 / math.sqrt(3 * e),
        }
        subs = {
            name: cls(
                e,
                e,
                self.rank,
                self.in_modes,
                self.out_modes,
                bias=self.bias,
                d=self.d,
                std=stds[name],
                strategy=self.strategy,
            )
            for name in _PROJECTIONS
        }
        object.__setattr__(self, "_subs", subs)
        object.__setattr__(self, "in_modes", subs["q_proj"].in_modes)
        object.__setattr__(self, "out_modes", subs["q_proj"].out_modes)

    def sublayers(self) -> dict[str, Any]:
        return self._subs


@dataclass(frozen=True)
class _EncoderBase(_Composite):
    """``nn.TransformerEncoderLayer``'s arguments (meaning and order) and their checks, shared by
    the dense and the tensorized encoder layer."""

    d_model: int
    nhead: int
    dim_feedforward: int = 2048
    activation: str = "relu"
    layer_norm_eps: float = 1e-5
    batch_first: bool = False
    norm_first: bool = False
    bias: bool = True

    def _check(self):
        _check_positive_int(self.d_model, "d_model")
        _check_positive_int(self.nhead, "nhead")
        _check_positive_int(self.dim_feedforward, "dim_feedforward")
        _check_choice(self.activation, ACTIVATIONS, "activation")

    def init(self, key, dtype=jnp.float32) -> dict:
        return self._init_sublayers(key, _check_dtype(dtype))

    def _act(self, x):
        return jax.nn.gelu(x, approximate=False) if self.activation == "gelu" else jax.nn.relu(x)

    def apply(self, params, x, masks=None):
        """``x (T, B, d_model)`` (``(B, T, d_model)`` with ``batch_first=True``) -> same shape."""

        def sa(z):
            return self._call("self_attn", params, z, masks)

        def ff(z):
            return self._call(
                "linear2", params, self._act(self._call("linear1", params, z, masks)), masks
            )

        def norm(name, z):
            return self._call(name, params, z, masks)

        if self.norm_first:
            x = x + sa(norm("norm1", x))
            return x + ff(norm("norm2", x))
        x = norm("norm1", x + sa(x))
        return norm("norm2", x + ff(x))


@dataclass(frozen=True)
class TransformerEncoderLayer(_EncoderBase):
    """``nn.TransformerEncoderLayer``: sublayers ``self_attn`` (`MultiheadAttention`),
    ``linear1``/``linear2`` (`Dense`), ``norm1``/``norm2`` (`LayerNorm`).

    `tensorize` replaces the attention and the feed-forward maps one by one
    (`with_sublayers`), as torch's ``tensorize`` replaces the submodules of an
    ``nn.TransformerEncoderLayer``; the sublayers take part in ``==``.
    """

    _subs: dict = field(init=False, repr=False, compare=True, hash=False)

    def __post_init__(self):
        self._check()
        d, f = self.d_model, self.dim_feedforward
        object.__setattr__(
            self,
            "_subs",
            {
                "self_attn": MultiheadAttention(d, self.nhead, self.bias, self.batch_first),
                "linear1": Dense(d, f, self.bias),
                "linear2": Dense(f, d, self.bias),
                "norm1": LayerNorm(d, self.layer_norm_eps),
                "norm2": LayerNorm(d, self.layer_norm_eps),
            },
        )

    def sublayers(self) -> dict[str, Any]:
        return self._subs

    def with_sublayers(self, **subs) -> TransformerEncoderLayer:
        """A copy with some sublayers replaced (e.g. ``linear1=TTLinear(...)``): same options,
        same forward; a replacement must map the same shapes."""
        unknown = sorted(set(subs) - set(self._subs))
        if unknown:
            raise ValueError(
                f"sublayers must be among {', '.join(map(repr, self._subs))}; got {unknown}"
            )
        new = copy.copy(self)
        object.__setattr__(new, "_subs", {**self._subs, **subs})
        return new


@dataclass(frozen=True)
class TensorizedTransformerEncoderLayer(_EncoderBase):
    """A Transformer encoder layer whose attention projections and both feed-forward projections are
    tensor networks (``rank``/``format``/``d``/``strategy`` as `TensorizedLinear`; modes
    automatic)."""

    format: str = field(default="tt", kw_only=True)
    rank: Any = field(default=8, kw_only=True)
    d: int | None = field(default=None, kw_only=True)
    strategy: str = field(default="auto", kw_only=True)
    _subs: dict = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self):
        self._check()
        cls = _linear_class(self)
        d, f = self.d_model, self.dim_feedforward
        subs = {
            "self_attn": TensorizedMultiheadAttention(
                d,
                self.nhead,
                format=self.format,
                rank=self.rank,
                bias=self.bias,
                batch_first=self.batch_first,
                d=self.d,
                strategy=self.strategy,
            ),
            "linear1": cls(d, f, self.rank, bias=self.bias, d=self.d, strategy=self.strategy),
            "linear2": cls(f, d, self.rank, bias=self.bias, d=self.d, strategy=self.strategy),
            "norm1": LayerNorm(d, self.layer_norm_eps),
            "norm2": LayerNorm(d, self.layer_norm_eps),
        }
        object.__setattr__(self, "_subs", subs)

    def sublayers(self) -> dict[str, Any]:
        return self._subs
