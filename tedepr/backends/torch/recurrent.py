"""Tensorized recurrent layers: TensorizedLSTM and TensorizedGRU.

As in TT-LSTM (Yang et al. 2017) and TR-LSTM (Pan et al. 2019), the input-to-hidden maps of all
gates form ONE tensorized map ``input_size -> gates·hidden_size`` per layer (``weight_ih_l{k}``, a
tensorized Linear without bias). Because it does not depend on the state, it is applied to the whole
sequence at once; only the hidden-to-hidden map runs step by step. The hidden-to-hidden map
``weight_hh_l{k}`` is a dense parameter in ``nn.LSTM`` layout ``(gates·hidden_size, hidden_size)``
unless ``tensorize_hidden=True`` (then a tensorized map ``hidden_size -> gates·hidden_size``).

Gate order and equations are torch's (LSTM: i, f, g, o; GRU: r, z, n), so a layer loaded with the
reconstructed weights of an ``nn.LSTM``/``nn.GRU`` computes the same outputs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...init import target_std
from ...shapes import check_format
from ...validation import check_dropout, check_sizes
from .layers import (
    LINEAR_CLASSES,
    _check_strategy,
    _check_tensor,
    _spawn,
    resolve_weight_init,
)

__all__ = ["TensorizedLSTM", "TensorizedGRU"]


class _TensorizedRNNBase(nn.Module):
    _gates = 0
    # each dense hidden-to-hidden weight is a report row (and count_weights layer) of its own,
    # named after the weight (``lstm.weight_hh_l0``), as its tensorized maps are: one name per
    # map in both backends (docs/torch.md, "Names of recurrent layers")
    _weight_rows = True
    _dense_class: type[nn.RNNBase]

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        *,
        format: str = "tt",
        rank=8,
        tensorize_hidden: bool = False,
        in_modes=None,
        out_modes=None,
        d: int | None = None,
        weight_init: str = "torch",
        std: float | None = None,
        strategy: str = "auto",
        seed=None,
        device=None,
        dtype=None,
        init: str | None = None,
    ) -> None:
        super().__init__()
        init = resolve_weight_init(weight_init, init)
        format = check_format(format)
        _check_strategy(strategy)
        check_sizes(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)
        dropout = check_dropout(dropout)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bool(bias), bool(batch_first), dropout
        self.format, self.tensorize_hidden = format, bool(tensorize_hidden)
        self.decomposition_error: dict[str, float] | None = None
        dtype = torch.get_default_dtype() if dtype is None else dtype
        gh = self._gates * hidden_size
        # torch's RNNs draw every weight and bias from U(-1/sqrt(H), 1/sqrt(H)): std 1/sqrt(3H).
        bound = 1.0 / math.sqrt(hidden_size)
        map_std = std if std is not None or init != "torch" else bound / math.sqrt(3.0)
        seeds = _spawn(seed, 2 * num_layers)
        cls = LINEAR_CLASSES[format]
        for k in range(num_layers):
            n_in = input_size if k == 0 else hidden_size
            setattr(
                self,
                f"weight_ih_l{k}",
                cls(
                    n_in,
                    gh,
                    rank,
                    in_modes if k == 0 else None,
                    out_modes,
                    bias=False,
                    d=d,
                    init=init,
                    std=map_std,
                    strategy=strategy,
                    seed=seeds[2 * k],
                    device=device,
                    dtype=dtype,
                ),
            )
            if tensorize_hidden:
                setattr(
                    self,
                    f"weight_hh_l{k}",
                    cls(
                        hidden_size,
                        gh,
                        rank,
                        bias=False,
                        d=d,
                        init=init,
                        std=map_std,
                        strategy=strategy,
                        seed=seeds[2 * k + 1],
                        device=device,
                        dtype=dtype,
                    ),
                )
            else:
                w = torch.empty(gh, hidden_size, device=device, dtype=dtype)
                with torch.no_grad():
                    if std is not None:
                        nn.init.normal_(w, 0.0, std)
                    elif init == "torch":
                        nn.init.uniform_(w, -bound, bound)
                    else:
                        nn.init.normal_(w, 0.0, target_std(init, hidden_size, gh))
                self.register_parameter(f"weight_hh_l{k}", nn.Parameter(w))
            for name in (f"bias_ih_l{k}", f"bias_hh_l{k}"):
                if bias:
                    b = nn.Parameter(torch.empty(gh, device=device, dtype=dtype))
                    nn.init.uniform_(b, -bound, bound)
                    self.register_parameter(name, b)
                else:
                    self.register_parameter(name, None)

    # ------------------------------------------------------------------ structure
    def _prunable_tensor_names(self) -> tuple[str, ...]:
        """The dense hidden-to-hidden weights (tensorized maps are layers of their own)."""
        return tuple(f"weight_hh_l{k}" for k in range(self.num_layers) if not self.tensorize_hidden)

    def _hh(self, k: int, h: torch.Tensor) -> torch.Tensor:
        w = getattr(self, f"weight_hh_l{k}")
        return w(h) if self.tensorize_hidden else F.linear(h, w)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, format={self.format!r}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.tensorize_hidden:
            s += ", tensorize_hidden=True"
        return s

    # ------------------------------------------------------------------ forward
    def _check_input(self, x, hx):
        if isinstance(x, nn.utils.rnn.PackedSequence):
            raise TypeError(
                f"{type(self).__name__} does not take a PackedSequence; pass the padded "
                "tensor (and mask the padded steps downstream)"
            )
        _check_tensor(x, self)
        if x.dim() not in (2, 3) or x.shape[-1] != self.input_size:
            raise ValueError(
                f"input must have shape (L, N, {self.input_size}) (batch_first: "
                f"(N, L, {self.input_size})) or (L, {self.input_size}); got "
                f"{tuple(x.shape)}"
            )
        batched = x.dim() == 3
        if not batched:
            x = x.unsqueeze(1)
        elif self.batch_first:
            x = x.transpose(0, 1)
        return x, batched

    def _initial(self, hx, batch, x, batched, name):
        shape = (self.num_layers, batch, self.hidden_size)
        if hx is None:
            return x.new_zeros(shape)
        h = hx if batched else hx.unsqueeze(1)
        if tuple(h.shape) != shape:
            expected = shape if batched else (self.num_layers, self.hidden_size)
            raise ValueError(f"{name} must have shape {expected}; got {tuple(hx.shape)}")
        return h

    def _layers(self, x, states):
        """Run every layer over ``x`` ``(L, N, input)``; ``states`` one tuple of ``(N, H)`` per
        layer."""
        seq, batch = x.shape[0], x.shape[1]
        finals = []
        for k in range(self.num_layers):
            gx = getattr(self, f"weight_ih_l{k}")(x.reshape(seq * batch, -1)).reshape(
                seq, batch, -1
            )
            b_ih, b_hh = getattr(self, f"bias_ih_l{k}"), getattr(self, f"bias_hh_l{k}")
            outputs, state = self._scan(k, gx, b_ih, b_hh, states[k])
            finals.append(state)
            x = torch.stack(outputs) if outputs else x.new_zeros((0, batch, self.hidden_size))
            if self.dropout and self.training and k < self.num_layers - 1:
                x = F.dropout(x, self.dropout, True)
        return x, finals

    def _output(self, y, batched):
        if not batched:
            return y.squeeze(1)
        return y.transpose(0, 1) if self.batch_first else y

    @classmethod
    def from_dense(
        cls,
        rnn: nn.RNNBase,
        format: str = "tt",
        rank=8,
        rtol: float | None = None,
        *,
        tensorize_hidden: bool = False,
        in_modes=None,
        d: int | None = None,
        strategy: str = "auto",
        **options: Any,
    ):
        """Decompose a trained ``nn.LSTM`` (`TensorizedLSTM`) or ``nn.GRU`` (`TensorizedGRU`):
        its input-to-hidden maps (``weight_ih_l{k}.T``), and with ``tensorize_hidden`` its
        hidden-to-hidden maps too.

        Dense weights and biases are copied; ``decomposition_error`` maps each decomposed weight's
        name to its relative Frobenius error.
        """
        expected = cls._dense_class
        kw = {"in_modes": in_modes, "d": d}
        if not isinstance(rnn, expected):
            raise TypeError(f"rnn must be an {expected.__name__}; got {type(rnn).__name__}")
        if rnn.bidirectional or getattr(rnn, "proj_size", 0):
            raise ValueError(
                f"{cls.__name__}.from_dense supports unidirectional layers without "
                f"projections; got bidirectional={rnn.bidirectional}, "
                f"proj_size={getattr(rnn, 'proj_size', 0)}"
            )
        w0 = rnn.weight_ih_l0.detach()
        layer = cls(
            rnn.input_size,
            rnn.hidden_size,
            rnn.num_layers,
            rnn.bias,
            rnn.batch_first,
            rnn.dropout,
            format=format,
            rank=1,
            tensorize_hidden=tensorize_hidden,
            strategy=strategy,
            seed=0,
            device=w0.device,
            dtype=w0.dtype,
        )
        lin = LINEAR_CLASSES[layer.format]
        errors = {}
        for k in range(rnn.num_layers):
            names = [f"weight_ih_l{k}"] + ([f"weight_hh_l{k}"] if tensorize_hidden else [])
            for name in names:
                sub_kw = (
                    dict(kw)
                    if name == "weight_ih_l0"
                    else {key: v for key, v in kw.items() if key not in ("in_modes",)}
                )
                sub = lin._from_matrix(
                    getattr(rnn, name).detach().T,
                    None,
                    rank,
                    rtol,
                    strategy=strategy,
                    **sub_kw,
                    **options,
                )
                setattr(layer, name, sub)
                errors[name] = sub.decomposition_error
            with torch.no_grad():
                if not tensorize_hidden:
                    getattr(layer, f"weight_hh_l{k}").copy_(getattr(rnn, f"weight_hh_l{k}"))
                if rnn.bias:
                    for name in (f"bias_ih_l{k}", f"bias_hh_l{k}"):
                        getattr(layer, name).copy_(getattr(rnn, name))
        layer.decomposition_error = errors
        return layer


class TensorizedLSTM(_TensorizedRNNBase):
    """``nn.LSTM`` whose input-to-hidden maps are tensorized (TT-LSTM, Yang et al. 2017).

    Parameters
    ----------
    input_size, hidden_size, num_layers, bias, batch_first, dropout :
        As ``nn.LSTM`` (unidirectional, no projection).
    format : {"tt", "tr", "tucker", "cp"}
    rank : int, tuple or float
        Rank of every tensorized map (see `TTLinear`).
    tensorize_hidden : bool
        Also tensorize the hidden-to-hidden maps.
    in_modes, out_modes, d : modes of the first layer's input (other layers: automatic) and of
        every input-to-hidden map's ``gates·hidden_size`` output.
    weight_init, std :
        Target std of the reconstructed weights; the default ``"torch"`` matches ``nn.LSTM``
        (``U(-1/sqrt(H), 1/sqrt(H))``, std ``1/sqrt(3H)``); other names use ``fan_in`` of each map.
        ``init=`` is accepted as the older spelling of ``weight_init=``.
    strategy, seed, device, dtype : as `TTLinear`.

    Forward: ``input`` ``(L, N, input_size)`` (``(N, L, input_size)`` with ``batch_first``, or
    unbatched ``(L, input_size)``) and optional ``(h_0, c_0)`` each ``(num_layers, N, hidden_size)``
    -> ``output, (h_n, c_n)`` with ``nn.LSTM``'s shapes.
    """

    _gates = 4
    _dense_class = nn.LSTM

    def forward(self, input: torch.Tensor, hx=None):
        x, batched = self._check_input(input, hx)
        batch = x.shape[1]
        if hx is None:
            h0 = c0 = self._initial(None, batch, x, batched, "h_0")
        else:
            h0 = self._initial(hx[0], batch, x, batched, "h_0")
            c0 = self._initial(hx[1], batch, x, batched, "c_0")
        y, finals = self._layers(x, [(h0[k], c0[k]) for k in range(self.num_layers)])
        h_n = torch.stack([s[0] for s in finals])
        c_n = torch.stack([s[1] for s in finals])
        if not batched:
            h_n, c_n = h_n.squeeze(1), c_n.squeeze(1)
        return self._output(y, batched), (h_n, c_n)

    def _scan(self, k, gx, b_ih, b_hh, state):
        h, c = state
        if b_ih is not None:
            gx = gx + (b_ih + b_hh)
        outputs = []
        for t in range(gx.shape[0]):
            i, f, g, o = (gx[t] + self._hh(k, h)).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        return outputs, (h, c)


class TensorizedGRU(_TensorizedRNNBase):
    """``nn.GRU`` whose input-to-hidden maps (gates r, z, n) form one tensorized map per layer.

    Arguments as `TensorizedLSTM`. Forward: ``input`` and optional ``h_0``
    ``(num_layers, N, hidden_size)`` -> ``output, h_n`` with ``nn.GRU``'s shapes.
    """

    _gates = 3
    _dense_class = nn.GRU

    def forward(self, input: torch.Tensor, hx=None):
        x, batched = self._check_input(input, hx)
        h0 = self._initial(hx, x.shape[1], x, batched, "h_0")
        y, finals = self._layers(x, [(h0[k],) for k in range(self.num_layers)])
        h_n = torch.stack([s[0] for s in finals])
        return self._output(y, batched), (h_n if batched else h_n.squeeze(1))

    def _scan(self, k, gx, b_ih, b_hh, state):
        (h,) = state
        if b_ih is not None:
            gx = gx + b_ih
        outputs = []
        for t in range(gx.shape[0]):
            gh = self._hh(k, h)
            if b_hh is not None:
                gh = gh + b_hh
            xr, xz, xn = gx[t].chunk(3, dim=-1)
            hr, hz, hn = gh.chunk(3, dim=-1)
            r = torch.sigmoid(xr + hr)
            z = torch.sigmoid(xz + hz)
            n = torch.tanh(xn + r * hn)
            h = (1 - z) * n + z * h
            outputs.append(h)
        return outputs, (h,)
