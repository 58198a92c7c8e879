"""Mode factorisation and rank solving (shapes only: no arrays here).

Ranks follow TensorLy's conventions:

* TT / TR: ``(r_0, r_1, ..., r_d)``; TT has ``r_0 = r_d = 1``, TR has ``r_0 = r_d``.
* Tucker: one rank per mode of ``in_modes + out_modes``; ``None`` marks a mode left unfactorised.
* CP: a single rank ``R``.

A rank argument may be an ``int`` (the same rank on every bond / mode, capped where the shapes allow
less, with a warning), a tuple (exact ranks, validated, never changed), or a ``float`` in ``(0, 1]``
(a parameter budget: the fraction of the dense matrix's ``N_in * N_out`` entries; the largest uniform
integer rank whose parameter count fits is solved exactly).
"""

from __future__ import annotations

import inspect
import math
import os
import warnings
from collections.abc import Sequence
from functools import lru_cache

__all__ = [
    "FORMATS",
    "prime_factors",
    "balanced_modes",
    "auto_modes",
    "axis_modes",
    "check_modes",
    "count_params",
    "max_tt_ranks",
    "solve_ranks",
    "check_format",
    "RankBudgetError",
]

FORMATS = ("tt", "tr", "tucker", "cp")
_MAX_AUTO_MODES = 4


class RankBudgetError(ValueError):
    """A float rank (a parameter budget) that even rank 1 on every bond exceeds: ``tensorize``
    leaves such a layer dense (`tedepr.tensorizing`), a layer built directly raises it."""


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """Warn, attributing the warning to the first caller outside tedepr (the user's own line)."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = inspect.currentframe(), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def check_format(format: str) -> str:
    """Normalise a format name or raise ``ValueError`` listing the allowed names."""
    if not isinstance(format, str):
        raise TypeError(
            f"format must be one of {', '.join(map(repr, FORMATS))} (a str); got "
            f"{type(format).__name__} {format!r}"
        )
    if format.lower() not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(map(repr, FORMATS))}; got {format!r}")
    return format.lower()


def prime_factors(n: int) -> list[int]:
    """Prime factors of ``n >= 1`` in ascending order (``[]`` for 1)."""
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


def balanced_modes(n: int, d: int) -> tuple[int, ...]:
    """Factorise ``n`` into ``d`` modes whose sizes are as equal as the prime factors allow.

    Greedy: each prime, largest first, multiplies the currently smallest mode. Modes of size 1 appear
    when ``n`` has fewer than ``d`` prime factors. Returned in descending order.
    """
    _check_positive_int(n, "n")
    _check_positive_int(d, "d")
    modes = [1] * d
    for p in sorted(prime_factors(n), reverse=True):
        modes[modes.index(min(modes))] *= p
    return tuple(sorted(modes, reverse=True))


def auto_modes(
    n_in: int, n_out: int, d: int | None = None
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Balanced ``(in_modes, out_modes)`` with the same number of modes on both sides.

    With ``d=None`` the number of modes is the largest ``d <= 4`` for which both sides still have
    every mode ``>= 2`` (at least 1).
    """
    _check_positive_int(n_in, "in_features")
    _check_positive_int(n_out, "out_features")
    if d is None:
        d = max(1, min(_MAX_AUTO_MODES, len(prime_factors(n_in)), len(prime_factors(n_out))))
    return balanced_modes(n_in, d), balanced_modes(n_out, d)


def axis_modes(shape: Sequence[int], d: int) -> tuple[int, ...]:
    """``d`` modes for a dimension that is a flattened array of ``shape`` (row-major, e.g. an image
    ``(C, H, W)``), each mode inside one axis: axes of size 1 are dropped, every other axis gets at
    least one mode and the rest are shared out by the axis' number of prime factors (largest
    remainder, earlier axes first on ties); each axis is factorised by `balanced_modes`. So a
    tensor-train bond never mixes two axes: for a 28×28 digit, ``axis_modes((1, 28, 28), 4) == (7, 4,
    7, 4)`` — rows (coarse, fine), then columns — where ``balanced_modes(784, 4) == (7, 7, 4, 4)``
    cuts across them (docs/method.md §4).

    ``d`` is raised to the number of axes larger than 1 when it is smaller; an axis gets at most as
    many modes as it has prime factors.
    """
    try:
        dims = tuple(int(a) for a in shape)
    except TypeError:
        raise TypeError(f"shape must be a sequence of positive ints; got {shape!r}") from None
    if not dims or any(a < 1 for a in dims):
        raise ValueError(f"shape must be a non-empty sequence of positive ints; got {shape!r}")
    _check_positive_int(d, "d")
    axes = [a for a in dims if a > 1] or [1]
    caps = [max(1, len(prime_factors(a))) for a in axes]
    d = min(max(d, len(axes)), sum(caps))
    counts = [1] * len(axes)
    extra = d - len(axes)
    weights = [c - 1 for c in caps]
    total = sum(weights)
    if extra and total:
        quotas = [extra * w / total for w in weights]
        for i, q in enumerate(quotas):
            counts[i] += min(int(q), caps[i] - 1)
        left = d - sum(counts)
        order = sorted(range(len(axes)), key=lambda i: (-(quotas[i] - int(quotas[i])), i))
        while left > 0:
            for i in order:
                if left and counts[i] < caps[i]:
                    counts[i] += 1
                    left -= 1
    return tuple(m for a, k in zip(axes, counts) for m in balanced_modes(a, k))


def check_modes(modes: Sequence[int] | None, dim: int, name: str) -> tuple[int, ...] | None:
    """Validate a mode tuple whose product must equal ``dim``; ``None`` passes through."""
    if modes is None:
        return None
    try:
        modes = tuple(int(m) for m in modes)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of positive ints; got {modes!r}") from None
    if not modes or any(m < 1 for m in modes):
        raise ValueError(f"{name} must be a non-empty sequence of positive ints; got {modes!r}")
    if math.prod(modes) != dim:
        raise ValueError(
            f"{name}={modes} multiply to {math.prod(modes)}, but the dimension is {dim}; "
            "the product of the modes must equal the dimension"
        )
    return modes


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int; got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return value


def max_tt_ranks(in_modes: Sequence[int], out_modes: Sequence[int]) -> tuple[int, ...]:
    """Largest useful TT bond ranks: ``r_k <= min(prod_{l<=k} n_l m_l, prod_{l>k} n_l m_l)``."""
    sizes = [n * m for n, m in zip(in_modes, out_modes)]
    d = len(sizes)
    return tuple(
        1 if k in (0, d) else min(math.prod(sizes[:k]), math.prod(sizes[k:])) for k in range(d + 1)
    )


def count_params(format: str, in_modes, out_modes, ranks) -> int:
    """Number of core entries of a factorisation with these modes and (solved) ranks."""
    format = check_format(format)
    if format in ("tt", "tr"):
        return sum(
            ranks[k] * n * m * ranks[k + 1] for k, (n, m) in enumerate(zip(in_modes, out_modes))
        )
    dims = tuple(in_modes) + tuple(out_modes)
    if format == "tucker":
        core = math.prod(dims[k] if r is None else r for k, r in enumerate(ranks))
        return core + sum(dim * r for dim, r in zip(dims, ranks) if r is not None)
    (rank,) = ranks
    return rank * sum(dims)


def solve_ranks(
    format: str, rank, in_modes, out_modes, *, factored=None, name: str = "rank"
) -> tuple:
    """Turn a rank argument into explicit ranks (see the module docstring for the conventions).

    ``factored`` (Tucker only): one bool per mode; an int or float rank then applies to the factored
    modes and the others get ``None`` (e.g. Tucker-2 for convolutions keeps the spatial mode).
    """
    format = check_format(format)
    if factored is not None:
        factored = tuple(bool(f) for f in factored)
        if (
            format != "tucker"
            or len(factored) != len(in_modes) + len(out_modes)
            or not any(factored)
        ):
            raise ValueError(
                "factored must be given for 'tucker' only, one bool per mode, not all False"
            )
    in_modes, out_modes = tuple(in_modes), tuple(out_modes)
    if format in ("tt", "tr") and len(in_modes) != len(out_modes):
        raise ValueError(
            f"format {format!r} needs as many in_modes as out_modes; got {in_modes} and {out_modes} "
            "(pad the shorter side with modes of size 1)"
        )
    if isinstance(rank, bool) or rank is None:
        raise TypeError(
            f"{name} must be an int, a tuple of ints or a float budget in (0, 1]; got {rank!r}"
        )
    if isinstance(rank, float):
        return _solve_budget(format, rank, in_modes, out_modes, name, factored)
    if isinstance(rank, int):
        return _uniform_ranks(format, rank, in_modes, out_modes, name, True, factored)
    if isinstance(rank, Sequence) and not isinstance(rank, (str, bytes)):
        return _check_explicit_ranks(format, tuple(rank), in_modes, out_modes, name)
    raise TypeError(
        f"{name} must be an int, a tuple of ints or a float budget in (0, 1]; got {rank!r}"
    )


def _uniform_ranks(format, r, in_modes, out_modes, name, warn, factored=None):
    if r < 1:
        raise ValueError(f"{name} must be >= 1; got {r}")
    dims = in_modes + out_modes
    if format == "tt":
        cap = max_tt_ranks(in_modes, out_modes)
        ranks = tuple(1 if k in (0, len(cap) - 1) else min(r, c) for k, c in enumerate(cap))
        capped = any(c < r for c in cap[1:-1])
    elif format == "tr":
        ranks = (r,) * (len(in_modes) + 1)
        capped = False
    elif format == "tucker":
        factored = factored or (True,) * len(dims)
        ranks = tuple(min(r, dim) if f else None for dim, f in zip(dims, factored))
        capped = any(dim < r for dim, f in zip(dims, factored) if f)
    else:
        ranks, capped = (r,), False
    if capped and warn:
        warn_user(
            f"{name}={r} exceeds what the modes {in_modes} x {out_modes} allow on some bonds; "
            f"using ranks {ranks}"
        )
    return ranks


def _check_explicit_ranks(format, ranks, in_modes, out_modes, name):
    if any(r is not None and (isinstance(r, bool) or not isinstance(r, int)) for r in ranks):
        raise TypeError(f"{name} must hold ints; got {ranks!r}")
    d = len(in_modes)
    if format in ("tt", "tr"):
        if len(ranks) != d + 1 or any(r is None or r < 1 for r in ranks):
            raise ValueError(
                f"{name} for format {format!r} with {d} cores must be {d + 1} positive ints "
                f"(r_0, ..., r_{d}); got {ranks}"
            )
        if format == "tt":
            if ranks[0] != 1 or ranks[-1] != 1:
                raise ValueError(f"{name} for format 'tt' must start and end with 1; got {ranks}")
            cap = max_tt_ranks(in_modes, out_modes)
            bad = [k for k, (r, c) in enumerate(zip(ranks, cap)) if r > c]
            if bad:
                raise ValueError(
                    f"{name}={ranks} exceeds the largest ranks the modes allow, {cap}, at bonds {bad}"
                )
        elif ranks[0] != ranks[-1]:
            raise ValueError(
                f"{name} for format 'tr' must have equal boundary ranks r_0 == r_{d}; got {ranks}"
            )
        return ranks
    dims = in_modes + out_modes
    if format == "tucker":
        if len(ranks) != len(dims):
            raise ValueError(
                f"{name} for format 'tucker' needs one rank per mode ({len(dims)} modes "
                f"{dims}); got {ranks}"
            )
        for k, (r, dim) in enumerate(zip(ranks, dims)):
            if r is not None and not 1 <= r <= dim:
                raise ValueError(
                    f"{name}[{k}]={r} must be between 1 and the mode size {dim} (or None)"
                )
        if all(r is None for r in ranks):
            raise ValueError(f"{name} for format 'tucker' must factorise at least one mode")
        return ranks
    if len(ranks) != 1 or ranks[0] is None or ranks[0] < 1:
        raise ValueError(f"{name} for format 'cp' must be one positive int; got {ranks}")
    return ranks


def _solve_budget(format, frac, in_modes, out_modes, name, factored=None):
    if not (math.isfinite(frac) and 0.0 < frac <= 1.0):
        raise ValueError(
            f"{name} as a float is a parameter budget and must be in (0, 1]; got {frac}"
        )
    return _solve_budget_cached(format, frac, in_modes, out_modes, name, factored)


@lru_cache(maxsize=1024)
def _solve_budget_cached(format, frac, in_modes, out_modes, name, factored):
    budget = frac * math.prod(in_modes) * math.prod(out_modes)

    def params(r):
        ranks = _uniform_ranks(format, r, in_modes, out_modes, name, False, factored)
        return count_params(format, in_modes, out_modes, ranks)

    if params(1) > budget:
        raise RankBudgetError(
            f"{name}={frac} allows {budget:.0f} parameters, but even rank 1 needs {params(1)} "
            f"for modes {in_modes} x {out_modes}"
        )
    # params(r) is non-decreasing in r: grow an upper bound, then bisect for the largest fit.
    lo, hi = 1, 2
    limit = math.prod(in_modes) * math.prod(out_modes)
    while params(hi) <= budget and hi < limit:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if params(mid) <= budget else (lo, mid)
    return _uniform_ranks(format, lo, in_modes, out_modes, name, False, factored)
