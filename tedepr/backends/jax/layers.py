"""Tensorized and plain linear layers for JAX: frozen dataclasses of static configuration around
pure ``init``/``apply`` functions over pytrees.

Every layer follows one protocol:

* ``layer.init(key, dtype=jnp.float32) -> params`` — a dict pytree. A tensorized layer's params
  are ``{"cores": (core_0, ...), "bias": b}`` with the cores in ``Factorized.cores`` order (TT/TR
  cores ``(r_{k-1}, n_k, m_k, r_k)``; Tucker ``(core, *factors)``; CP factors ``(dim_k, R)``); a
  dense one's ``{"weight": W, "bias": b}`` with ``W`` of shape ``(in_features, out_features)``
  (``y = x @ W``, the transpose of torch's ``nn.Linear.weight``).
* ``layer.apply(params, x, masks=None) -> y`` — ``masks`` mirrors ``params`` with bool arrays
  where entries are pruned (``None`` or a missing key: dense). The effective parameter is
  ``where(m, θ, 0)``.
* ``layer.structure(prefix) -> {path: CoreInfo}`` — how each prunable array sits in its tensor
  network, for the structural guards of the pruning core.

The layer objects hold only shapes and options (they are hashable, so they may be closed over by
``jax.jit``); the contraction plan of a tensorized layer is looked up at trace time from the static
shapes (`tedepr.plan_contraction` caches it), so ``apply`` is jit-, grad- and vmap-clean.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from ...contraction import STRATEGIES, plan_contraction, plan_reconstruction
from ...formats import Factorized, from_cores
from ...init import INITS, core_std, random_factorized, target_std
from ...pruning.problem import CoreInfo, core_info
from ...shapes import check_format

__all__ = [
    "Dense",
    "LayerNorm",
    "BatchNorm",
    "TTLinear",
    "TRLinear",
    "TuckerLinear",
    "CPLinear",
    "TensorizedLinear",
    "core_infos",
    "masked",
    "uniform_bias",
]


# ----------------------------------------------------------------------------- helpers
def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int; got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return value


def _check_choice(value, allowed, name: str):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def _check_dtype(dtype) -> Any:
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"dtype must be a floating dtype (e.g. jnp.float32); got {dtype}")
    return dtype


def masked(p, m):
    """``θ`` where the mask ``m`` is True, exactly 0 elsewhere; ``m=None`` means dense."""
    if m is None:
        return p
    if tuple(m.shape) != tuple(p.shape):
        raise ValueError(
            f"a mask of shape {tuple(m.shape)} does not fit a parameter of shape {tuple(p.shape)}"
        )
    return jnp.where(m, p, jnp.zeros((), dtype=p.dtype))


def _sub(masks, key):
    """The entry ``key`` of a (possibly absent) masks subtree."""
    if masks is None:
        return None
    return masks.get(key) if isinstance(masks, dict) else None


def _param(params, key: str, layer) -> Any:
    """``params[key]`` of a layer's params, with a clear error for anything not from its init."""
    if not isinstance(params, Mapping):
        raise TypeError(
            f"params of {type(layer).__name__} must be the dict its init returns; got "
            f"{type(params).__name__}"
        )
    if key not in params:
        raise ValueError(
            f"params of {type(layer).__name__} must hold {key!r} (as its init returns); got "
            f"keys {sorted(map(str, params))}"
        )
    return params[key]


def _masked_cores(cores, masks):
    if not isinstance(cores, (tuple, list)):
        raise TypeError(
            f"params['cores'] must be a tuple of arrays (as init returns); got {type(cores).__name__}"
        )
    mc = _sub(masks, "cores")
    if mc is None:
        return tuple(cores)
    if len(mc) != len(cores):
        raise ValueError(
            f"masks['cores'] must hold one entry per core ({len(cores)}); got {len(mc)}"
        )
    return tuple(masked(c, m) for c, m in zip(cores, mc, strict=True))


def draw(key, kind: str, shapes, dtype, scale=1.0):
    """Arrays of ``shapes`` drawn with ONE random call (``kind``: ``"normal"`` N(0, scale²) or
    ``"uniform"`` U(−scale, scale)) and split: XLA compiles each random call separately, so one call
    per layer keeps init compilation short."""
    sizes = [math.prod(s) for s in shapes]
    total = sum(sizes)
    if kind == "normal":
        flat = jax.random.normal(key, (total,), dtype=dtype) * jnp.asarray(scale, dtype)
    else:
        flat = jax.random.uniform(key, (total,), dtype=dtype, minval=-scale, maxval=scale)
    out, start = [], 0
    for shape, size in zip(shapes, sizes, strict=True):
        out.append(jnp.reshape(flat[start : start + size], tuple(shape)))
        start += size
    return out


def check_dropout_field(layer, name: str = "dropout") -> None:
    """Check a frozen layer's dropout probability (a number in [0, 1]) and store it as a float."""
    value = getattr(layer, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float in [0, 1]; got {type(value).__name__} {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1]; got {value!r}")
    object.__setattr__(layer, name, float(value))


def dropout(x, rate: float, key):
    """Inverted dropout, as ``torch.nn.functional.dropout`` in training: every entry is zeroed with
    probability ``rate`` and the others scaled by ``1 / (1 - rate)``. The identity when ``key`` is
    None or ``rate`` is 0 (evaluation, or a layer without dropout)."""
    if key is None or rate == 0.0:
        return x
    keep = 1.0 - rate
    if keep == 0.0:
        return jnp.zeros_like(x)
    kept = jax.random.bernoulli(key, keep, x.shape)
    return jnp.where(kept, x / jnp.asarray(keep, x.dtype), jnp.zeros((), x.dtype))


def uniform_bias(key, n: int, fan_in: int, dtype):
    """PyTorch's default bias init ``U(−1/√fan_in, 1/√fan_in)``, shape ``(n,)``."""
    bound = 1.0 / math.sqrt(fan_in)
    return jax.random.uniform(key, (n,), dtype=dtype, minval=-bound, maxval=bound)


def _resolve_std(std, weight_init, fan_in, fan_out) -> float:
    if std is None:
        return target_std(weight_init, fan_in, fan_out)
    std = float(std)
    if not (math.isfinite(std) and std > 0):
        raise ValueError(f"std must be a positive finite number; got {std}")
    return std


def core_infos(f: Factorized, layer: str, prefix: str) -> dict[str, CoreInfo]:
    """`CoreInfo` of every core of ``f``, keyed ``f"{prefix}cores/{k}"`` (torch's conventions)."""
    return {f"{prefix}cores/{k}": core_info(f, layer, k) for k in range(len(f.cores))}


def check_own_format(layer, base: type) -> None:
    """A format class (`TTLinear`, `TRConv2d`, ...) takes ``format=`` only as its own (as torch's);
    the shared ``base`` takes any format."""
    own = type(layer).format  # the dataclass default of the class
    if type(layer) is not base and layer.format != own:
        raise ValueError(
            f"format={layer.format!r} does not match {type(layer).__name__} (format {own!r}); "
            f"pick the class by format with the shared base, e.g. "
            f"{base.__name__}(..., format={layer.format!r})"
        )


def _layer_name(prefix: str) -> str:
    return prefix[:-1] if prefix.endswith("/") else prefix


# ----------------------------------------------------------------------------- plain layers
@dataclass(frozen=True)
class Dense:
    """``y = x @ W + b`` with ``W`` of shape ``(in_features, out_features)``.

    ``weight_init`` names the dense init (``"torch"``: ``U(−1/√fan_in, 1/√fan_in)`` like
    ``nn.Linear``; ``"he"``/``"glorot"``/``"lecun"``: normal with that std).
    """

    in_features: int
    out_features: int
    bias: bool = True
    weight_init: str = "torch"

    def __post_init__(self):
        _check_positive_int(self.in_features, "in_features")
        _check_positive_int(self.out_features, "out_features")
        _check_choice(self.weight_init, INITS, "weight_init")

    @property
    def num_weights(self) -> int:
        return self.in_features * self.out_features

    def init(self, key, dtype=jnp.float32) -> dict:
        dtype = _check_dtype(dtype)
        shape = (self.in_features, self.out_features)
        bound = 1.0 / math.sqrt(self.in_features)
        if self.weight_init == "torch":  # weight and bias share the bound: one draw
            shapes = [shape, (self.out_features,)] if self.bias else [shape]
            arrays = draw(key, "uniform", shapes, dtype, bound)
            return dict(zip(("weight", "bias")[: len(arrays)], arrays, strict=True))
        kw, kb = jax.random.split(key)
        s = target_std(self.weight_init, self.in_features, self.out_features)
        params = {"weight": draw(kw, "normal", [shape], dtype, s)[0]}
        if self.bias:
            params["bias"] = uniform_bias(kb, self.out_features, self.in_features, dtype)
        return params

    def apply(self, params, x, masks=None):
        """``x`` of shape ``(..., in_features)`` -> ``(..., out_features)``."""
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(f"x must have shape (..., {self.in_features}); got {tuple(x.shape)}")
        y = jnp.matmul(x, masked(_param(params, "weight", self), _sub(masks, "weight")))
        if self.bias:
            y = y + _param(params, "bias", self)
        return y

    def structure(self, prefix: str = "") -> dict[str, CoreInfo]:
        # stored (in, out): the transpose of torch's (out, in)
        return {f"{prefix}weight": CoreInfo(_layer_name(prefix), "dense", layout=(1, 0))}


@dataclass(frozen=True)
class LayerNorm:
    """Layer normalisation over the last axis; params ``{"scale", "bias"}`` (never pruned)."""

    num_features: int
    eps: float = 1e-5

    def __post_init__(self):
        _check_positive_int(self.num_features, "num_features")

    def init(self, key, dtype=jnp.float32) -> dict:
        dtype = _check_dtype(dtype)
        return {
            "scale": jnp.ones((self.num_features,), dtype),
            "bias": jnp.zeros((self.num_features,), dtype),
        }

    def apply(self, params, x, masks=None):
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        return (x - mean) * jax.lax.rsqrt(var + self.eps) * _param(params, "scale", self) + _param(
            params, "bias", self
        )

    def structure(self, prefix: str = "") -> dict[str, CoreInfo]:
        return {}


@dataclass(frozen=True)
class BatchNorm:
    """Batch normalisation over every axis but ``axis`` (1: channels of NCHW or of (B, C)).

    Params ``{"scale", "bias", "mean", "var"}``; ``mean``/``var`` are running statistics (not
    trained: `tedepr.backends.jax.training.fit` updates them from `apply_train`). ``apply`` uses the
    running statistics (eval mode); ``apply_train`` the batch statistics, and returns the updated
    running ones (PyTorch's rule: ``momentum`` weight on the batch value, unbiased batch variance).
    """

    num_features: int
    eps: float = 1e-5
    momentum: float = 0.1
    axis: int = 1

    STATS: ClassVar[tuple[str, str]] = ("mean", "var")

    def __post_init__(self):
        _check_positive_int(self.num_features, "num_features")
        if not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1]; got {self.momentum}")

    def init(self, key, dtype=jnp.float32) -> dict:
        dtype = _check_dtype(dtype)
        n = self.num_features
        return {
            "scale": jnp.ones((n,), dtype),
            "bias": jnp.zeros((n,), dtype),
            "mean": jnp.zeros((n,), dtype),
            "var": jnp.ones((n,), dtype),
        }

    def _shape(self, x):
        shape = [1] * x.ndim
        shape[self.axis] = self.num_features
        return tuple(shape)

    def _normalise(self, params, x, mean, var):
        shape = self._shape(x)
        inv = jax.lax.rsqrt(jnp.reshape(var, shape) + self.eps)
        return (x - jnp.reshape(mean, shape)) * inv * jnp.reshape(
            _param(params, "scale", self), shape
        ) + jnp.reshape(_param(params, "bias", self), shape)

    def apply(self, params, x, masks=None):
        if x.shape[self.axis] != self.num_features:
            raise ValueError(
                f"x must have {self.num_features} features on axis {self.axis}; "
                f"got {tuple(x.shape)}"
            )
        stats = jax.lax.stop_gradient((_param(params, "mean", self), _param(params, "var", self)))
        return self._normalise(params, x, *stats)

    def apply_train(self, params, x, masks=None):
        """``(y, {"mean", "var"})``: normalised with batch statistics; the new running stats."""
        if x.shape[self.axis] != self.num_features:
            raise ValueError(
                f"x must have {self.num_features} features on axis {self.axis}; "
                f"got {tuple(x.shape)}"
            )
        axes = tuple(a for a in range(x.ndim) if a != self.axis)
        mean = jnp.mean(x, axis=axes)
        var = jnp.mean(jnp.square(x - jnp.reshape(mean, self._shape(x))), axis=axes)
        n = math.prod(x.shape[a] for a in axes)
        unbiased = var * (n / max(n - 1, 1))
        m = self.momentum
        new = jax.lax.stop_gradient(
            {
                "mean": (1 - m) * _param(params, "mean", self) + m * mean,
                "var": (1 - m) * _param(params, "var", self) + m * unbiased,
            }
        )
        return self._normalise(params, x, mean, var), new

    def structure(self, prefix: str = "") -> dict[str, CoreInfo]:
        return {}


# ----------------------------------------------------------------------------- tensorized linear
@dataclass(frozen=True)
class TensorizedLinear:
    """``y = x @ W + b`` with ``W`` of shape ``(in_features, out_features)`` held as a tensor
    network.

    Parameters
    ----------
    in_features, out_features : int
    rank : int, tuple or float
        Ranks (`tedepr.shapes.solve_ranks`: int uniform, tuple exact, float parameter budget).
    in_modes, out_modes : tuple of int, optional
        Mode factorisation (default: balanced, `tedepr.shapes.auto_modes` with ``d`` modes).
    bias : bool
    d : int, optional
        Number of modes when the modes are chosen automatically (`TuckerLinear`: 1, as torch).
    weight_init : {"torch", "he", "glorot", "lecun"}
        The dense init whose element std the cores reproduce exactly (docs/method.md §3).
    std : float, optional
        Target element std (overrides ``weight_init``).
    strategy : {"auto", "chain", "optimal", "reconstruct"}
        Contraction strategy (`tedepr.plan_contraction`).

    After construction ``in_modes``/``out_modes`` hold the resolved modes and ``ranks`` the solved
    ranks. Params: ``{"cores": (...), "bias": (out_features,)}``.
    """

    in_features: int
    out_features: int
    rank: Any = 8
    in_modes: tuple | None = None
    out_modes: tuple | None = None
    bias: bool = True
    d: int | None = field(default=None, kw_only=True)
    weight_init: str = field(default="torch", kw_only=True)
    std: float | None = field(default=None, kw_only=True)
    strategy: str = field(default="auto", kw_only=True)
    format: str = field(default="tt", kw_only=True)
    _template: Factorized = field(init=False, repr=False, compare=False, hash=False)

    #: number of modes when neither ``d`` nor modes are given (None: `tedepr.shapes.auto_modes`)
    DEFAULT_D = None

    def __post_init__(self):
        _check_positive_int(self.in_features, "in_features")
        _check_positive_int(self.out_features, "out_features")
        check_own_format(self, TensorizedLinear)
        _check_choice(self.weight_init, INITS, "weight_init")
        _check_choice(self.strategy, STRATEGIES, "strategy")
        if isinstance(self.rank, list):
            object.__setattr__(self, "rank", tuple(self.rank))
        if self.d is None and self.in_modes is None and self.out_modes is None:
            object.__setattr__(self, "d", self.DEFAULT_D)
        # a float64 NumPy instance: validates modes/ranks once and is the shape template of every
        # plan
        template = random_factorized(
            self.format,
            self.in_features,
            self.out_features,
            self.rank,
            std=1.0,
            seed=0,
            in_modes=self.in_modes,
            out_modes=self.out_modes,
            d=self.d,
        )
        object.__setattr__(self, "_template", template)
        object.__setattr__(self, "in_modes", template.in_modes)
        object.__setattr__(self, "out_modes", template.out_modes)
        _resolve_std(self.std, self.weight_init, self.in_features, self.out_features)

    # -- shapes
    @property
    def ranks(self) -> tuple:
        return self._template.ranks

    @property
    def core_shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(c.shape) for c in self._template.cores)

    @property
    def num_weights(self) -> int:
        """Number of core entries."""
        return self._template.num_params

    @property
    def dense_weights(self) -> int:
        return self.in_features * self.out_features

    @property
    def core_std(self) -> float:
        """The std of the i.i.d. normal core entries at init (exact for the target element std)."""
        target = _resolve_std(self.std, self.weight_init, self.in_features, self.out_features)
        return core_std(self.format, self.ranks, len(self._template.cores), target)

    def factorized(self, params=None, masks=None) -> Factorized:
        """The `tedepr.Factorized` of ``params`` (masked); the shape template for None."""
        if params is None:
            return self._template
        cores = _masked_cores(_param(params, "cores", self), masks)
        factored = tuple(r is not None for r in self.ranks) if self.format == "tucker" else None
        return from_cores(self.format, cores, self.in_modes, self.out_modes, factored=factored)

    def plan(self, batch: int = 1):
        """The contraction plan used for ``batch`` rows."""
        return plan_contraction(self._template, batch, self.strategy)

    # -- protocol
    def init(self, key, dtype=jnp.float32) -> dict:
        dtype = _check_dtype(dtype)
        shapes = self.core_shapes
        kc, kb = jax.random.split(key)
        params = {"cores": tuple(draw(kc, "normal", shapes, dtype, self.core_std))}
        if self.bias:
            params["bias"] = uniform_bias(kb, self.out_features, self.in_features, dtype)
        return params

    def weight(self, params, masks=None):
        """The reconstructed dense weight, shape ``(in_features, out_features)``."""
        cores = _masked_cores(_param(params, "cores", self), masks)
        w = plan_reconstruction(self._template).execute(cores, xp=jnp)
        return jnp.reshape(w, (self.in_features, self.out_features))

    def apply(self, params, x, masks=None):
        """``x (..., in_features)`` -> ``(..., out_features)`` by the planned contraction."""
        cores = _masked_cores(_param(params, "cores", self), masks)
        if len(cores) != len(self._template.cores):
            raise ValueError(
                f"params['cores'] must hold {len(self._template.cores)} arrays; got {len(cores)}"
            )
        for k, (c, shp) in enumerate(zip(cores, self.core_shapes, strict=True)):
            if tuple(c.shape) != shp:
                raise ValueError(
                    f"params['cores'][{k}] must have shape {shp}; got {tuple(c.shape)}"
                )
        y = self._contract(x, cores)
        if self.bias:
            y = y + _param(params, "bias", self)
        return y

    def _contract(self, x, cores):
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must have shape (..., {self.in_features}); got {tuple(x.shape)}")
        lead = tuple(x.shape[:-1])
        batch = math.prod(lead)
        dtype = jnp.result_type(x, *cores)
        if batch == 0:
            return jnp.zeros(lead + (self.out_features,), dtype)
        x2 = jnp.reshape(x, (batch,) + self.in_modes)
        y = self.plan(batch).execute((x2,) + tuple(cores), xp=jnp)
        return jnp.reshape(y, lead + (self.out_features,))

    def structure(self, prefix: str = "") -> dict[str, CoreInfo]:
        return core_infos(self._template, _layer_name(prefix), prefix)


@dataclass(frozen=True)
class TTLinear(TensorizedLinear):
    """A Linear layer whose weight is a TT-matrix (TT-layers, Novikov et al. 2015); see
    `TensorizedLinear` for the arguments. Cores ``(r_{k-1}, n_k, m_k, r_k)``, ``r_0 = r_d = 1``."""

    format: str = field(default="tt", kw_only=True)


@dataclass(frozen=True)
class TRLinear(TensorizedLinear):
    """A Linear layer whose weight is a tensor ring (TR-Nets, Wang et al. 2018); see
    `TensorizedLinear`. Cores ``(r_{k-1}, n_k, m_k, r_k)``, ``r_0 = r_d``."""

    format: str = field(default="tr", kw_only=True)


@dataclass(frozen=True)
class TuckerLinear(TensorizedLinear):
    """A Linear layer whose weight is a Tucker tensor over ``in_modes + out_modes``; see
    `TensorizedLinear`. Params ``cores = (core, *factors)``.

    The core has one axis per mode, so its size grows as ``rank ** (2d)``: unless modes or ``d``
    are given the matrix is not reshaped (``d = 1``: ``W = U_in C U_outᵀ``), as the torch layer.
    """

    format: str = field(default="tucker", kw_only=True)
    DEFAULT_D = 1


@dataclass(frozen=True)
class CPLinear(TensorizedLinear):
    """A Linear layer whose weight is a CP tensor (factors ``(dim_k, R)``); see
    `TensorizedLinear`."""

    format: str = field(default="cp", kw_only=True)


LINEAR_CLASSES = {"tt": TTLinear, "tr": TRLinear, "tucker": TuckerLinear, "cp": CPLinear}


def linear_class(format: str) -> type[TensorizedLinear]:
    """The tensorized Linear class of ``format`` (``"tt"``, ``"tr"``, ``"tucker"``, ``"cp"``)."""
    return LINEAR_CLASSES[check_format(format)]
