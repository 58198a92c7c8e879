"""Tensorized attention: TensorizedMultiheadAttention and TensorizedTransformerEncoderLayer.

The query, key, value and output projections are four tensorized Linear layers (``q_proj``,
``k_proj``, ``v_proj``, ``out_proj``); the encoder layer also tensorizes both feed-forward
projections. Masks, shapes and dropout follow ``nn.MultiheadAttention`` /
``nn.TransformerEncoderLayer``: given the reconstructed weights (``in_proj_weight = cat(W_q.T,
W_k.T, W_v.T)``), the outputs are the same.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...shapes import check_format
from ...validation import check_dropout, check_sizes
from .layers import LINEAR_CLASSES, _check_strategy, _check_tensor, _spawn

__all__ = ["TensorizedMultiheadAttention", "TensorizedTransformerEncoderLayer"]


def _additive_mask(mask: torch.Tensor | None, dtype, name: str) -> torch.Tensor | None:
    """``nn.MultiheadAttention``'s convention (bool True = blocked; float = added) as a float
    mask."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(
            mask, -math.inf
        )
    if not torch.is_floating_point(mask):
        raise TypeError(f"{name} must be a bool or floating tensor; got {mask.dtype}")
    return mask.to(dtype)


def _one_init(weight_init: str | None, init: str | None) -> str | None:
    """``weight_init=`` (the shared name) or ``init=`` (its older spelling); None: torch defaults."""
    if weight_init is not None and init is not None and weight_init != init:
        raise ValueError(
            f"pass the init scheme once, as weight_init= (init= is its older spelling); got "
            f"weight_init={weight_init!r} and init={init!r}"
        )
    return init if weight_init is None else weight_init


class TensorizedMultiheadAttention(nn.Module):
    """``nn.MultiheadAttention`` with tensorized Q/K/V/O projections.

    Parameters
    ----------
    embed_dim, num_heads : int
    format : {"tt", "tr", "tucker", "cp"}
    rank : int, tuple or float
        Rank of each projection (see `TTLinear`).
    bias : bool
        Biases of the four projections (zero-initialised, as torch does).
    batch_first : bool
    dropout : float
        Dropout on the attention weights (training only).
    kdim, vdim : int, optional
        Feature sizes of key and value (default ``embed_dim``).
    in_modes, out_modes : tuple of int, optional
        Mode factorisations of the ``(E, E)`` projections (query, output, and key/value unless
        ``kdim``/``vdim`` differ: those choose their own modes; default: balanced). After
        construction they hold the query projection's modes.
    d, weight_init (older spelling: init), std, strategy, seed, device, dtype :
        As `TTLinear`. With ``weight_init=None`` and ``std=None`` the reconstructed projections get
        ``nn.MultiheadAttention``'s std: Xavier-uniform on the packed ``(3E, E)`` input projection
        (``sqrt(2/(4E))``; ``sqrt(2/(E+kdim))`` for separate key/value sizes) and ``nn.Linear``'s
        default on the output projection.

    Forward as ``nn.MultiheadAttention.forward``: ``query`` ``(L, N, E)`` (``(N, L, E)`` with
    ``batch_first``, or unbatched ``(L, E)``), ``key`` ``(S, N, kdim)``, ``value`` ``(S, N, vdim)``
    ->
    ``(attn_output (L, N, E), attn_weights (N, L, S) or (N, num_heads, L, S), or None)``.
    """

    # Read by torch's Transformer fast paths; these values make them take the regular path.
    _qkv_same_embed_dim = False
    in_proj_weight = None
    in_proj_bias = None
    bias_k = None
    bias_v = None
    add_zero_attn = False

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        *,
        format: str = "tt",
        rank=8,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        kdim: int | None = None,
        vdim: int | None = None,
        in_modes=None,
        out_modes=None,
        d: int | None = None,
        weight_init: str | None = None,
        std: float | None = None,
        strategy: str = "auto",
        seed=None,
        device=None,
        dtype=None,
        init: str | None = None,
    ) -> None:
        super().__init__()
        init = _one_init(weight_init, init)
        format = check_format(format)
        _check_strategy(strategy)
        check_sizes(embed_dim=embed_dim, num_heads=num_heads)
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}")
        dropout = check_dropout(dropout)
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.kdim = embed_dim if kdim is None else kdim
        self.vdim = embed_dim if vdim is None else vdim
        self.batch_first, self.dropout, self.format = bool(batch_first), dropout, format
        self.decomposition_error: dict[str, float] | None = None
        cls = LINEAR_CLASSES[format]
        seeds = _spawn(seed, 4)
        same = self.kdim == embed_dim and self.vdim == embed_dim
        for k, (name, n_in) in enumerate(
            (
                ("q_proj", embed_dim),
                ("k_proj", self.kdim),
                ("v_proj", self.vdim),
                ("out_proj", embed_dim),
            )
        ):
            layer_std, layer_init = std, init or "torch"
            if std is None and init is None and name != "out_proj":
                fan = 4 * embed_dim if same else embed_dim + n_in  # xavier on (3E, E) or (E, n_in)
                layer_std = math.sqrt(2.0 / fan)
            layer = cls(
                n_in,
                embed_dim,
                rank,
                *((in_modes, out_modes) if n_in == embed_dim else (None, None)),
                bias=bias,
                d=d,
                init=layer_init,
                std=layer_std,
                strategy=strategy,
                seed=seeds[k],
                device=device,
                dtype=dtype,
            )
            if bias:
                nn.init.zeros_(layer.bias)
            setattr(self, name, layer)
        self.in_modes, self.out_modes = self.q_proj.in_modes, self.q_proj.out_modes

    def extra_repr(self) -> str:
        s = f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, format={self.format!r}"
        if (self.kdim, self.vdim) != (self.embed_dim, self.embed_dim):
            s += f", kdim={self.kdim}, vdim={self.vdim}"
        if self.batch_first:
            s += ", batch_first=True"
        return s + (f", dropout={self.dropout}" if self.dropout else "")

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ):
        for arg, tensor in (("query", query), ("key", key), ("value", value)):
            _check_tensor(tensor, self, arg)
        batched = query.dim() == 3
        if query.dim() not in (2, 3) or key.dim() != query.dim() or value.dim() != query.dim():
            raise ValueError(
                f"query, key and value must all be 3-D (batched) or 2-D (unbatched); got "
                f"shapes {tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
            )
        if not batched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        # from here on: (N, L, E)
        n, tgt, src = query.shape[0], query.shape[1], key.shape[1]
        for name, t, dim in (
            ("query", query, self.embed_dim),
            ("key", key, self.kdim),
            ("value", value, self.vdim),
        ):
            if t.shape[-1] != dim:
                raise ValueError(f"{name} must have {dim} features; got shape {tuple(t.shape)}")
        if key.shape[:2] != value.shape[:2] or key.shape[0] != n:
            raise ValueError(
                f"key and value must share batch and length with the query's batch; got "
                f"key {tuple(key.shape)}, value {tuple(value.shape)}, batch {n}"
            )
        h, hd = self.num_heads, self.head_dim
        q = self.q_proj(query).reshape(n, tgt, h, hd).transpose(1, 2)
        k = self.k_proj(key).reshape(n, src, h, hd).transpose(1, 2)
        v = self.v_proj(value).reshape(n, src, h, hd).transpose(1, 2)
        mask = self._merged_mask(
            attn_mask, key_padding_mask, is_causal, n, tgt, src, q.dtype, q.device
        )
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = torch.matmul(q * (1.0 / math.sqrt(hd)), k.transpose(-2, -1))
            if mask is not None:
                scores = scores + mask
            weights = torch.softmax(scores, dim=-1)
            if p > 0.0:
                weights = F.dropout(weights, p, True)
            out = torch.matmul(weights, v)
            if average_attn_weights:
                weights = weights.mean(dim=1)
            if not batched:
                weights = weights.squeeze(0)
        else:
            causal_only = is_causal and attn_mask is None and key_padding_mask is None
            out = F.scaled_dot_product_attention(
                q, k, v, None if causal_only else mask, p, is_causal=causal_only
            )
        out = self.out_proj(out.transpose(1, 2).reshape(n, tgt, self.embed_dim))
        if not batched:
            out = out.squeeze(0)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights

    def _merged_mask(self, attn_mask, key_padding_mask, is_causal, n, tgt, src, dtype, device):
        """One additive mask broadcastable to ``(N, num_heads, L, S)``, or None."""
        if is_causal and attn_mask is None:
            attn_mask = torch.ones(tgt, src, dtype=torch.bool, device=device).triu(1)
        merged = None
        am = _additive_mask(attn_mask, dtype, "attn_mask")
        if am is not None:
            if am.dim() == 2 and tuple(am.shape) == (tgt, src):
                merged = am.reshape(1, 1, tgt, src)
            elif am.dim() == 3 and tuple(am.shape) == (n * self.num_heads, tgt, src):
                merged = am.reshape(n, self.num_heads, tgt, src)
            else:
                raise ValueError(
                    f"attn_mask must have shape ({tgt}, {src}) or "
                    f"({n * self.num_heads}, {tgt}, {src}); got {tuple(attn_mask.shape)}"
                )
        kpm = _additive_mask(key_padding_mask, dtype, "key_padding_mask")
        if kpm is not None:
            if tuple(kpm.shape) != (n, src):
                raise ValueError(
                    f"key_padding_mask must have shape ({n}, {src}); got "
                    f"{tuple(key_padding_mask.shape)}"
                )
            kpm = kpm.reshape(n, 1, 1, src)
            merged = kpm if merged is None else merged + kpm
        return merged

    @classmethod
    def from_dense(
        cls,
        mha: nn.MultiheadAttention,
        format: str = "tt",
        rank=8,
        rtol: float | None = None,
        *,
        d: int | None = None,
        strategy: str = "auto",
        **options: Any,
    ) -> TensorizedMultiheadAttention:
        """Decompose a trained ``nn.MultiheadAttention``'s four projections (float64).

        Packed ``in_proj_weight`` rows are ``[W_q; W_k; W_v]`` in ``(out, in)`` layout; biases are
        copied. ``decomposition_error`` maps ``"q_proj"`` .. ``"out_proj"`` to relative errors.
        """
        if not isinstance(mha, nn.MultiheadAttention):
            raise TypeError(f"mha must be an nn.MultiheadAttention; got {type(mha).__name__}")
        if mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError("from_dense does not support add_bias_kv=True or add_zero_attn=True")
        e = mha.embed_dim
        if mha._qkv_same_embed_dim:
            weights = mha.in_proj_weight.detach().chunk(3)
        else:
            weights = (
                mha.q_proj_weight.detach(),
                mha.k_proj_weight.detach(),
                mha.v_proj_weight.detach(),
            )
        biases = (
            mha.in_proj_bias.detach().chunk(3)
            if mha.in_proj_bias is not None
            else (None, None, None)
        )
        ref = weights[0]
        layer = cls(
            e,
            mha.num_heads,
            format=format,
            rank=1,
            bias=mha.in_proj_bias is not None,
            batch_first=mha.batch_first,
            dropout=mha.dropout,
            kdim=mha.kdim,
            vdim=mha.vdim,
            strategy=strategy,
            seed=0,
            device=ref.device,
            dtype=ref.dtype,
        )
        lin = LINEAR_CLASSES[layer.format]
        out_bias = None if mha.out_proj.bias is None else mha.out_proj.bias.detach()
        errors = {}
        for name, w, b in (
            ("q_proj", weights[0], biases[0]),
            ("k_proj", weights[1], biases[1]),
            ("v_proj", weights[2], biases[2]),
            ("out_proj", mha.out_proj.weight.detach(), out_bias),
        ):
            sub = lin._from_matrix(w.T, b, rank, rtol, d=d, strategy=strategy, **options)
            setattr(layer, name, sub)
            errors[name] = sub.decomposition_error
        layer.decomposition_error = errors
        layer.in_modes, layer.out_modes = layer.q_proj.in_modes, layer.q_proj.out_modes
        return layer


def _activation(activation) -> Callable[[torch.Tensor], torch.Tensor]:
    if isinstance(activation, str):
        if activation == "relu":
            return F.relu
        if activation == "gelu":
            return F.gelu
        raise ValueError(f"activation must be 'relu', 'gelu' or a callable; got {activation!r}")
    if not callable(activation):
        raise ValueError(f"activation must be 'relu', 'gelu' or a callable; got {activation!r}")
    return activation


class TensorizedTransformerEncoderLayer(nn.Module):
    """``nn.TransformerEncoderLayer`` with tensorized attention projections and feed-forward maps.

    Arguments as ``nn.TransformerEncoderLayer`` (``d_model``, ``nhead``, ``dim_feedforward``,
    ``dropout``, ``activation``, ``layer_norm_eps``, ``batch_first``, ``norm_first``, ``bias``),
    plus keyword-only ``format``, ``rank``, ``d``, ``weight_init``, ``std``, ``strategy``, ``seed``,
    ``device``, ``dtype`` for the tensorized maps (``weight_init=None``: each map's torch default).

    Forward: ``src`` ``(L, N, d_model)`` (``(N, L, d_model)`` with ``batch_first``), optional
    ``src_mask``, ``src_key_padding_mask``, ``is_causal`` -> same shape as ``src``.
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str | Callable[[torch.Tensor], torch.Tensor] = F.relu,
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        *,
        format: str = "tt",
        rank=8,
        d: int | None = None,
        weight_init: str | None = None,
        std: float | None = None,
        strategy: str = "auto",
        seed=None,
        device=None,
        dtype=None,
        init: str | None = None,
    ) -> None:
        super().__init__()
        init = _one_init(weight_init, init)
        format = check_format(format)
        seeds = _spawn(seed, 3)
        common = dict(d=d, std=std, strategy=strategy, device=device, dtype=dtype)
        self.self_attn = TensorizedMultiheadAttention(
            d_model,
            nhead,
            format=format,
            rank=rank,
            bias=bias,
            batch_first=batch_first,
            dropout=dropout,
            init=init,
            seed=seeds[0],
            **common,
        )
        cls = LINEAR_CLASSES[format]
        self.linear1 = cls(
            d_model, dim_feedforward, rank, bias=bias, init=init or "torch", seed=seeds[1], **common
        )
        self.dropout = nn.Dropout(dropout)
        self.linear2 = cls(
            dim_feedforward, d_model, rank, bias=bias, init=init or "torch", seed=seeds[2], **common
        )
        self.norm_first = norm_first
        self.norm1 = nn.LayerNorm(
            d_model, eps=layer_norm_eps, bias=bias, device=device, dtype=dtype
        )
        self.norm2 = nn.LayerNorm(
            d_model, eps=layer_norm_eps, bias=bias, device=device, dtype=dtype
        )
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = _activation(activation)
        self.decomposition_error: dict[str, Any] | None = None

    def forward(
        self,
        src: torch.Tensor,
        src_mask: torch.Tensor | None = None,
        src_key_padding_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ):
        _check_tensor(src, self, "src")
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2(x + self._ff_block(x))
        return x

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        x = self.self_attn(
            x,
            x,
            x,
            attn_mask=attn_mask,
            key_padding_mask=key_padding_mask,
            need_weights=False,
            is_causal=is_causal,
        )[0]
        return self.dropout1(x)

    def _ff_block(self, x):
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    @classmethod
    def from_dense(
        cls,
        layer: nn.TransformerEncoderLayer,
        format: str = "tt",
        rank=8,
        rtol: float | None = None,
        *,
        d: int | None = None,
        strategy: str = "auto",
        **options: Any,
    ) -> TensorizedTransformerEncoderLayer:
        """Decompose a trained ``nn.TransformerEncoderLayer`` (attention and both FFN maps).

        Norms, dropout and activation are copied; ``decomposition_error`` maps ``"self_attn"`` (a
        dict), ``"linear1"`` and ``"linear2"`` to relative errors.
        """
        if not isinstance(layer, nn.TransformerEncoderLayer):
            raise TypeError(
                f"layer must be an nn.TransformerEncoderLayer; got {type(layer).__name__}"
            )
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.self_attn = TensorizedMultiheadAttention.from_dense(
            layer.self_attn, format, rank, rtol, d=d, strategy=strategy, **options
        )
        lin = LINEAR_CLASSES[check_format(format)]
        new.linear1 = lin.from_dense(layer.linear1, rank, rtol, d=d, strategy=strategy, **options)
        new.dropout = nn.Dropout(layer.dropout.p)
        new.linear2 = lin.from_dense(layer.linear2, rank, rtol, d=d, strategy=strategy, **options)
        new.norm_first = layer.norm_first
        new.norm1 = copy.deepcopy(layer.norm1)
        new.norm2 = copy.deepcopy(layer.norm2)
        new.dropout1 = nn.Dropout(layer.dropout1.p)
        new.dropout2 = nn.Dropout(layer.dropout2.p)
        new.activation = layer.activation
        new.decomposition_error = {
            "self_attn": new.self_attn.decomposition_error,
            "linear1": new.linear1.decomposition_error,
            "linear2": new.linear2.decomposition_error,
        }
        new.train(layer.training)
        return new
