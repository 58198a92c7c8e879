"""Tensorized ``nn.Conv2d`` replacements: TTConv2d, TRConv2d, TuckerConv2d, CPConv2d.

The kernel ``K`` ``(C_out, C_in/groups, kh, kw)`` is factorised through its matrix view ``W =
K.reshape(C_out, -1).T`` of shape ``(C_in/groups·kh·kw, C_out)`` (docs/method.md §2): TT/TR in the
Garipov layout (channel modes plus a spatial core), Tucker-2 (factors on the channels only), CP with
four factors (Lebedev et al. 2015).

Forward strategies:

* ``"reconstruct"`` — build ``K`` from the cores (planned once), then one ``F.conv2d``. Always
  valid.
* ``"factorized"`` — Tucker-2: 1×1 conv (``U_in``) → kh×kw conv with the core → 1×1 conv
  (``U_out``); CP: 1×1 → kh×1 depthwise → 1×kw depthwise → 1×1. Tucker and CP with ``groups=1``.
* ``"unfold"`` — the TT-conv of Garipov et al. (2016): ``F.unfold`` the patches and run the planned
  chain contraction on them (any format, ``groups=1``). Never chosen by ``"auto"``: it materialises
  every patch (``kh·kw`` times the input).
* ``"auto"`` — the cheaper of ``"reconstruct"`` and ``"factorized"`` by a FLOP estimate (plus a
  fixed overhead per launched op), decided once per input shape ``(N, H, W)`` and cached.

With ``groups > 1`` the per-group kernel is factorised and only ``"reconstruct"`` applies (the
grouped structure is then one ``F.conv2d`` call). Padding modes other than ``"zeros"`` are rejected.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...contraction import STEP_OVERHEAD_FLOPS, plan_reconstruction
from ...decompositions import decompose_conv
from ...init import random_factorized_conv
from ...shapes import check_format
from ...tensorizing import CONV_STRATEGIES
from ...validation import check_sizes
from .layers import (
    TensorizedLayer,
    _check_strategy,
    _check_tensor,
    _resolve_d,
    _torch_seed,
    resolve_weight_init,
)

__all__ = [
    "TTConv2d",
    "TRConv2d",
    "TuckerConv2d",
    "CPConv2d",
    "CONV_CLASSES",
    "conv_class",
    "CONV_STRATEGIES",
]

PADDING_MODES = ("zeros",)
_MAX_CACHED_SHAPES = 32


def _pair(value, name: str, minimum: int) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    try:
        pair = tuple(pair)
    except TypeError:
        pair = None
    if (
        pair is None
        or len(pair) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in pair)
    ):
        raise ValueError(f"{name} must be an int >= {minimum} or a pair of them; got {value!r}")
    return pair


@torch._dynamo.assume_constant_result
def _estimate_const(layer, key) -> str:
    """``layer._cheapest(key)``; a constant for torch.compile (planning runs at trace time, so a
    fresh layer compiles without a graph break)."""
    return layer._cheapest(key)


class _TensorizedConv2d(TensorizedLayer):
    """Shared implementation of the four tensorized Conv2d layers (see `TTConv2d`), exported as
    ``TensorizedConv2d``: called itself with ``format=`` (default ``"tt"``) it builds the class of
    that format, as the JAX backend's."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        rank=8,
        in_modes=None,
        out_modes=None,
        d: int | None = None,
        weight_init: str = "torch",
        std: float | None = None,
        strategy: str = "auto",
        format: str | None = None,
        seed=None,
        device=None,
        dtype=None,
        init: str | None = None,
    ) -> None:
        super().__init__()
        self._check_format_argument(format)
        init = resolve_weight_init(weight_init, init)
        check_sizes(in_channels=in_channels, out_channels=out_channels, groups=groups)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups={groups} must divide in_channels={in_channels} and "
                f"out_channels={out_channels}"
            )
        if padding_mode not in PADDING_MODES:
            raise ValueError(
                f"padding_mode must be one of {', '.join(map(repr, PADDING_MODES))} "
                f"(tensorized convolutions pad with zeros only); got {padding_mode!r}"
            )
        _check_strategy(strategy, CONV_STRATEGIES)
        if strategy in ("factorized", "unfold") and groups != 1:
            raise ValueError(
                f"strategy={strategy!r} needs groups=1; with groups={groups} use "
                "'reconstruct' or 'auto'"
            )
        if strategy == "factorized" and self.format not in ("tucker", "cp"):
            raise ValueError(
                f"strategy='factorized' exists for 'tucker' and 'cp' convolutions; "
                f"{type(self).__name__} allows 'auto', 'reconstruct' or 'unfold'"
            )
        if self.format in ("tucker", "cp") and (
            in_modes is not None or out_modes is not None or d is not None
        ):
            raise ValueError(
                f"in_modes, out_modes and d apply to TT/TR convolutions only; the "
                f"{self.format!r} scheme has fixed modes (docs/method.md §2)"
            )
        kh, kw = _pair(kernel_size, "kernel_size", 1)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = (kh, kw)
        self.stride = _pair(stride, "stride", 1)
        self.dilation = _pair(dilation, "dilation", 1)
        self.groups = groups
        self.padding_mode = padding_mode
        self.padding = self._check_padding(padding)
        self._pads = self._resolve_padding()
        d = _resolve_d(d, in_modes, out_modes, None)
        f = random_factorized_conv(
            self.format,
            in_channels // groups,
            out_channels,
            (kh, kw),
            rank,
            std=std,
            init=init,
            seed=_torch_seed(seed),
            in_modes=in_modes,
            out_modes=out_modes,
            d=d,
        )
        # the unfold path contracts patches with tedepr's own planner ("auto" picks its order)
        self._set_factorization(f, strategy="auto", device=device, dtype=dtype)
        self._conv_strategy = strategy
        self._choices: dict[tuple[int, int, int], str] = {}
        if bias:
            bound = 1.0 / math.sqrt(in_channels // groups * kh * kw)
            self.bias = nn.Parameter(
                torch.empty(out_channels, device=device, dtype=dtype or torch.get_default_dtype())
            )
            nn.init.uniform_(self.bias, -bound, bound)
        else:
            self.register_parameter("bias", None)

    # ------------------------------------------------------------------ padding
    def _check_padding(self, padding):
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(
                    f"padding must be an int, a pair of ints, 'same' or 'valid'; got {padding!r}"
                )
            if padding == "same" and self.stride != (1, 1):
                raise ValueError(
                    f"padding='same' needs stride 1 (as in nn.Conv2d); got stride={self.stride}"
                )
            return padding
        return _pair(padding, "padding", 0)

    def _resolve_padding(self) -> tuple[int, int, int, int]:
        """``(top, bottom, left, right)`` zero padding."""
        if self.padding == "valid":
            return (0, 0, 0, 0)
        if self.padding == "same":
            pads = []
            for k, dil in zip(self.kernel_size, self.dilation, strict=True):
                total = dil * (k - 1)
                pads += [
                    total // 2,
                    total - total // 2,
                ]  # like torch: the extra row/column at the end
            return tuple(pads)
        ph, pw = self.padding
        return (ph, ph, pw, pw)

    def _prepare(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Pad ``x`` up front when the padding is asymmetric; returns the symmetric rest."""
        top, bottom, left, right = self._pads
        if top == bottom and left == right:
            return x, (top, left)
        return F.pad(x, (left, right, top, bottom)), (0, 0)

    @property
    def strategy(self) -> str:
        return self._conv_strategy

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C_in, H, W)`` or ``(C_in, H, W)`` -> ``(N, C_out, H_out, W_out)`` (or
        unbatched)."""
        _check_tensor(x, self)
        if x.dim() not in (3, 4) or x.shape[-3] != self.in_channels:
            raise ValueError(
                f"input must have shape (N, {self.in_channels}, H, W) or "
                f"({self.in_channels}, H, W); got {tuple(x.shape)}"
            )
        if x.dim() == 3:
            return self.forward(x.unsqueeze(0)).squeeze(0)
        strategy = self._choose(x.shape[0], x.shape[2], x.shape[3])
        x, pad = self._prepare(x)
        if strategy == "reconstruct":
            return F.conv2d(
                x, self.kernel(), self.bias, self.stride, pad, self.dilation, self.groups
            )
        if strategy == "unfold":
            return self._forward_unfold(x, pad)
        return self._forward_factorized(x, pad)

    def kernel(self) -> torch.Tensor:
        """The reconstructed kernel ``(C_out, C_in/groups, kh, kw)`` (differentiable)."""
        kh, kw = self.kernel_size
        return self.dense_weight().T.reshape(self.out_channels, -1, kh, kw)

    @property
    def weight(self) -> torch.Tensor:
        """The reconstructed kernel in ``nn.Conv2d`` layout; a computed tensor, not a parameter."""
        return self.kernel()

    def _forward_unfold(self, x: torch.Tensor, pad) -> torch.Tensor:
        n, _, h, w = x.shape
        ho, wo = self._output_size(h + 2 * pad[0], w + 2 * pad[1])
        cols = F.unfold(x, self.kernel_size, self.dilation, pad, self.stride)  # (N, C_in·kh·kw, L)
        y = self._matmul(cols.transpose(1, 2).reshape(n * ho * wo, -1))  # (N·L, C_out)
        y = y.reshape(n, ho * wo, self.out_channels).transpose(1, 2).reshape(n, -1, ho, wo)
        if self.bias is not None:
            y = y + self.bias.reshape(1, -1, 1, 1)
        return y

    def _forward_factorized(self, x: torch.Tensor, pad) -> torch.Tensor:
        raise NotImplementedError  # overridden by the Tucker and CP layers

    def _output_size(self, hp: int, wp: int) -> tuple[int, int]:
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        return (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1

    # ------------------------------------------------------------------ strategy choice
    def _choose(self, n: int, h: int, w: int) -> str:
        if self._conv_strategy != "auto":
            return self._conv_strategy
        key = (int(n), int(h), int(w))
        choice = self._choices.get(key)
        if choice is None:
            if torch.compiler.is_compiling():  # no cache writes while tracing (dynamo guards)
                return _estimate_const(self, key)
            choice = self._estimate(key)
        return choice

    def _cheapest(self, key) -> str:
        costs = self.flop_estimates(*key)
        return min(costs, key=costs.get)

    def _estimate(self, key) -> str:
        choice = self._cheapest(key)
        if len(self._choices) >= _MAX_CACHED_SHAPES:
            self._choices.pop(next(iter(self._choices)))
        self._choices[key] = choice
        return choice

    def flop_estimates(self, n: int, h: int, w: int) -> dict[str, float]:
        """Estimated cost (FLOPs plus a fixed overhead per op) of each strategy ``"auto"``
        weighs."""
        top, bottom, left, right = self._pads
        hp, wp = h + top + bottom, w + left + right
        ho, wo = self._output_size(hp, wp)
        if self._reconstruction is None:
            self._reconstruction = plan_reconstruction(self._shape_template())
        rec = self._reconstruction
        c_in_g = self.in_channels // self.groups
        kh, kw = self.kernel_size
        costs = {
            "reconstruct": rec.flops
            + 2.0 * n * ho * wo * self.out_channels * c_in_g * kh * kw
            + STEP_OVERHEAD_FLOPS * (rec.num_steps + 1)
        }
        if self.groups == 1:
            factorized = self._factorized_flops(n, h, w, hp, wp, ho, wo)
            if factorized is not None:
                costs["factorized"] = factorized
        return costs

    def _factorized_flops(self, n, h, w, hp, wp, ho, wo):
        return None

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding not in ((0, 0), "valid"):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return f"{s}, {self._describe()}, bias={self.bias is not None}"

    # ------------------------------------------------------------------ from a trained layer
    @classmethod
    def from_dense(
        cls,
        conv: nn.Conv2d,
        rank=8,
        rtol: float | None = None,
        *,
        in_modes=None,
        out_modes=None,
        d: int | None = None,
        strategy: str = "auto",
        **options: Any,
    ):
        """Decompose a trained ``nn.Conv2d`` into this scheme (`tedepr.decompose_conv`, float64).

        Geometry, bias, dtype and device come from ``conv``; ``rank=None`` is exact for TT and
        Tucker. The achieved relative Frobenius error of the kernel is in ``decomposition_error``.
        """
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"conv must be an nn.Conv2d; got {type(conv).__name__}")
        if conv.padding_mode not in PADDING_MODES:
            raise ValueError(
                f"padding_mode must be one of {', '.join(map(repr, PADDING_MODES))}; "
                f"the convolution has padding_mode={conv.padding_mode!r}"
            )
        weight = conv.weight.detach()
        f = decompose_conv(
            weight.to(torch.float64),
            cls.format,
            rank,
            rtol=rtol,
            in_modes=in_modes,
            out_modes=out_modes,
            d=d,
            **options,
        )
        channel_modes = {}
        if cls.format in ("tt", "tr"):
            channel_modes = {"in_modes": f.in_modes[:-1], "out_modes": f.out_modes[:-1]}
        layer = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
            rank=tuple(f.ranks),
            strategy=strategy,
            seed=0,
            device=weight.device,
            dtype=weight.dtype,
            **channel_modes,
        )
        layer._load_cores(f.cores)
        if conv.bias is not None:
            with torch.no_grad():
                layer.bias.copy_(conv.bias.detach())
        layer.decomposition_error = f.error
        return layer


class TTConv2d(_TensorizedConv2d):
    """``nn.Conv2d`` whose kernel is a TT-matrix in the layout of Garipov et al. (2016).

    Arguments as ``nn.Conv2d`` (``padding_mode="zeros"`` only) plus, keyword-only: ``rank`` (int,
    exact ranks or float budget), ``in_modes``/``out_modes``/``d`` for the channel modes (the
    spatial mode ``kh·kw`` is the last core, ``(r_{d}, kh·kw, 1, 1)``), ``init``/``std`` (exact
    variance preservation; the default ``"torch"`` matches ``nn.Conv2d``'s std ``1/sqrt(3·fan_in)``
    with ``fan_in = C_in/groups·kh·kw``), ``strategy`` (``"auto"``, ``"reconstruct"`` or
    ``"unfold"``), ``seed``, ``device``, ``dtype``.

    Shapes: ``(N, C_in, H, W) -> (N, C_out, H_out, W_out)`` as ``nn.Conv2d``.
    """

    format = "tt"


class TRConv2d(_TensorizedConv2d):
    """``nn.Conv2d`` whose kernel is a tensor ring (Garipov layout, ring closed); arguments as
    `TTConv2d`."""

    format = "tr"


class TuckerConv2d(_TensorizedConv2d):
    """``nn.Conv2d`` with a Tucker-2 kernel: ``core_0`` ``(R_in, kh·kw, R_out)``, ``core_1`` =
    ``U_in`` ``(C_in/groups, R_in)``, ``core_2`` = ``U_out`` ``(C_out, R_out)``.

    ``rank``: an int (both channel ranks), ``(R_in, R_out)``, or a float budget. Arguments otherwise
    as `TTConv2d`; ``strategy="factorized"`` runs 1×1 → kh×kw → 1×1 convolutions.
    """

    format = "tucker"

    def _forward_factorized(self, x, pad):
        core, u_in, u_out = self.cores
        r_in, _, r_out = core.shape
        kh, kw = self.kernel_size
        z = F.conv2d(x, u_in.T.reshape(r_in, -1, 1, 1))
        z = F.conv2d(
            z,
            core.permute(2, 0, 1).reshape(r_out, r_in, kh, kw),
            None,
            self.stride,
            pad,
            self.dilation,
        )
        return F.conv2d(z, u_out.reshape(self.out_channels, r_out, 1, 1), self.bias)

    def _factorized_flops(self, n, h, w, hp, wp, ho, wo):
        r_in, _, r_out = self._core_shapes[0]
        kh, kw = self.kernel_size
        return (
            2.0
            * n
            * (
                h * w * self.in_channels * r_in
                + ho * wo * r_out * r_in * kh * kw
                + ho * wo * r_out * self.out_channels
            )
            + 3 * STEP_OVERHEAD_FLOPS
        )


class CPConv2d(_TensorizedConv2d):
    """``nn.Conv2d`` with a CP kernel (Lebedev et al. 2015): factors ``U_c`` ``(C_in/groups, R)``,
    ``U_h`` ``(kh, R)``, ``U_w`` ``(kw, R)``, ``U_o`` ``(C_out, R)`` as ``core_0 .. core_3``.

    ``strategy="factorized"`` runs 1×1 → kh×1 depthwise → 1×kw depthwise → 1×1 convolutions.
    Arguments otherwise as `TTConv2d`.
    """

    format = "cp"

    def _forward_factorized(self, x, pad):
        u_c, u_h, u_w, u_o = self.cores
        r = u_c.shape[1]
        (sh, sw), (dh, dw) = self.stride, self.dilation
        z = F.conv2d(x, u_c.T.reshape(r, -1, 1, 1))
        z = F.conv2d(z, u_h.T.reshape(r, 1, -1, 1), None, (sh, 1), (pad[0], 0), (dh, 1), r)
        z = F.conv2d(z, u_w.T.reshape(r, 1, 1, -1), None, (1, sw), (0, pad[1]), (1, dw), r)
        return F.conv2d(z, u_o.reshape(self.out_channels, r, 1, 1), self.bias)

    def _factorized_flops(self, n, h, w, hp, wp, ho, wo):
        r = self._core_shapes[0][1]
        kh, kw = self.kernel_size
        return (
            2.0
            * n
            * r
            * (h * w * self.in_channels + ho * w * kh + ho * wo * kw + ho * wo * self.out_channels)
            + 4 * STEP_OVERHEAD_FLOPS
        )


CONV_CLASSES: dict[str, type[_TensorizedConv2d]] = {
    "tt": TTConv2d,
    "tr": TRConv2d,
    "tucker": TuckerConv2d,
    "cp": CPConv2d,
}
_TensorizedConv2d._FORMAT_CLASSES = CONV_CLASSES


def conv_class(format: str) -> type[_TensorizedConv2d]:
    """The tensorized Conv2d class of ``format`` (``"tt"``, ``"tr"``, ``"tucker"``, ``"cp"``)."""
    return CONV_CLASSES[check_format(format)]
