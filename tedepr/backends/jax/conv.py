"""Plain and tensorized 2-D convolutions for JAX: NCHW like PyTorch, kernels
``(C_out, C_in/groups, kh, kw)``.

A tensorized convolution factorises the kernel's matrix view ``(C_in/groups·kh·kw, C_out)`` with the
schemes of docs/method.md §2 (TT/TR with a spatial last core, Tucker-2, CP). Evaluation strategies:

* ``"reconstruct"`` — build the kernel from the cores (planned contraction), then one
  ``jax.lax.conv_general_dilated``; the only path for ``groups > 1``.
* ``"factorized"`` (Tucker, CP) — never build the kernel: Tucker-2 is a 1×1 conv, the core's kh×kw
  conv and a 1×1 conv; CP (Lebedev et al. 2015) is a 1×1 conv, a kh×1 and a 1×kw depthwise conv,
  and a 1×1 conv.
* ``"unfold"`` (every format) — contract the image patches with the cores by the planned chain
  (`tedepr.plan_contraction`), the kernel never formed.
* ``"auto"`` — the path with fewer FLOPs for the input's static shape (decided at trace time).

The names are the torch backend's (``strategy=`` of its convolutions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp

from ...contraction import plan_contraction, plan_reconstruction
from ...formats import Factorized, from_cores
from ...init import INITS, core_std, random_factorized_conv, target_std
from ...pruning.problem import CoreInfo
from ...shapes import check_format
from ...tensorizing import CONV_STRATEGIES
from .layers import (
    _check_choice,
    _check_dtype,
    _check_positive_int,
    _layer_name,
    _masked_cores,
    _param,
    _resolve_std,
    _sub,
    check_own_format,
    core_infos,
    draw,
    masked,
    uniform_bias,
)

__all__ = [
    "Conv2d",
    "TensorizedConv2d",
    "TTConv2d",
    "TRConv2d",
    "TuckerConv2d",
    "CPConv2d",
    "CONV_STRATEGIES",
    "conv2d",
]

_DIMS = ("NCHW", "OIHW", "NCHW")


def _pair(value, name: str, minimum: int) -> tuple[int, int]:
    pair = (
        (value, value) if isinstance(value, int) and not isinstance(value, bool) else tuple(value)
    )
    if len(pair) != 2 or any(
        isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in pair
    ):
        raise ValueError(f"{name} must be an int >= {minimum} or a pair of them; got {value!r}")
    return pair


def _padding(padding, kernel_size, dilation, stride) -> tuple[tuple[int, int], tuple[int, int]]:
    """Explicit ``((top, bottom), (left, right))`` zero padding (torch's rule for "same")."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0), (0, 0))
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"padding='same' needs stride 1; got stride={stride}")
            out = []
            for k, d in zip(kernel_size, dilation, strict=True):
                total = d * (k - 1)
                out.append((total // 2, total - total // 2))
            return tuple(out)
        raise ValueError(
            f"padding must be an int, a pair of ints, 'valid' or 'same'; got {padding!r}"
        )
    ph, pw = _pair(padding, "padding", 0)
    return ((ph, ph), (pw, pw))


def conv2d(x, kernel, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups: int = 1):
    """Cross-correlation like ``torch.nn.functional.conv2d``: ``x (N, C, H, W)``,
    ``kernel (O, C/g, kh, kw)``."""
    dtype = jnp.result_type(x, kernel)  # lax convolutions need one dtype; promote like matmul
    return jax.lax.conv_general_dilated(
        x.astype(dtype),
        kernel.astype(dtype),
        window_strides=stride,
        padding=padding,
        rhs_dilation=dilation,
        dimension_numbers=_DIMS,
        feature_group_count=groups,
    )


def _check_input(x, channels: int):
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"x must have shape (N, {channels}, H, W); got {tuple(x.shape)}")


def _out_size(size, k, s, d, pads):
    return (size + pads[0] + pads[1] - d * (k - 1) - 1) // s + 1


@dataclass(frozen=True)
class _ConvConfig:
    """The geometry fields (``nn.Conv2d``'s meaning and order) and their validation, shared by
    the plain and tensorized convolutions."""

    in_channels: int
    out_channels: int
    kernel_size: Any
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    groups: int = 1
    bias: bool = True

    def _normalise(self):
        _check_positive_int(self.in_channels, "in_channels")
        _check_positive_int(self.out_channels, "out_channels")
        _check_positive_int(self.groups, "groups")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"groups={self.groups} must divide in_channels={self.in_channels} and "
                f"out_channels={self.out_channels}"
            )
        ks = _pair(self.kernel_size, "kernel_size", 1)
        stride = _pair(self.stride, "stride", 1)
        dilation = _pair(self.dilation, "dilation", 1)
        object.__setattr__(self, "kernel_size", ks)
        object.__setattr__(self, "stride", stride)
        object.__setattr__(self, "dilation", dilation)
        pads = _padding(self.padding, ks, dilation, stride)
        if not isinstance(self.padding, str):
            object.__setattr__(self, "padding", (pads[0][0], pads[1][0]))
        object.__setattr__(self, "_pads", pads)

    @property
    def fan_in(self) -> int:
        return self.in_channels // self.groups * self.kernel_size[0] * self.kernel_size[1]

    def output_shape(self, input_shape) -> tuple[int, int, int, int]:
        n, _, h, w = input_shape
        ho = _out_size(h, self.kernel_size[0], self.stride[0], self.dilation[0], self._pads[0])
        wo = _out_size(w, self.kernel_size[1], self.stride[1], self.dilation[1], self._pads[1])
        return (n, self.out_channels, ho, wo)

    def _conv(self, x, kernel):
        return conv2d(x, kernel, self.stride, self._pads, self.dilation, self.groups)


@dataclass(frozen=True)
class Conv2d(_ConvConfig):
    """A dense 2-D convolution, NCHW; params ``{"weight": (C_out, C_in/groups, kh, kw), "bias":
    (C_out,)}``.

    ``padding``: int, pair, ``"valid"`` or ``"same"``. ``weight_init``: ``"torch"`` (``nn.Conv2d``'s
    ``U(−1/√fan_in, 1/√fan_in)``), ``"he"``/``"glorot"``/``"lecun"`` (normal), or ``"he_fan_out"``
    (``N(0, 2/fan_out)``, He et al.'s ResNet init).
    """

    weight_init: str = "torch"
    _pads: tuple = field(init=False, repr=False, compare=False, hash=False)

    WEIGHT_INITS = INITS + ("he_fan_out",)

    def __post_init__(self):
        _check_choice(self.weight_init, self.WEIGHT_INITS, "weight_init")
        self._normalise()

    @property
    def kernel_shape(self) -> tuple[int, int, int, int]:
        return (self.out_channels, self.in_channels // self.groups) + self.kernel_size

    @property
    def num_weights(self) -> int:
        return math.prod(self.kernel_shape)

    def init(self, key, dtype=jnp.float32) -> dict:
        dtype = _check_dtype(dtype)
        fan_in = self.fan_in
        if self.weight_init == "torch":  # weight and bias share the bound 1/√fan_in: one draw
            shapes = [self.kernel_shape, (self.out_channels,)] if self.bias else [self.kernel_shape]
            arrays = draw(key, "uniform", shapes, dtype, 1.0 / math.sqrt(fan_in))
            return dict(zip(("weight", "bias")[: len(arrays)], arrays, strict=True))
        kw, kb = jax.random.split(key)
        fan_out = self.out_channels * self.kernel_size[0] * self.kernel_size[1]
        if self.weight_init == "he_fan_out":
            s = math.sqrt(2.0 / fan_out)
        else:
            s = target_std(self.weight_init, fan_in, fan_out)
        params = {"weight": draw(kw, "normal", [self.kernel_shape], dtype, s)[0]}
        if self.bias:
            params["bias"] = uniform_bias(kb, self.out_channels, fan_in, dtype)
        return params

    def apply(self, params, x, masks=None):
        """``x (N, C_in, H, W)`` -> ``(N, C_out, H_out, W_out)``."""
        _check_input(x, self.in_channels)
        y = self._conv(x, masked(_param(params, "weight", self), _sub(masks, "weight")))
        if self.bias:
            y = y + jnp.reshape(_param(params, "bias", self), (1, -1, 1, 1))
        return y

    def structure(self, prefix: str = "") -> dict[str, CoreInfo]:
        return {f"{prefix}weight": CoreInfo(_layer_name(prefix), "dense")}


@dataclass(frozen=True)
class TensorizedConv2d(_ConvConfig):
    """A 2-D convolution whose kernel is a tensor network (schemes: docs/method.md §2).

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias :
        As `Conv2d` (``nn.Conv2d``'s meaning and order).
    padding_mode : {"zeros"}
        The only padding a tensorized convolution does (the argument exists so that both backends
        take the same arguments).
    rank : int, tuple or float (keyword-only, like every option below)
        Ranks of the scheme (`tedepr.init.conv_ranks`; Tucker-2 also takes ``(R_in, R_out)``).
    in_modes, out_modes : tuple of int, optional
        TT/TR channel modes (default balanced with ``d`` modes).
    weight_init, std :
        Target element std of the kernel (default ``nn.Conv2d``'s, fan_in = C_in/groups·kh·kw).
    strategy : {"auto", "reconstruct", "factorized", "unfold"}
        How the convolution is evaluated (module docstring).
    """

    padding_mode: str = "zeros"
    rank: Any = field(default=8, kw_only=True)
    in_modes: tuple | None = field(default=None, kw_only=True)
    out_modes: tuple | None = field(default=None, kw_only=True)
    d: int | None = field(default=None, kw_only=True)
    weight_init: str = field(default="torch", kw_only=True)
    std: float | None = field(default=None, kw_only=True)
    strategy: str = field(default="auto", kw_only=True)
    format: str = field(default="tt", kw_only=True)
    _pads: tuple = field(init=False, repr=False, compare=False, hash=False)
    _template: Factorized = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self):
        check_own_format(self, TensorizedConv2d)
        if self.padding_mode != "zeros":
            raise ValueError(
                "padding_mode must be 'zeros' (tensorized convolutions pad with zeros only); "
                f"got {self.padding_mode!r}"
            )
        _check_choice(self.weight_init, INITS, "weight_init")
        _check_choice(self.strategy, CONV_STRATEGIES, "strategy")
        self._normalise()
        if isinstance(self.rank, list):
            object.__setattr__(self, "rank", tuple(self.rank))
        if self.strategy in ("factorized", "unfold") and self.groups != 1:
            raise ValueError(
                f"strategy={self.strategy!r} needs groups=1; got groups={self.groups} "
                "(use 'reconstruct' or 'auto')"
            )
        if self.strategy == "factorized" and self.format not in ("tucker", "cp"):
            raise ValueError(
                "strategy='factorized' exists for 'tucker' and 'cp' convolutions; "
                f"{type(self).__name__} allows 'auto', 'reconstruct' or 'unfold'"
            )
        template = random_factorized_conv(
            self.format,
            self.in_channels // self.groups,
            self.out_channels,
            self.kernel_size,
            self.rank,
            std=1.0,
            seed=0,
            in_modes=self.in_modes,
            out_modes=self.out_modes,
            d=self.d,
        )
        object.__setattr__(self, "_template", template)
        if self.format in ("tt", "tr"):
            object.__setattr__(self, "in_modes", template.in_modes[:-1])
            object.__setattr__(self, "out_modes", template.out_modes[:-1])
        fan_out = self.out_channels * self.kernel_size[0] * self.kernel_size[1]
        _resolve_std(self.std, self.weight_init, self.fan_in, fan_out)

    # -- shapes
    @property
    def ranks(self) -> tuple:
        return self._template.ranks

    @property
    def core_shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(c.shape) for c in self._template.cores)

    @property
    def kernel_shape(self) -> tuple[int, int, int, int]:
        return (self.out_channels, self.in_channels // self.groups) + self.kernel_size

    @property
    def num_weights(self) -> int:
        return self._template.num_params

    @property
    def dense_weights(self) -> int:
        return math.prod(self.kernel_shape)

    @property
    def core_std(self) -> float:
        fan_out = self.out_channels * self.kernel_size[0] * self.kernel_size[1]
        target = _resolve_std(self.std, self.weight_init, self.fan_in, fan_out)
        return core_std(self.format, self.ranks, len(self._template.cores), target)

    def factorized(self, params=None, masks=None) -> Factorized:
        """The kernel's matrix view as a `tedepr.Factorized` (has ``to_kernel()``)."""
        if params is None:
            return self._template
        cores = _masked_cores(_param(params, "cores", self), masks)
        t = self._template
        factored = tuple(r is not None for r in t.ranks) if self.format == "tucker" else None
        return from_cores(
            self.format,
            cores,
            t.in_modes,
            t.out_modes,
            factored=factored,
            kernel_size=self.kernel_size,
        )

    # -- protocol
    def init(self, key, dtype=jnp.float32) -> dict:
        dtype = _check_dtype(dtype)
        shapes = self.core_shapes
        kc, kb = jax.random.split(key)
        params = {"cores": tuple(draw(kc, "normal", shapes, dtype, self.core_std))}
        if self.bias:
            params["bias"] = uniform_bias(kb, self.out_channels, self.fan_in, dtype)
        return params

    def kernel(self, params, masks=None):
        """The reconstructed kernel ``(C_out, C_in/groups, kh, kw)``."""
        cores = _masked_cores(_param(params, "cores", self), masks)
        w = plan_reconstruction(self._template).execute(cores, xp=jnp)
        w = jnp.reshape(w, (self.fan_in, self.out_channels))
        return jnp.reshape(jnp.transpose(w), self.kernel_shape)

    def choose_strategy(self, input_shape) -> str:
        """The strategy used for inputs of ``input_shape`` (``"auto"``: the fewest FLOPs)."""
        if self.strategy != "auto":
            return self.strategy
        if self.groups != 1:
            return "reconstruct"
        n, _, ho, wo = self.output_shape(input_shape)
        h, w = input_shape[2], input_shape[3]
        rows = n * ho * wo
        recon = (
            plan_reconstruction(self._template).flops + 2 * rows * self.fan_in * self.out_channels
        )
        kh, kw = self.kernel_size
        unfold = plan_contraction(self._template, rows, "auto").flops
        best = min((recon, "reconstruct"), (unfold, "unfold"))
        if self.format == "tucker":
            r_in, _, r_out = self.ranks
            factored = 2 * (
                n * h * w * self.in_channels * r_in
                + rows * r_in * kh * kw * r_out
                + rows * r_out * self.out_channels
            )
        elif self.format == "cp":
            (r,) = self.ranks
            h1 = _out_size(h, kh, self.stride[0], self.dilation[0], self._pads[0])
            factored = 2 * (
                n * h * w * self.in_channels * r
                + n * h1 * w * r * kh
                + rows * r * kw
                + rows * r * self.out_channels
            )
        else:
            return best[1]
        return min(best, (factored, "factorized"))[1]

    def apply(self, params, x, masks=None):
        """``x (N, C_in, H, W)`` -> ``(N, C_out, H_out, W_out)``."""
        _check_input(x, self.in_channels)
        cores = _masked_cores(_param(params, "cores", self), masks)
        for k, (c, shp) in enumerate(zip(cores, self.core_shapes, strict=True)):
            if tuple(c.shape) != shp:
                raise ValueError(
                    f"params['cores'][{k}] must have shape {shp}; got {tuple(c.shape)}"
                )
        strategy = self.choose_strategy(tuple(x.shape))
        if strategy == "reconstruct":
            y = self._conv(x, self.kernel({"cores": cores}))
        elif strategy == "unfold":
            y = self._patches(x, cores)
        elif self.format == "tucker":
            y = self._tucker(x, cores)
        else:
            y = self._cp(x, cores)
        if self.bias:
            y = y + jnp.reshape(_param(params, "bias", self), (1, -1, 1, 1))
        return y

    def _tucker(self, x, cores):
        core, u_in, u_out = cores  # (R_in, kh·kw, R_out), (C_in, R_in), (C_out, R_out)
        r_in, _, r_out = core.shape
        z = jnp.einsum("nchw,ca->nahw", x, u_in)
        middle = jnp.reshape(jnp.transpose(core, (2, 0, 1)), (r_out, r_in) + self.kernel_size)
        z = conv2d(z, middle, self.stride, self._pads, self.dilation)
        return jnp.einsum("nbhw,ob->nohw", z, u_out)

    def _cp(self, x, cores):
        u_c, u_h, u_w, u_o = cores  # (C_in, R), (kh, R), (kw, R), (C_out, R)
        r = u_c.shape[1]
        (sh, sw), (dh, dw), (ph, pw) = self.stride, self.dilation, self._pads
        z = jnp.einsum("nchw,cr->nrhw", x, u_c)
        z = conv2d(
            z, jnp.transpose(u_h)[:, None, :, None], (sh, 1), (ph, (0, 0)), (dh, 1), groups=r
        )
        z = conv2d(
            z, jnp.transpose(u_w)[:, None, None, :], (1, sw), ((0, 0), pw), (1, dw), groups=r
        )
        return jnp.einsum("nrhw,or->nohw", z, u_o)

    def _patches(self, x, cores):
        # rows (c, y, x) in C order: exactly the row order of the kernel's matrix view
        p = jax.lax.conv_general_dilated_patches(
            x,
            self.kernel_size,
            self.stride,
            self._pads,
            rhs_dilation=self.dilation,
            dimension_numbers=_DIMS,
        )
        n, f, ho, wo = p.shape
        rows = jnp.reshape(jnp.transpose(p, (0, 2, 3, 1)), (n * ho * wo,) + self._template.in_modes)
        y = plan_contraction(self._template, n * ho * wo, "auto").execute(
            (rows,) + tuple(cores), xp=jnp
        )
        return jnp.transpose(jnp.reshape(y, (n, ho, wo, self.out_channels)), (0, 3, 1, 2))

    def structure(self, prefix: str = "") -> dict[str, CoreInfo]:
        return core_infos(self._template, _layer_name(prefix), prefix)


@dataclass(frozen=True)
class TTConv2d(TensorizedConv2d):
    """Conv2d with a TT kernel (Garipov et al. 2016): in modes ``(c_1..c_d, kh·kw)``, out modes
    ``(o_1..o_d, 1)``; see `TensorizedConv2d` for the arguments."""

    format: str = field(default="tt", kw_only=True)


@dataclass(frozen=True)
class TRConv2d(TensorizedConv2d):
    """Conv2d with a tensor-ring kernel (TR-Nets, Wang et al. 2018); see `TensorizedConv2d`."""

    format: str = field(default="tr", kw_only=True)


@dataclass(frozen=True)
class TuckerConv2d(TensorizedConv2d):
    """Conv2d with a Tucker-2 kernel (factors on the channel modes, Kim et al. 2016); ``rank`` may
    be ``(R_in, R_out)``; see `TensorizedConv2d`."""

    format: str = field(default="tucker", kw_only=True)


@dataclass(frozen=True)
class CPConv2d(TensorizedConv2d):
    """Conv2d with a CP kernel (Lebedev et al. 2015): four factors ``(C_in, R), (kh, R), (kw, R),
    (C_out, R)``; see `TensorizedConv2d`."""

    format: str = field(default="cp", kw_only=True)


CONV_CLASSES = {"tt": TTConv2d, "tr": TRConv2d, "tucker": TuckerConv2d, "cp": CPConv2d}


def conv_class(format: str) -> type[TensorizedConv2d]:
    """The tensorized Conv2d class of ``format`` (``"tt"``, ``"tr"``, ``"tucker"``, ``"cp"``)."""
    return CONV_CLASSES[check_format(format)]
