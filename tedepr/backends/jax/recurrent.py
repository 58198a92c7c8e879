"""Recurrent layers for JAX: plain `LSTM` and `GRU`, and `TensorizedLSTM` / `TensorizedGRU`
(TT-LSTM, Yang et al. 2017; TR-LSTM, Pan et al. 2019), scanned over time with `jax.lax.scan`;
``num_layers`` stacked layers with ``dropout`` between them, as ``nn.LSTM`` / ``nn.GRU``.

Gate order along the ``gates·hidden_size`` axis is ``(i, f, g, o)`` for the LSTM and ``(r, z, n)``
for the GRU — the order of the published equations (Hochreiter & Schmidhuber 1997; Cho et al. 2014),
which ``nn.LSTM`` / ``nn.GRU`` use too, so weights copied between the backends give equal outputs::

    LSTM: gates = x_t W_ih + b_ih + h_{t-1} W_hh + b_hh
          c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g);   h_t = σ(o) ⊙ tanh(c_t)
    GRU:  r = σ(x_t W_ir + b_ir + h W_hr + b_hr);   z = σ(x_t W_iz + b_iz + h W_hz + b_hz)
          n = tanh(x_t W_in + b_in + r ⊙ (h W_hn + b_hn));   h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

The tensorized layers hold each layer's input-to-hidden map of all gates as *one* tensor network
``(n_in, gates·hidden_size)`` (optionally the hidden-to-hidden map too) and apply it to every time
step in one contraction before the scan.

Parameters of layer ``k`` are named as in `tedepr.io`'s interchange format (and ``nn.LSTM``):
``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``; a tensorized map is a
sublayer of that name (its cores ``weight_ih_l{k}/cores/j``), a dense hidden map a plain array. So
the report rows, masks keys and `count_weights` layers of a recurrent layer carry the same names in
both backends (docs/jax.md, "Names of recurrent layers").
Dropout (probability ``dropout``, on the outputs of every layer but the last) is applied only when
``apply`` gets ``train=True`` and a PRNG ``key``; with ``train=False`` (the default) or no key the
forward is deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from ...init import INITS, target_std
from ...pruning.problem import CoreInfo
from .layers import (
    LINEAR_CLASSES,
    Dense,
    _check_choice,
    _check_dtype,
    _check_positive_int,
    _layer_name,
    _param,
    _sub,
    check_dropout_field,
    draw,
    dropout,
    masked,
)

__all__ = ["LSTM", "GRU", "TensorizedLSTM", "TensorizedGRU", "lstm_scan", "gru_scan"]


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


def gru_scan(gates_x, hidden_map, state=None):
    """Run the GRU recurrence.

    Parameters
    ----------
    gates_x : array ``(T, B, 3H)``
        ``x_t W_ih + b_ih`` for every step.
    hidden_map : callable ``h (B, H) -> (B, 3H)``
        ``h W_hh + b_hh`` (the hidden bias stays inside, it is gated by ``r`` for ``n``).
    state : ``h_0`` of shape ``(B, H)``, optional (zeros).

    Returns
    -------
    outputs ``(T, B, H)`` and the final ``h_T``.
    """
    t, b, three_h = gates_x.shape
    if state is None:
        state = jnp.zeros((b, three_h // 3), gates_x.dtype)

    def step(h_prev, gx):
        xr, xz, xn = jnp.split(gx, 3, axis=-1)
        hr, hz, hn = jnp.split(hidden_map(h_prev), 3, axis=-1)
        r = jax.nn.sigmoid(xr + hr)
        z = jax.nn.sigmoid(xz + hz)
        n = jnp.tanh(xn + r * hn)
        h_new = (1.0 - z) * n + z * h_prev
        return h_new, h_new

    h_t, outputs = jax.lax.scan(step, state, gates_x)
    return outputs, h_t


def _time_major(x, batch_first: bool, input_size: int):
    if x.ndim != 3 or x.shape[-1] != input_size:
        layout = "(B, T, input_size)" if batch_first else "(T, B, input_size)"
        raise ValueError(
            f"x must have shape {layout} with input_size={input_size}; got {tuple(x.shape)}"
        )
    return jnp.swapaxes(x, 0, 1) if batch_first else x


def _suffix(k: int) -> str:
    """The key suffix of layer ``k``'s parameters: ``_l{k}``, as torch's (and the interchange
    format's) ``weight_ih_l0`` — the one backend-neutral name of a recurrent layer's maps."""
    return f"_l{k}"


# the keys of layer 0 before the recurrent names were made the same in both backends
_OLD_KEYS = {
    "ih": "weight_ih_l0",
    "hh": "weight_hh_l0",
    "weight_ih": "weight_ih_l0",
    "weight_hh": "weight_hh_l0",
    "bias_ih": "bias_ih_l0",
    "bias_hh": "bias_hh_l0",
}


def _check_current_keys(params, layer) -> None:
    """A clear error for params in the older layout (layer 0 unsuffixed, tensorized maps ``ih`` /
    ``hh``, a dense hidden map ``{"weight": ...}``), e.g. from a checkpoint written before."""
    if not isinstance(params, dict):
        return
    old = sorted(k for k in params if k in _OLD_KEYS)
    if old:
        renames = ", ".join(f"{k!r} -> {_OLD_KEYS[k]!r}" for k in old)
        raise ValueError(
            f"params of {type(layer).__name__} use the older recurrent keys {old}: the maps of "
            f"layer k are now named weight_ih_l{{k}} / weight_hh_l{{k}} (bias_ih_l{{k}}, ...) in "
            f"both backends; rename {renames} (and the _l{{k}} keys' 'ih_l{{k}}' -> "
            "'weight_ih_l{k}', a dense hidden map {'weight': w} -> w), or re-save the model with "
            "tedepr.save, whose files keep the same names"
        )


@dataclass(frozen=True)
class _RecurrentBase:
    """The ``nn.LSTM``/``nn.GRU`` fields, stacking, state shapes and dropout between layers, shared
    by the four recurrent layers."""

    input_size: int
    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0

    _gates: ClassVar[int] = 4

    def _check_common(self) -> None:
        _check_positive_int(self.input_size, "input_size")
        _check_positive_int(self.hidden_size, "hidden_size")
        _check_positive_int(self.num_layers, "num_layers")
        check_dropout_field(self)

    @property
    def stochastic(self) -> bool:
        """Whether a training forward draws random numbers (dropout between stacked layers)."""
        return self.dropout > 0.0 and self.num_layers > 1

    def _n_in(self, k: int) -> int:
        return self.input_size if k == 0 else self.hidden_size

    def _layer_key(self, key, k: int):
        # layer 0 draws from the key itself, so a one-layer model keeps its one-layer init
        return key if k == 0 else jax.random.fold_in(key, k)

    def _biases(self, key, dtype, k: int) -> dict:
        n = self._gates * self.hidden_size
        b_ih, b_hh = draw(key, "uniform", [(n,), (n,)], dtype, 1.0 / math.sqrt(self.hidden_size))
        return {f"bias_ih{_suffix(k)}": b_ih, f"bias_hh{_suffix(k)}": b_hh}

    def _states(self, state) -> list:
        if state is None:
            return [None] * self.num_layers
        if self.num_layers == 1:
            return [state]
        if self._gates == 4:
            h, c = state
            return [(h[k], c[k]) for k in range(self.num_layers)]
        return [state[k] for k in range(self.num_layers)]

    def _final(self, finals: list):
        if self.num_layers == 1:
            return finals[0]
        if self._gates == 4:
            return jnp.stack([f[0] for f in finals]), jnp.stack([f[1] for f in finals])
        return jnp.stack(finals)

    def _forward(self, params, x, state, train: bool, key, input_map, hidden_map):
        """Run every layer: ``input_map(k, x) -> (T, B, G·H)`` (no bias) and ``hidden_map(k) ->
        (h -> (B, G·H))`` (no bias) give layer ``k``'s maps; biases, scans and dropout here."""
        _check_current_keys(params, self)
        x = _time_major(x, self.batch_first, self.input_size)
        scan = lstm_scan if self._gates == 4 else gru_scan
        states = self._states(state)
        finals = []
        for k in range(self.num_layers):
            s = _suffix(k)
            gates_x, hmap = input_map(k, x), hidden_map(k)
            if self.bias:
                gates_x = gates_x + _param(params, f"bias_ih{s}", self)
                b_hh = _param(params, f"bias_hh{s}", self)
                if self._gates == 4:  # the LSTM adds both biases outside the recurrence
                    gates_x = gates_x + b_hh
                else:  # the GRU's hidden bias is gated by r (for n): it stays inside

                    def hmap(h, _f=hmap, _b=b_hh):
                        return _f(h) + _b

            x, final = scan(gates_x, hmap, states[k])
            finals.append(final)
            if train and key is not None and k < self.num_layers - 1:
                x = dropout(x, self.dropout, jax.random.fold_in(key, k))
        return (jnp.swapaxes(x, 0, 1) if self.batch_first else x), self._final(finals)


class _DenseRecurrent(_RecurrentBase):
    @property
    def num_weights(self) -> int:
        gh = self._gates * self.hidden_size
        return sum((self._n_in(k) + self.hidden_size) * gh for k in range(self.num_layers))

    def init(self, key, dtype=jnp.float32) -> dict:
        dtype = _check_dtype(dtype)
        gh = self._gates * self.hidden_size
        params = {}
        for k in range(self.num_layers):
            s = _suffix(k)
            shapes = [(self._n_in(k), gh), (self.hidden_size, gh)]
            shapes += [(gh,), (gh,)] if self.bias else []
            # torch's RNNs draw every parameter from U(±1/√H): one draw per layer
            arrays = draw(
                self._layer_key(key, k), "uniform", shapes, dtype, 1.0 / math.sqrt(self.hidden_size)
            )
            names = (f"weight_ih{s}", f"weight_hh{s}", f"bias_ih{s}", f"bias_hh{s}")
            params.update(zip(names[: len(arrays)], arrays, strict=True))
        return params

    def apply(self, params, x, masks=None, state=None, *, train: bool = False, key=None):
        """``x (T, B, input_size)`` (``(B, T, ...)`` when ``batch_first``) -> ``(outputs, final)``
        (see the class docstring); ``train`` and ``key`` switch dropout between layers on."""

        def weight(name):
            return masked(_param(params, name, self), _sub(masks, name))

        def input_map(k, x):
            return jnp.matmul(x, weight(f"weight_ih{_suffix(k)}"))

        def hidden_map(k):
            w = weight(f"weight_hh{_suffix(k)}")
            return lambda h: jnp.matmul(h, w)

        return self._forward(params, x, state, train, key, input_map, hidden_map)

    def structure(self, prefix: str = "") -> dict[str, CoreInfo]:
        layer = _layer_name(prefix)
        out = {}
        for k in range(self.num_layers):
            for name in (f"weight_ih{_suffix(k)}", f"weight_hh{_suffix(k)}"):
                # stored (n_in, G·H): the transpose of the canonical (G·H, n_in) layout
                out[f"{prefix}{name}"] = CoreInfo(layer, "dense", layout=(1, 0))
        return out


_DENSE_DOC = """``num_layers`` dense {kind} layers (``nn.{kind}``'s init ``U(−1/√H, 1/√H)`` for every
    parameter).

    Params ``{{"weight_ih": (input_size, {g}H), "weight_hh": (H, {g}H), "bias_ih": ({g}H,),
    "bias_hh": ({g}H,)}}`` with the suffix ``_l{{k}}`` for layer ``k`` (``weight_ih_l0``, ...; the
    transposes of torch's). ``apply(params, x, masks=None, state=None, *, train=False, key=None)``
    returns ``(outputs, {final})`` with outputs ``(T, B, H)`` (``(B, T, H)`` when ``batch_first``);
    the final state has shape ``(B, H)`` for one layer and ``(num_layers, B, H)`` (as torch) for
    more, and ``state`` is given in the same shapes.
    """


@dataclass(frozen=True)
class LSTM(_DenseRecurrent):
    _gates: ClassVar[int] = 4

    def __post_init__(self):
        self._check_common()


@dataclass(frozen=True)
class GRU(_DenseRecurrent):
    _gates: ClassVar[int] = 3

    def __post_init__(self):
        self._check_common()


LSTM.__doc__ = _DENSE_DOC.format(kind="LSTM", g=4, final="(h_n, c_n)")
GRU.__doc__ = _DENSE_DOC.format(kind="GRU", g=3, final="h_n")


@dataclass(frozen=True)
class _TensorizedRecurrent(_RecurrentBase):
    """The fields and the construction of `TensorizedLSTM` and `TensorizedGRU` (which differ only
    in their number of gates)."""

    format: str = field(default="tt", kw_only=True)
    rank: Any = field(default=8, kw_only=True)
    tensorize_hidden: bool = field(default=False, kw_only=True)
    in_modes: tuple | None = field(default=None, kw_only=True)
    out_modes: tuple | None = field(default=None, kw_only=True)
    d: int | None = field(default=None, kw_only=True)
    weight_init: str = field(default="torch", kw_only=True)
    std: float | None = field(default=None, kw_only=True)
    strategy: str = field(default="auto", kw_only=True)
    maps: dict = field(init=False, repr=False, compare=False, hash=False)
    ih: Any = field(init=False, repr=False, compare=False, hash=False)
    hh: Any = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self):
        self._check_common()
        _check_choice(self.format, tuple(LINEAR_CLASSES), "format")
        _check_choice(self.weight_init, INITS, "weight_init")
        if isinstance(self.rank, list):
            object.__setattr__(self, "rank", tuple(self.rank))
        gh = self._gates * self.hidden_size
        cls = LINEAR_CLASSES[self.format]
        out_modes = self.out_modes
        maps: dict[str, Any] = {}
        for k in range(self.num_layers):
            n_in, s = self._n_in(k), _suffix(k)
            maps[f"weight_ih{s}"] = cls(
                n_in,
                gh,
                self.rank,
                self.in_modes if k == 0 else None,
                out_modes,
                bias=False,
                d=self.d,
                std=self._std(n_in),
                strategy=self.strategy,
            )
            if self.tensorize_hidden:
                maps[f"weight_hh{s}"] = cls(
                    self.hidden_size,
                    gh,
                    self.rank,
                    bias=False,
                    d=self.d,
                    std=self._std(self.hidden_size),
                    strategy=self.strategy,
                )
            else:  # "torch" init: U(±1/√H), as nn.LSTM / nn.GRU
                # held as a plain (H, G·H) array under weight_hh_l{k}, as torch's parameter
                maps[f"weight_hh{s}"] = Dense(self.hidden_size, gh, bias=False)
        object.__setattr__(self, "maps", maps)
        object.__setattr__(self, "ih", maps["weight_ih_l0"])
        object.__setattr__(self, "hh", maps["weight_hh_l0"])
        object.__setattr__(self, "in_modes", maps["weight_ih_l0"].in_modes)
        object.__setattr__(self, "out_modes", maps["weight_ih_l0"].out_modes)

    def sublayers(self) -> dict[str, Any]:
        """Every layer's tensorized maps (``weight_ih_l0``, ``weight_hh_l0`` when tensorized,
        ``weight_ih_l1``, ...); a dense hidden map is a plain array of this layer, not a
        sublayer (see `maps` for every map)."""
        return {n: m for n, m in self.maps.items() if not isinstance(m, Dense)}

    def _std(self, fan_in: int) -> float:
        if self.std is not None:
            return float(self.std)
        if self.weight_init == "torch":
            return 1.0 / math.sqrt(3.0 * self.hidden_size)
        return target_std(self.weight_init, fan_in, self._gates * self.hidden_size)

    @property
    def num_weights(self) -> int:
        return sum(m.num_weights for m in self.maps.values())

    @property
    def dense_weights(self) -> int:
        gh = self._gates * self.hidden_size
        return sum((self._n_in(k) + self.hidden_size) * gh for k in range(self.num_layers))

    def init(self, key, dtype=jnp.float32) -> dict:
        dtype = _check_dtype(dtype)
        params = {}
        for k in range(self.num_layers):
            s = _suffix(k)
            k1, k2, k3 = jax.random.split(self._layer_key(key, k), 3)
            params[f"weight_ih{s}"] = self.maps[f"weight_ih{s}"].init(k1, dtype)
            hh = self.maps[f"weight_hh{s}"]
            p_hh = hh.init(k2, dtype)
            params[f"weight_hh{s}"] = p_hh["weight"] if isinstance(hh, Dense) else p_hh
            if self.bias:
                params.update(self._biases(k3, dtype, k))
        return params

    def apply(self, params, x, masks=None, state=None, *, train: bool = False, key=None):
        """``x (T, B, input_size)`` (or ``(B, T, ...)``) -> ``(outputs, final)`` as the dense
        layer; ``train`` and ``key`` switch dropout between layers on."""

        def input_map(k, x):
            name = f"weight_ih{_suffix(k)}"
            return self.maps[name].apply(_param(params, name, self), x, _sub(masks, name))

        def hidden_map(k):
            name = f"weight_hh{_suffix(k)}"
            p, m, sub = _param(params, name, self), _sub(masks, name), self.maps[name]
            if isinstance(sub, Dense):  # a plain array: masked here
                w = masked(p, m)
                return lambda h: jnp.matmul(h, w)
            return lambda h: sub.apply(p, h, m)

        return self._forward(params, x, state, train, key, input_map, hidden_map)

    def structure(self, prefix: str = "") -> dict[str, CoreInfo]:
        out = {}
        for name, sub in self.maps.items():
            if isinstance(sub, Dense):  # its own row, named after the array (as torch's)
                out[f"{prefix}{name}"] = CoreInfo(f"{prefix}{name}", "dense", layout=(1, 0))
            else:
                out.update(sub.structure(f"{prefix}{name}/"))
        return out


_TENSORIZED_DOC = """``num_layers`` {kind} layers whose input-to-hidden map of all {g} gates is one
    tensor network per layer.

    Parameters
    ----------
    input_size, hidden_size, num_layers, bias, batch_first, dropout :
        As `{kind}` (positional, as ``nn.{kind}``).
    format : {{"tt", "tr", "tucker", "cp"}} (keyword-only, like every option below)
    rank : int, tuple or float
        Ranks of every ``(n_in, {g}·hidden_size)`` map (and of the hidden maps if tensorized).
    in_modes, out_modes, d :
        Modes of the first layer's input (other layers: automatic) and of every input map's
        ``{g}·hidden_size`` output (default balanced).
    tensorize_hidden : bool
        Also tensorize the ``(H, {g}H)`` hidden-to-hidden maps (default: dense, as in TT-LSTM).
    weight_init, std :
        Target element std of the maps: ``"torch"`` is ``nn.{kind}``'s ``1/√(3H)``; others use
        `tedepr.target_std` with the map's fan-in/fan-out; ``std`` overrides.
    strategy : contraction strategy of the tensorized maps.

    Params of layer 0 ``{{"weight_ih_l0": {{"cores": ...}}, "weight_hh_l0": (H, {g}H) or
    {{"cores": ...}}, "bias_ih_l0", "bias_hh_l0"}}``, of layer ``k`` the same keys with ``_l{{k}}``.
    ``apply`` as `{kind}`.
    """


@dataclass(frozen=True)
class TensorizedLSTM(_TensorizedRecurrent):
    _gates: ClassVar[int] = 4


@dataclass(frozen=True)
class TensorizedGRU(_TensorizedRecurrent):
    _gates: ClassVar[int] = 3


TensorizedLSTM.__doc__ = _TENSORIZED_DOC.format(kind="LSTM", g=4)
TensorizedGRU.__doc__ = _TENSORIZED_DOC.format(kind="GRU", g=3)
