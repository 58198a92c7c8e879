"""LSTM layers for JAX: a plain `LSTM` and the `TensorizedLSTM` (TT-LSTM, Yang et al. 2017; TR-LSTM,
Pan et al. 2019), both one layer, scanned over time with `jax.lax.scan`.

Gate order ``(i, f, g, o)`` along the ``4·hidden_size`` axis, as in PyTorch::

    gates = x_t @ W_ih + b_ih + h_{t-1} @ W_hh + b_hh
    c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g);   h_t = σ(o) ⊙ tanh(c_t)

The tensorized layer holds the input-to-hidden map ``W_ih`` of all four gates as *one* tensor
network ``(input_size, 4·hidden_size)`` (optionally the hidden-to-hidden map too) and applies it to
every time step in one contraction before the scan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp

from ...init import INITS, target_std
from ...pruning.problem import CoreInfo
from .layers import (
    LINEAR_CLASSES,
    Dense,
    TensorizedLinear,
    _check_choice,
    _check_dtype,
    _check_positive_int,
    _layer_name,
    _param,
    _sub,
    draw,
    masked,
)

__all__ = ["LSTM", "TensorizedLSTM", "lstm_scan"]


def lstm_scan(gates_x, hidden_map, state=None):
    """Run the LSTM recurrence.

    Parameters
    ----------
    gates_x : array ``(T, B, 4H)``
        The input contribution to the gates (biases included) for every step.
    hidden_map : callable ``h (B, H) -> (B, 4H)``
        The hidden-to-hidden map.
    state : ``(h_0, c_0)`` of shape ``(B, H)`` each, optional (zeros).

    Returns
    -------
    outputs ``(T, B, H)`` and the final ``(h_T, c_T)``.
    """
    t, b, four_h = gates_x.shape
    h = four_h // 4
    if state is None:
        zeros = jnp.zeros((b, h), gates_x.dtype)
        state = (zeros, zeros)

    def step(carry, gx):
        h_prev, c_prev = carry
        gates = gx + hidden_map(h_prev)
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c_prev + jax.nn.sigmoid(i) * jnp.tanh(g)
        h_new = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h_new, c), h_new

    (h_t, c_t), outputs = jax.lax.scan(step, tuple(state), gates_x)
    return outputs, (h_t, c_t)


def _time_major(x, batch_first: bool, input_size: int):
    if x.ndim != 3 or x.shape[-1] != input_size:
        layout = "(B, T, input_size)" if batch_first else "(T, B, input_size)"
        raise ValueError(
            f"x must have shape {layout} with input_size={input_size}; got {tuple(x.shape)}"
        )
    return jnp.swapaxes(x, 0, 1) if batch_first else x


class _LSTMBase:
    def _run(self, gates_x, hidden_map, state):
        outputs, final = lstm_scan(gates_x, hidden_map, state)
        return (jnp.swapaxes(outputs, 0, 1) if self.batch_first else outputs), final

    def _biases(self, key, dtype) -> dict:
        n = 4 * self.hidden_size
        b_ih, b_hh = draw(key, "uniform", [(n,), (n,)], dtype, 1.0 / math.sqrt(self.hidden_size))
        return {"bias_ih": b_ih, "bias_hh": b_hh}


@dataclass(frozen=True)
class LSTM(_LSTMBase):
    """One dense LSTM layer (``nn.LSTM``'s init ``U(−1/√H, 1/√H)`` for every parameter).

    Params ``{"weight_ih": (input_size, 4H), "weight_hh": (H, 4H), "bias_ih": (4H,), "bias_hh":
    (4H,)}`` (the transposes of torch's). ``apply(params, x, masks=None, state=None)`` returns
    ``(outputs, (h_n, c_n))`` with outputs ``(T, B, H)`` (``(B, T, H)`` when ``batch_first``) and
    ``h_n``, ``c_n`` of shape ``(B, H)``.
    """

    input_size: int
    hidden_size: int
    bias: bool = True
    batch_first: bool = False

    def __post_init__(self):
        _check_positive_int(self.input_size, "input_size")
        _check_positive_int(self.hidden_size, "hidden_size")

    @property
    def num_weights(self) -> int:
        return (self.input_size + self.hidden_size) * 4 * self.hidden_size

    def init(self, key, dtype=jnp.float32) -> dict:
        dtype = _check_dtype(dtype)
        h4 = 4 * self.hidden_size
        shapes = [(self.input_size, h4), (self.hidden_size, h4)] + (
            [(h4,), (h4,)] if self.bias else []
        )
        # nn.LSTM draws every parameter from U(±1/√H): one draw
        arrays = draw(key, "uniform", shapes, dtype, 1.0 / math.sqrt(self.hidden_size))
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")[: len(arrays)]
        return dict(zip(names, arrays, strict=True))

    def apply(self, params, x, masks=None, state=None):
        x = _time_major(x, self.batch_first, self.input_size)
        w_ih = masked(_param(params, "weight_ih", self), _sub(masks, "weight_ih"))
        w_hh = masked(_param(params, "weight_hh", self), _sub(masks, "weight_hh"))
        gates_x = jnp.matmul(x, w_ih)
        if self.bias:
            gates_x = gates_x + _param(params, "bias_ih", self) + _param(params, "bias_hh", self)
        return self._run(gates_x, lambda h: jnp.matmul(h, w_hh), state)

    def structure(self, prefix: str = "") -> dict[str, CoreInfo]:
        layer = _layer_name(prefix)
        return {
            f"{prefix}weight_ih": CoreInfo(
                layer, "dense", layout=(1, 0)
            ),  # (in, 4H) vs torch's (4H, in)
            f"{prefix}weight_hh": CoreInfo(layer, "dense", layout=(1, 0)),
        }


@dataclass(frozen=True)
class TensorizedLSTM(_LSTMBase):
    """One LSTM layer whose input-to-hidden map of all four gates is one tensor network.

    Parameters
    ----------
    input_size, hidden_size, bias, batch_first : as `LSTM` (positional, as ``nn.LSTM``).
    format : {"tt", "tr", "tucker", "cp"} (keyword-only, like every option below)
    rank : int, tuple or float
        Ranks of the ``(input_size, 4·hidden_size)`` map (and of the hidden map if tensorized).
    in_modes, out_modes, d : modes of the input map (default balanced).
    tensorize_hidden : bool
        Also tensorize the ``(H, 4H)`` hidden-to-hidden map (default: dense, as in TT-LSTM).
    weight_init, std :
        Target element std of the maps: ``"torch"`` is ``nn.LSTM``'s ``1/√(3H)``; others use
        `tedepr.target_std` with the map's fan-in/fan-out; ``std`` overrides.
    strategy : contraction strategy of the tensorized maps.

    Params ``{"ih": {"cores": ...}, "hh": {"weight": (H, 4H)} or {"cores": ...}, "bias_ih",
    "bias_hh"}``.
    """

    input_size: int
    hidden_size: int
    bias: bool = True
    batch_first: bool = False
    format: str = field(default="tt", kw_only=True)
    rank: Any = field(default=8, kw_only=True)
    tensorize_hidden: bool = field(default=False, kw_only=True)
    in_modes: tuple | None = field(default=None, kw_only=True)
    out_modes: tuple | None = field(default=None, kw_only=True)
    d: int | None = field(default=None, kw_only=True)
    weight_init: str = field(default="torch", kw_only=True)
    std: float | None = field(default=None, kw_only=True)
    strategy: str = field(default="auto", kw_only=True)
    ih: TensorizedLinear = field(init=False, repr=False, compare=False, hash=False)
    hh: Any = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self):
        _check_positive_int(self.input_size, "input_size")
        _check_positive_int(self.hidden_size, "hidden_size")
        _check_choice(self.format, tuple(LINEAR_CLASSES), "format")
        _check_choice(self.weight_init, INITS, "weight_init")
        if isinstance(self.rank, list):
            object.__setattr__(self, "rank", tuple(self.rank))
        h4 = 4 * self.hidden_size
        cls = LINEAR_CLASSES[self.format]
        ih = cls(
            self.input_size,
            h4,
            self.rank,
            self.in_modes,
            self.out_modes,
            bias=False,
            d=self.d,
            std=self._std(self.input_size),
            strategy=self.strategy,
        )
        object.__setattr__(self, "ih", ih)
        object.__setattr__(self, "in_modes", ih.in_modes)
        object.__setattr__(self, "out_modes", ih.out_modes)
        if self.tensorize_hidden:
            hh = cls(
                self.hidden_size,
                h4,
                self.rank,
                bias=False,
                d=self.d,
                std=self._std(self.hidden_size),
                strategy=self.strategy,
            )
        else:
            hh = Dense(self.hidden_size, h4, bias=False)  # "torch" init: U(±1/√H), as nn.LSTM
        object.__setattr__(self, "hh", hh)

    def sublayers(self) -> dict[str, Any]:
        """The input-to-hidden and hidden-to-hidden maps."""
        return {"ih": self.ih, "hh": self.hh}

    def _std(self, fan_in: int) -> float:
        if self.std is not None:
            return float(self.std)
        if self.weight_init == "torch":
            return 1.0 / math.sqrt(3.0 * self.hidden_size)
        return target_std(self.weight_init, fan_in, 4 * self.hidden_size)

    @property
    def num_weights(self) -> int:
        return self.ih.num_weights + self.hh.num_weights

    @property
    def dense_weights(self) -> int:
        return (self.input_size + self.hidden_size) * 4 * self.hidden_size

    def init(self, key, dtype=jnp.float32) -> dict:
        dtype = _check_dtype(dtype)
        k1, k2, k3 = jax.random.split(key, 3)
        params = {"ih": self.ih.init(k1, dtype), "hh": self.hh.init(k2, dtype)}
        if self.bias:
            params.update(self._biases(k3, dtype))
        return params

    def apply(self, params, x, masks=None, state=None):
        """``x (T, B, input_size)`` (or ``(B, T, ...)``) -> ``(outputs, (h_n, c_n))`` as `LSTM`."""
        x = _time_major(x, self.batch_first, self.input_size)
        gates_x = self.ih.apply(_param(params, "ih", self), x, _sub(masks, "ih"))
        if self.bias:
            gates_x = gates_x + _param(params, "bias_ih", self) + _param(params, "bias_hh", self)
        hh_params, hh_masks = _param(params, "hh", self), _sub(masks, "hh")
        return self._run(gates_x, lambda h: self.hh.apply(hh_params, h, hh_masks), state)

    def structure(self, prefix: str = "") -> dict[str, CoreInfo]:
        return {**self.ih.structure(f"{prefix}ih/"), **self.hh.structure(f"{prefix}hh/")}
