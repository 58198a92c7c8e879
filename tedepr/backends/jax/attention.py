"""Multi-head attention and Transformer encoder layers for JAX, dense and tensorized.

The tensorized versions hold each of the Q/K/V/output projections and both feed-forward projections
as its own tensor network (SPEC §3). Inputs are ``(T, B, E)`` by default and ``(B, T, E)`` with
``batch_first=True`` (as the zoo's ViT uses), as in PyTorch. Dropout is torch's: on the attention
weights, after the attention block, after the feed-forward activation and after the feed-forward
block, drawn only when ``apply`` gets ``train=True`` and a PRNG key (``key=`` for the encoder layer,
``dropout_key=`` for attention, whose ``key`` is the key input); otherwise the forward is
deterministic.

Initialisation follows PyTorch's ``nn.MultiheadAttention``: Q/K/V weights Xavier-uniform over the
packed ``(3E, E)`` input projection (std ``√(1/(2E))``; ``√(2/(E + kdim))`` for separate key/value
sizes), output weight ``nn.Linear``'s default (std ``1/√(3E)``), all attention biases zero. The
tensorized projections reproduce those stds exactly (``weight_init``/``std`` override them).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

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
    check_dropout_field,
    draw,
    dropout,
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


def scaled_dot_product_attention(q, k, v, *, dropout_rate: float = 0.0, key=None):
    """``softmax(q kᵀ / √d) v`` over the last two axes: q ``(..., T, d)``, k/v ``(..., S, d)``;
    with a PRNG ``key``, dropout of probability ``dropout_rate`` on the attention weights."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    logits = jnp.einsum("...td,...sd->...ts", q, k) * jnp.asarray(scale, q.dtype)
    weights = dropout(jax.nn.softmax(logits, axis=-1), dropout_rate, key)
    return jnp.einsum("...ts,...sd->...td", weights, v)


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

    def _call(self, name, params, x, masks, **kwargs):
        return self.sublayers()[name].apply(params[name], x, masks=_sub(masks, name), **kwargs)

    @property
    def stochastic(self) -> bool:
        """Whether a training forward draws random numbers (dropout)."""
        return getattr(self, "dropout", 0.0) > 0.0

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
    #: the keyword `Model` passes a layer's dropout key by (``key`` is the attention's key input)
    rng_argument: ClassVar[str] = "dropout_key"

    def _check(self):
        _check_positive_int(self.embed_dim, "embed_dim")
        _check_positive_int(self.num_heads, "num_heads")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"num_heads={self.num_heads} must divide embed_dim={self.embed_dim}")
        check_dropout_field(self)
        for name in ("kdim", "vdim"):
            if getattr(self, name, None) is None:
                object.__setattr__(self, name, self.embed_dim)
            else:
                _check_positive_int(getattr(self, name), name)

    def init(self, key, dtype=jnp.float32) -> dict:
        dtype = _check_dtype(dtype)
        params = self._init_sublayers(key, dtype)
        if self.bias:  # nn.MultiheadAttention zeroes every projection bias
            params = {name: {**p, "bias": jnp.zeros_like(p["bias"])} for name, p in params.items()}
        return params

    def apply(
        self,
        params,
        query,
        key=None,
        value=None,
        masks=None,
        *,
        train: bool = False,
        dropout_key=None,
    ):
        """Self-attention when ``key``/``value`` are None. ``query (T, B, E)``, ``key (S, B,
        kdim)``, ``value (S, B, vdim)`` -> ``(T, B, E)`` (batch first with ``batch_first=True``).
        ``train`` and a PRNG ``dropout_key`` switch dropout on the attention weights on."""
        key = query if key is None else key
        value = key if value is None else value
        for name, a, size in (
            ("query", query, self.embed_dim),
            ("key", key, self.kdim),
            ("value", value, self.vdim),
        ):
            if a.ndim != 3 or a.shape[-1] != size:
                raise ValueError(
                    f"{name} must have 3 axes, the last of size {size}; got {tuple(a.shape)}"
                )
        if (
            key.shape[:2] != value.shape[:2]
            or key.shape[1 - self.batch_first] != query.shape[1 - self.batch_first]
        ):
            raise ValueError(
                f"key and value must share batch and length with the query's batch; got query "
                f"{tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
            )
        if not self.batch_first:
            query, key, value = (jnp.swapaxes(a, 0, 1) for a in (query, key, value))
        h, e = self.num_heads, self.embed_dim

        def heads(a):  # (B, T, E) -> (B, h, T, E/h)
            return jnp.swapaxes(jnp.reshape(a, a.shape[:2] + (h, e // h)), 1, 2)

        q = heads(self._call("q_proj", params, query, masks))
        k = heads(self._call("k_proj", params, key, masks))
        v = heads(self._call("v_proj", params, value, masks))
        rng = dropout_key if train else None
        out = scaled_dot_product_attention(q, k, v, dropout_rate=self.dropout, key=rng)
        out = jnp.swapaxes(out, 1, 2)
        out = self._call("out_proj", params, jnp.reshape(out, out.shape[:2] + (e,)), masks)
        return out if self.batch_first else jnp.swapaxes(out, 0, 1)


@dataclass(frozen=True)
class MultiheadAttention(_AttentionBase):
    """Dense multi-head attention: params ``{"q_proj", "k_proj", "v_proj", "out_proj"}``, each a
    `Dense` ``(E, E)`` (weights stored ``(in, out)``); ``dropout`` on the attention weights."""

    embed_dim: int
    num_heads: int
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
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
class _TensorizedMaps:
    """The keyword-only options of the tensor networks in a tensorized attention or encoder
    layer, as `TensorizedLinear` takes them (``weight_init=None``: each map's torch default)."""

    format: str = field(default="tt", kw_only=True)
    rank: Any = field(default=8, kw_only=True)
    d: int | None = field(default=None, kw_only=True)
    weight_init: str | None = field(default=None, kw_only=True)
    std: float | None = field(default=None, kw_only=True)
    strategy: str = field(default="auto", kw_only=True)


@dataclass(frozen=True)
class TensorizedMultiheadAttention(_TensorizedMaps, _AttentionBase):
    """Multi-head attention whose Q/K/V/output projections are tensor networks.

    ``rank``, ``format``, ``d``, ``strategy`` as `tedepr.backends.jax.TensorizedLinear`;
    ``in_modes``/``out_modes`` of the ``(E, E)`` projections (query, output, and key and value
    unless ``kdim``/``vdim`` differ: those choose their own modes). ``dropout`` on the
    attention weights (training only, as `_AttentionBase.apply`); ``kdim``/``vdim`` the feature
    sizes of key and value (default ``embed_dim``). With ``weight_init=None`` and ``std=None`` the
    reconstructed projections get ``nn.MultiheadAttention``'s stds (the module docstring);
    ``weight_init`` names another dense init of every projection, ``std`` sets one std for all.
    Params: ``{"q_proj": {"cores", "bias"}, ...}`` (biases zero at init, as torch).
    """

    embed_dim: int
    num_heads: int
    bias: bool = field(default=True, kw_only=True)
    batch_first: bool = field(default=False, kw_only=True)
    dropout: float = field(default=0.0, kw_only=True)
    kdim: int | None = field(default=None, kw_only=True)
    vdim: int | None = field(default=None, kw_only=True)
    in_modes: tuple | None = field(default=None, kw_only=True)
    out_modes: tuple | None = field(default=None, kw_only=True)
    _subs: dict = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self):
        self._check()
        cls = _linear_class(self)
        e = self.embed_dim
        subs = {}
        for name, n_in in zip(_PROJECTIONS, (e, self.kdim, self.vdim, e), strict=True):
            subs[name] = cls(
                n_in,
                e,
                self.rank,
                *((self.in_modes, self.out_modes) if n_in == e else (None, None)),
                bias=self.bias,
                d=self.d,
                **projection_init(name, e, n_in, self.kdim, self.vdim, self.weight_init, self.std),
                strategy=self.strategy,
            )
        object.__setattr__(self, "_subs", subs)
        object.__setattr__(self, "in_modes", subs["q_proj"].in_modes)
        object.__setattr__(self, "out_modes", subs["q_proj"].out_modes)

    def sublayers(self) -> dict[str, Any]:
        return self._subs


def projection_init(name, embed_dim, n_in, kdim, vdim, weight_init, std) -> dict[str, Any]:
    """The ``weight_init``/``std`` keywords of one tensorized attention projection, so that its
    reconstructed weight has ``nn.MultiheadAttention``'s std (``weight_init=None``, ``std=None``):
    Xavier-uniform over the packed ``(3E, E)`` input projection, or over ``(E, n_in)`` when key and
    value sizes differ; ``nn.Linear``'s default on the output projection."""
    if std is not None:
        return {"std": std}
    if weight_init is not None:
        return {"weight_init": weight_init}
    if name == "out_proj":
        return {"weight_init": "torch"}
    same = kdim == embed_dim and vdim == embed_dim
    fan = 4 * embed_dim if same else embed_dim + n_in
    return {"std": math.sqrt(2.0 / fan)}


@dataclass(frozen=True)
class _EncoderBase(_Composite):
    """``nn.TransformerEncoderLayer``'s arguments (meaning and order) and their checks, shared by
    the dense and the tensorized encoder layer."""

    d_model: int
    nhead: int
    dim_feedforward: int = 2048
    dropout: float = 0.1
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
        check_dropout_field(self)

    def init(self, key, dtype=jnp.float32) -> dict:
        return self._init_sublayers(key, _check_dtype(dtype))

    def _act(self, x):
        return jax.nn.gelu(x, approximate=False) if self.activation == "gelu" else jax.nn.relu(x)

    def apply(self, params, x, masks=None, *, train: bool = False, key=None):
        """``x (T, B, d_model)`` (``(B, T, d_model)`` with ``batch_first=True``) -> same shape.
        ``train`` and a PRNG ``key`` switch dropout on, where ``nn.TransformerEncoderLayer`` has
        it: the attention weights, the attention block's output, the feed-forward activation and
        the feed-forward block's output."""
        on = train and key is not None and self.dropout > 0.0
        keys = [jax.random.fold_in(key, i) if on else None for i in range(4)]

        def sa(z):
            z = self._call("self_attn", params, z, masks, train=on, dropout_key=keys[0])
            return dropout(z, self.dropout, keys[1])

        def ff(z):
            h = dropout(self._act(self._call("linear1", params, z, masks)), self.dropout, keys[2])
            return dropout(self._call("linear2", params, h, masks), self.dropout, keys[3])

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
                "self_attn": MultiheadAttention(
                    d, self.nhead, self.bias, self.batch_first, self.dropout
                ),
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
class TensorizedTransformerEncoderLayer(_EncoderBase, _TensorizedMaps):
    """A Transformer encoder layer whose attention projections and both feed-forward projections are
    tensor networks: ``nn.TransformerEncoderLayer``'s arguments (``dropout`` included, where torch
    has it), plus ``rank``/``format``/``d``/``strategy`` as `TensorizedLinear` (modes automatic),
    ``weight_init``/``std`` for every map (None: each map's torch default, as
    `TensorizedMultiheadAttention` and `TensorizedLinear`)."""

    _subs: dict = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self):
        self._check()
        cls = _linear_class(self)
        d, f = self.d_model, self.dim_feedforward
        common = dict(
            d=self.d, weight_init=self.weight_init or "torch", std=self.std, strategy=self.strategy
        )
        subs = {
            "self_attn": TensorizedMultiheadAttention(
                d,
                self.nhead,
                format=self.format,
                rank=self.rank,
                bias=self.bias,
                batch_first=self.batch_first,
                dropout=self.dropout,
                d=self.d,
                weight_init=self.weight_init,
                std=self.std,
                strategy=self.strategy,
            ),
            "linear1": cls(d, f, self.rank, bias=self.bias, **common),
            "linear2": cls(f, d, self.rank, bias=self.bias, **common),
            "norm1": LayerNorm(d, self.layer_norm_eps),
            "norm2": LayerNorm(d, self.layer_norm_eps),
        }
        object.__setattr__(self, "_subs", subs)

    def sublayers(self) -> dict[str, Any]:
        return self._subs
