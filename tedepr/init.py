"""Exact variance-preserving random initialisation of every format (derivation: docs/method.md §3).

The cores are i.i.d. ``N(0, s²)`` with ``s`` chosen so that every element of the reconstructed matrix
has exactly the target variance ``σ²``. The target is either given (``std=``) or taken from the dense
layer being replaced (``init="torch" | "he" | "glorot" | "lecun"``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .formats import Factorized, from_cores
from .namespace import default_float, get_namespace
from .shapes import _check_positive_int, auto_modes, check_format, check_modes, solve_ranks
from .validation import check_float_dtype, check_real, check_seed

__all__ = [
    "INITS",
    "target_std",
    "core_std",
    "random_factorized",
    "random_factorized_conv",
    "conv_modes",
]

INITS = ("torch", "he", "glorot", "lecun")


def target_std(init: str, fan_in: int, fan_out: int) -> float:
    """Std of the dense layer's weights under a named scheme.

    ``"torch"`` is PyTorch's default for ``nn.Linear``/``nn.Conv2d``, ``U(−1/√fan_in, 1/√fan_in)``, whose
    std is ``1/√(3·fan_in)``; ``"he"`` is ``√(2/fan_in)``; ``"glorot"`` ``√(2/(fan_in+fan_out))``;
    ``"lecun"`` ``√(1/fan_in)``.
    """
    if init == "torch":
        return 1.0 / math.sqrt(3.0 * fan_in)
    if init == "he":
        return math.sqrt(2.0 / fan_in)
    if init == "glorot":
        return math.sqrt(2.0 / (fan_in + fan_out))
    if init == "lecun":
        return math.sqrt(1.0 / fan_in)
    raise ValueError(f"init must be one of {', '.join(map(repr, INITS))}; got {init!r}")


def core_std(format: str, ranks, num_cores: int, std: float) -> float:
    """The std ``s`` of i.i.d. core entries giving reconstructed-element std ``std``.

    ``ranks`` as solved by `tedepr.shapes.solve_ranks`; ``num_cores`` the number of trainable arrays.
    """
    format = check_format(format)
    if format == "tt":
        terms, factors = math.prod(ranks[1:-1]), num_cores
    elif format == "tr":
        terms, factors = math.prod(ranks[:-1]), num_cores
    elif format == "tucker":
        terms, factors = math.prod(r for r in ranks if r is not None), num_cores
    else:
        terms, factors = ranks[0], num_cores
    # Var(W_ij) = terms * s^(2*factors) = std^2
    return (std / math.sqrt(terms)) ** (1.0 / factors)


def _core_shapes(format, in_modes, out_modes, ranks):
    if format in ("tt", "tr"):
        return [(ranks[k], n, m, ranks[k + 1]) for k, (n, m) in enumerate(zip(in_modes, out_modes))]
    dims = tuple(in_modes) + tuple(out_modes)
    if format == "tucker":
        core = tuple(dim if r is None else r for dim, r in zip(dims, ranks))
        return [core] + [(dim, r) for dim, r in zip(dims, ranks) if r is not None]
    return [(dim, ranks[0]) for dim in dims]


def _resolve_std(std, init, fan_in, fan_out):
    if std is None:
        return target_std(init, fan_in, fan_out)
    std = check_real(std, "std", "a positive finite number")
    if not (math.isfinite(std) and std > 0):
        raise ValueError(f"std must be a positive finite number; got {std}")
    return std


def _draw(format, in_modes, out_modes, ranks, std, seed, dtype, xp, kernel_size):
    shapes = _core_shapes(format, in_modes, out_modes, ranks)
    s = core_std(format, ranks, len(shapes), std)
    seed = check_seed(seed)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    xp = get_namespace(xp=xp)
    dtype = default_float(xp) if dtype is None else check_float_dtype(dtype, xp)
    cores = [xp.asarray(rng.standard_normal(shp) * s, dtype=dtype) for shp in shapes]
    factored = tuple(r is not None for r in ranks) if format == "tucker" else None
    return from_cores(
        format, cores, in_modes, out_modes, factored=factored, kernel_size=kernel_size
    )


def random_factorized(
    format: str,
    in_features: int,
    out_features: int,
    rank,
    *,
    std: float | None = None,
    init: str = "torch",
    seed: int | np.random.Generator | None = None,
    in_modes=None,
    out_modes=None,
    d: int | None = None,
    dtype: Any = None,
    xp: Any = None,
) -> Factorized:
    """A random factorised ``(in_features, out_features)`` matrix with exact element std.

    Parameters
    ----------
    format : {"tt", "tr", "tucker", "cp"}
    rank : int, tuple or float
        See `tedepr.shapes` (int: uniform, capped with a warning; tuple: exact; float: budget).
    std : float, optional
        Target std of every element of the reconstructed matrix; default from ``init``.
    init : {"torch", "he", "glorot", "lecun"}
        Scheme whose std is the target when ``std`` is None (fan_in = in_features).
    seed : int or numpy Generator
    in_modes, out_modes : tuple of int, optional
        Defaults: balanced factorisation with ``d`` modes (`tedepr.shapes.auto_modes`).
    dtype, xp :
        Array library and dtype of the cores (default NumPy float64; other namespaces float32).
    """
    format = check_format(format)
    in_modes, out_modes = _modes(in_features, out_features, in_modes, out_modes, d)
    ranks = solve_ranks(format, rank, in_modes, out_modes)
    std = _resolve_std(std, init, in_features, out_features)
    return _draw(format, in_modes, out_modes, ranks, std, seed, dtype, xp, None)


def _modes(in_features, out_features, in_modes, out_modes, d):
    auto_in, auto_out = auto_modes(in_features, out_features, d)
    in_modes = check_modes(in_modes, in_features, "in_modes") or auto_in
    out_modes = check_modes(out_modes, out_features, "out_modes") or auto_out
    return in_modes, out_modes


def conv_modes(
    format: str,
    in_channels: int,
    out_channels: int,
    kernel_size,
    d: int | None = None,
    in_modes=None,
    out_modes=None,
):
    """Modes of a Conv2d kernel's matrix view for each scheme (docs/method.md §2).

    Returns ``(in_modes, out_modes)``: TT/TR ``(c_1..c_d, kh·kw)`` / ``(o_1..o_d, 1)``; Tucker
    ``(C_in, kh·kw)`` / ``(C_out,)``; CP ``(C_in, kh, kw)`` / ``(C_out,)``. ``in_modes``/``out_modes``
    override the channel modes of TT/TR.
    """
    format = check_format(format)
    kh, kw = _kernel_size(kernel_size)
    if format in ("tt", "tr"):
        ci, co = _modes(in_channels, out_channels, in_modes, out_modes, d)
        if len(ci) != len(co):
            raise ValueError(
                f"in_modes {ci} and out_modes {co} must have the same length for {format!r}"
            )
        return ci + (kh * kw,), co + (1,)
    if format == "tucker":
        return (in_channels, kh * kw), (out_channels,)
    return (in_channels, kh, kw), (out_channels,)


def _kernel_size(kernel_size):
    ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    if len(ks) != 2 or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(
            f"kernel_size must be a positive int or a pair of them; got {kernel_size!r}"
        )
    return ks


def conv_ranks(format: str, rank, in_modes, out_modes):
    """Solve ranks for a conv scheme; Tucker-2 leaves the spatial mode unfactorised."""
    factored = (True, False, True) if format == "tucker" else None
    if format == "tucker" and isinstance(rank, tuple) and len(rank) == 2:
        rank = (rank[0], None, rank[1])  # (R_in, R_out) shorthand for Tucker-2
    return solve_ranks(format, rank, in_modes, out_modes, factored=factored)


def random_factorized_conv(
    format: str,
    in_channels: int,
    out_channels: int,
    kernel_size,
    rank,
    *,
    std: float | None = None,
    init: str = "torch",
    seed=None,
    in_modes=None,
    out_modes=None,
    d: int | None = None,
    dtype: Any = None,
    xp: Any = None,
) -> Factorized:
    """A random factorised Conv2d kernel (its matrix view ``(C_in·kh·kw, C_out)``), exact element std.

    ``fan_in = C_in·kh·kw``. The result has ``kernel_size`` set and ``to_kernel()``.
    """
    format = check_format(format)
    _check_positive_int(in_channels, "in_channels")
    _check_positive_int(out_channels, "out_channels")
    kh, kw = _kernel_size(kernel_size)
    im, om = conv_modes(format, in_channels, out_channels, (kh, kw), d, in_modes, out_modes)
    ranks = conv_ranks(format, rank, im, om)
    std = _resolve_std(std, init, in_channels * kh * kw, out_channels * kh * kw)
    return _draw(format, im, om, ranks, std, seed, dtype, xp, (kh, kw))
