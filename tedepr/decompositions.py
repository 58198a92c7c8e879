"""Decomposing given matrices and Conv2d kernels: TT-SVD, TR-SVD, HOSVD/HOOI (Tucker), CP-ALS.

All algorithms run in the array namespace of the input (NumPy, PyTorch, JAX, array_api_strict) with
array-API calls only (``linalg.svd`` with ``full_matrices=False`` — never the full square factors of a wide
unfolding — ``linalg.pinv``, and tedepr's planned `einsum`). Ranks chosen from the data (``rtol``) are
read back to Python, so these functions are not meant to be traced by ``jax.jit``.

Each returns a factorised matrix whose ``error`` is the achieved relative Frobenius error
``‖W − Ŵ‖_F / ‖W‖_F``; the ``*_svd`` functions also return the a-priori bound
``sqrt(Σ discarded σ²)`` (absolute) of Oseledets (2011, Thm. 2.2) and its TR/HOSVD analogues.
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat
import numpy as np

from .contraction import einsum
from .formats import CPMatrix, Factorized, TRMatrix, TTMatrix, TuckerMatrix
from .init import _kernel_size, conv_modes, conv_ranks
from .namespace import get_namespace, is_array, to_numpy
from .shapes import auto_modes, check_format, check_modes, max_tt_ranks, solve_ranks, warn_user
from .validation import check_int, check_real, check_seed, check_tolerance

__all__ = ["decompose", "decompose_conv", "tt_svd", "tr_svd", "hosvd", "hooi", "cp_als"]


# --------------------------------------------------------------------------- helpers
def _norm(xp, a) -> float:
    """‖a‖_F without overflow or underflow: the squares are summed after dividing by max |a|."""
    peak = float(xp.max(xp.abs(a))) if math.prod(a.shape) else 0.0
    if peak == 0.0:
        return 0.0
    b = a / peak
    return peak * float(xp.sqrt(xp.sum(b * b)))


def _unit(xp, w):
    """``(w / ‖w‖_F, ‖w‖_F)`` (``(w, 1.0)`` for a zero matrix). Every algorithm runs on the unit-norm
    matrix and rescales one core at the end: the decompositions are scale-equivariant, so this is
    exact, and no intermediate (squares, Gram matrices) can overflow or underflow at any finite
    scale of the input."""
    scale = _norm(xp, w)
    if scale == 0.0 or scale == 1.0:
        return w, 1.0
    return w / scale, scale


def _svd(xp, a):
    u, s, vh = xp.linalg.svd(a, full_matrices=False)
    return u, s, vh


def _truncation(s, max_rank: int, delta_sq: float) -> tuple[int, float]:
    """Smallest rank r <= max_rank whose discarded tail Σ_{i>=r} σ_i² is <= delta_sq; and that tail."""
    sq = to_numpy(s).astype(np.float64) ** 2
    tail = np.concatenate([np.cumsum(sq[::-1])[::-1], [0.0]])  # tail[r] = Σ_{i>=r} σ_i²
    r = int(np.argmax(tail <= delta_sq)) if delta_sq > 0 else len(sq)
    r = max(1, min(r, max_rank, len(sq)))
    return r, float(tail[r])


def _check_input(w, name="w"):
    if not is_array(w):
        raise TypeError(f"{name} must be an array; got {type(w).__name__}")
    xp = get_namespace(w)
    if not xp.isdtype(w.dtype, "real floating"):
        raise TypeError(f"{name} must have a real floating dtype; got {w.dtype}")
    if not bool(xp.all(xp.isfinite(w))):
        raise ValueError(f"{name} contains NaN or infinite values; decompose needs finite input")
    return xp


def _check_rtol(rtol):
    if rtol is None:
        return 0.0
    rtol = check_real(rtol, "rtol", "a number in [0, 1)")
    if not (math.isfinite(rtol) and 0.0 <= rtol < 1.0):
        raise ValueError(f"rtol must be in [0, 1); got {rtol}")
    return rtol


def _relative_error(xp, w, f: Factorized) -> float:
    norm = _norm(xp, w)
    diff = w - f.to_dense()
    return _norm(xp, diff) / norm if norm > 0 else _norm(xp, diff)


def _interleaved(xp, w, in_modes, out_modes):
    """W (N_in, N_out) -> tensor (n_1, m_1, n_2, m_2, ...)."""
    d = len(in_modes)
    t = xp.reshape(w, tuple(in_modes) + tuple(out_modes))
    return xp.permute_dims(t, tuple(k for pair in zip(range(d), range(d, 2 * d)) for k in pair))


# --------------------------------------------------------------------------- TT / TR
def tt_svd(w, in_modes, out_modes, rank=None, rtol=None) -> tuple[TTMatrix, float]:
    """TT-SVD of a matrix into a TT-matrix (Oseledets 2011, Alg. 1, on the interleaved modes).

    ``rank``: None (exact, up to the largest ranks the modes allow), int/tuple/float (see
    `tedepr.shapes.solve_ranks`), used as upper bounds per bond. ``rtol``: relative error target; each of
    the ``d − 1`` truncations discards at most ``(rtol·‖W‖)²/(d − 1)``. Returns ``(f, bound)``.
    """
    xp = _check_input(w)
    w, scale = _unit(xp, w)
    in_modes, out_modes = tuple(in_modes), tuple(out_modes)
    d = len(in_modes)
    caps = (
        max_tt_ranks(in_modes, out_modes)
        if rank is None
        else solve_ranks("tt", rank, in_modes, out_modes)
    )
    rtol = _check_rtol(rtol)
    delta_sq = (rtol * _norm(xp, w)) ** 2 / max(d - 1, 1)
    c = _interleaved(xp, w, in_modes, out_modes)
    cores, r_prev, discarded = [], 1, 0.0
    for k in range(d - 1):
        c = xp.reshape(c, (r_prev * in_modes[k] * out_modes[k], -1))
        u, s, vh = _svd(xp, c)
        r, tail = _truncation(s, caps[k + 1], delta_sq)
        discarded += tail
        cores.append(xp.reshape(u[:, :r], (r_prev, in_modes[k], out_modes[k], r)))
        c = xp.reshape(s[:r], (r, 1)) * vh[:r, :]
        r_prev = r
    cores.append(xp.reshape(c, (r_prev, in_modes[-1], out_modes[-1], 1)))
    err = _relative_error(xp, w, TTMatrix(cores))
    cores[0] = cores[0] * scale
    return TTMatrix(cores, error=err), scale * math.sqrt(discarded)


def tr_svd(w, in_modes, out_modes, rank, rtol=None) -> tuple[TRMatrix, float]:
    """TR-SVD (Zhao et al. 2016, Alg. 1): the first unfolding's SVD is split into ``r_0 × r_1``.

    ``rank``: int ``R`` (boundary rank ``r_0 = r_d = R``, interior ranks up to ``R``), or a tuple
    ``(R, r_1, ..., r_{d-1}, R)`` of upper bounds. The first truncation keeps ``r_0·r_1`` singular values
    (``r_1`` reduced so that the product does not exceed the unfolding's rank). ``rtol`` as in the paper:
    the first step may discard ``2(rtol‖W‖)²/d``, the others ``(rtol‖W‖)²/d``. Returns ``(f, bound)``.
    """
    xp = _check_input(w)
    w, scale = _unit(xp, w)
    in_modes, out_modes = tuple(in_modes), tuple(out_modes)
    d = len(in_modes)
    caps = solve_ranks("tr", rank, in_modes, out_modes)
    r0 = caps[0]
    if d < 2:
        raise ValueError("tr_svd needs at least 2 modes per side (a ring of one core is a trace)")
    rtol = _check_rtol(rtol)
    norm_sq = _norm(xp, w) ** 2
    c = xp.reshape(_interleaved(xp, w, in_modes, out_modes), (in_modes[0] * out_modes[0], -1))
    u, s, vh = _svd(xp, c)
    kept, tail = _truncation(s, r0 * caps[1], 2 * rtol**2 * norm_sq / d)
    # r_0·r_1 must hold the kept singular vectors: round r_1 up and pad with zero columns, so the
    # split is exact at full rank even when r_0 does not divide the unfolding's rank
    if r0 > min(c.shape):
        raise ValueError(
            f"rank: boundary rank r_0={r0} exceeds the rank {min(c.shape)} of the first unfolding "
            f"({c.shape[0]}x{c.shape[1]}); use a smaller boundary rank"
        )
    r1 = -(-kept // r0)
    pad = r0 * r1 - kept
    discarded = tail
    u_kept = u[:, :kept]
    sv = xp.reshape(s[:kept], (kept, 1)) * vh[:kept, :]
    if pad:
        dev = array_api_compat.device(u)
        u_kept = xp.concat([u_kept, xp.zeros((u.shape[0], pad), dtype=u.dtype, device=dev)], axis=1)
        sv = xp.concat([sv, xp.zeros((pad, sv.shape[1]), dtype=sv.dtype, device=dev)], axis=0)
    g1 = xp.reshape(u_kept, (in_modes[0], out_modes[0], r0, r1))
    cores = [xp.permute_dims(g1, (2, 0, 1, 3))]
    rest = xp.reshape(sv, (r0, r1, -1))
    c = xp.permute_dims(rest, (1, 2, 0))  # (r_1, n_2 m_2 ... n_d m_d, r_0)
    r_prev = r1
    for k in range(1, d - 1):
        c = xp.reshape(c, (r_prev * in_modes[k] * out_modes[k], -1))
        u, s, vh = _svd(xp, c)
        r, tail = _truncation(s, caps[k + 1], rtol**2 * norm_sq / d)
        discarded += tail
        cores.append(xp.reshape(u[:, :r], (r_prev, in_modes[k], out_modes[k], r)))
        c = xp.reshape(s[:r], (r, 1)) * vh[:r, :]
        r_prev = r
    cores.append(xp.reshape(c, (r_prev, in_modes[-1], out_modes[-1], r0)))
    err = _relative_error(xp, w, TRMatrix(cores))
    cores[0] = cores[0] * scale
    return TRMatrix(cores, error=err), scale * math.sqrt(discarded)


# --------------------------------------------------------------------------- Tucker
def _unfold(xp, t, k):
    n = len(t.shape)
    return xp.reshape(
        xp.permute_dims(t, (k,) + tuple(i for i in range(n) if i != k)), (t.shape[k], -1)
    )


def _tucker_core(xp, t, factors):
    n = len(t.shape)
    ops, labels = [t], [tuple(range(n))]
    out = []
    for k, u in enumerate(factors):
        if u is None:
            out.append(k)
        else:
            ops.append(u)
            labels.append((k, n + k))
            out.append(n + k)
    return einsum(ops, labels, out, xp=xp)


def _tucker_ranks(rank, in_modes, out_modes, factored):
    if rank is None:
        dims = in_modes + out_modes
        return tuple(dim if f else None for dim, f in zip(dims, factored))
    return solve_ranks("tucker", rank, in_modes, out_modes, factored=factored)


def hosvd(w, in_modes, out_modes, rank=None, rtol=None, *, factored=None, kernel_size=None):
    """Truncated HOSVD (De Lathauwer et al. 2000) of ``W`` seen as a tensor over ``in_modes + out_modes``.

    ``factored``: which modes get a factor (default all). ``rtol``: each of the ``N`` factored modes
    discards at most ``(rtol‖W‖)²/N``. Returns ``(f, bound)`` with ``bound² = Σ discarded σ²``.
    """
    xp = _check_input(w)
    w, scale = _unit(xp, w)
    in_modes, out_modes = tuple(in_modes), tuple(out_modes)
    n = len(in_modes) + len(out_modes)
    factored = (True,) * n if factored is None else tuple(factored)
    ranks = _tucker_ranks(rank, in_modes, out_modes, factored)
    rtol = _check_rtol(rtol)
    delta_sq = (rtol * _norm(xp, w)) ** 2 / sum(factored)
    t = xp.reshape(w, in_modes + out_modes)
    factors, discarded = [], 0.0
    for k in range(n):
        if ranks[k] is None:
            factors.append(None)
            continue
        u, s, _ = _svd(xp, _unfold(xp, t, k))
        r, tail = _truncation(s, ranks[k], delta_sq)
        if rank is not None and r < ranks[k] and s.shape[0] < ranks[k]:
            # a mode larger than the product of the others has fewer singular vectors than asked
            warn_user(
                f"rank: mode {k} can hold at most rank {s.shape[0]} (its unfolding is "
                f"{t.shape[k]}x{math.prod(t.shape) // t.shape[k]}); using {r} instead of {ranks[k]}",
            )
        discarded += tail
        factors.append(u[:, :r])
    core = _tucker_core(xp, t, factors)
    f = TuckerMatrix(core, factors, in_modes, out_modes, kernel_size=kernel_size)
    err = _relative_error(xp, w, f)
    return TuckerMatrix(
        core * scale, factors, in_modes, out_modes, kernel_size=kernel_size, error=err
    ), scale * math.sqrt(discarded)


def hooi(
    w,
    in_modes,
    out_modes,
    rank,
    *,
    factored=None,
    n_iter: int = 25,
    tol: float = 1e-10,
    kernel_size=None,
) -> TuckerMatrix:
    """Higher-order orthogonal iteration (De Lathauwer et al. 2000b), started from the truncated HOSVD.

    Stops after ``n_iter`` sweeps or when the relative error improves by less than ``tol``.
    """
    xp = _check_input(w)
    n_iter = check_int(n_iter, "n_iter")
    tol = check_tolerance(tol, "tol")
    w, scale = _unit(xp, w)
    f, _ = hosvd(w, in_modes, out_modes, rank, factored=factored, kernel_size=kernel_size)
    in_modes, out_modes = tuple(in_modes), tuple(out_modes)
    t = xp.reshape(w, in_modes + out_modes)
    factors = list(f.factors)
    n = len(factors)
    err = f.error
    for _ in range(n_iter):
        for k in range(n):
            if factors[k] is None:
                continue
            others = [None if (j == k) else u for j, u in enumerate(factors)]
            y = _tucker_core(xp, t, others)
            u, _, _ = _svd(xp, _unfold(xp, y, k))
            # y's unfolding has rank <= the product of the other ranks, so u may have fewer
            # columns than R_k: R_k is an upper bound here as in hosvd (and a slice past the end
            # is not portable: array_api_strict rejects it)
            factors[k] = u[:, : min(f.core.shape[k], u.shape[1])]
        core = _tucker_core(xp, t, factors)
        g = TuckerMatrix(core, factors, in_modes, out_modes, kernel_size=kernel_size)
        new_err = _relative_error(xp, w, g)
        done = err - new_err < tol
        err = new_err
        if done:
            break
    core = _tucker_core(xp, t, factors) * scale
    return TuckerMatrix(core, factors, in_modes, out_modes, kernel_size=kernel_size, error=err)


# --------------------------------------------------------------------------- CP
def cp_als(
    w,
    in_modes,
    out_modes,
    rank: int,
    *,
    n_iter: int = 200,
    tol: float = 1e-12,
    seed=0,
    kernel_size=None,
) -> CPMatrix:
    """CP by alternating least squares (Kolda & Bader 2009, Fig. 3.3) over ``in_modes + out_modes``.

    Factors start from the leading left singular vectors of each unfolding (random columns where
    ``rank`` exceeds the mode size, drawn from ``seed``). Stops after ``n_iter`` sweeps or when the
    relative error changes by less than ``tol``.
    """
    xp = _check_input(w)
    n_iter = check_int(n_iter, "n_iter")
    tol = check_tolerance(tol, "tol")
    seed = check_seed(seed)
    w, scale = _unit(xp, w)
    in_modes, out_modes = tuple(in_modes), tuple(out_modes)
    (rank,) = solve_ranks("cp", rank, in_modes, out_modes)
    t = xp.reshape(w, in_modes + out_modes)
    n = len(t.shape)
    rng = np.random.default_rng(seed)
    factors = []
    for k in range(n):
        u, _, _ = _svd(xp, _unfold(xp, t, k))
        u = u[:, : min(rank, u.shape[1])]  # a slice past the end is not portable
        if u.shape[1] < rank:
            extra = xp.asarray(
                rng.standard_normal((t.shape[k], rank - u.shape[1])),
                dtype=w.dtype,
                device=array_api_compat.device(w),
            )
            u = xp.concat([u, extra], axis=1)
        factors.append(u)
    full = tuple(range(n))
    err = math.inf
    for _ in range(n_iter):
        for k in range(n):
            others = [j for j in range(n) if j != k]
            gram = None
            for j in others:
                g = xp.matmul(xp.permute_dims(factors[j], (1, 0)), factors[j])
                gram = g if gram is None else gram * g
            mttkrp = einsum(
                [t] + [factors[j] for j in others], [full] + [(j, n) for j in others], (k, n), xp=xp
            )
            factors[k] = xp.matmul(mttkrp, xp.linalg.pinv(gram))
        g = CPMatrix(factors, in_modes, out_modes)
        new_err = _relative_error(xp, w, g)
        done = abs(err - new_err) < tol
        err = new_err
        if done:
            break
    factors[0] = factors[0] * scale
    return CPMatrix(factors, in_modes, out_modes, kernel_size=kernel_size, error=err)


# --------------------------------------------------------------------------- entry points
def decompose(
    w,
    format: str = "tt",
    rank=None,
    *,
    rtol: float | None = None,
    in_modes=None,
    out_modes=None,
    d: int | None = None,
    method: str | None = None,
    n_iter: int | None = None,
    tol: float | None = None,
    seed: int | np.random.Generator | None = None,
) -> Factorized:
    """Decompose a matrix ``w`` of shape ``(N_in, N_out)`` (as used in ``y = x @ w``).

    Parameters
    ----------
    w : array (N_in, N_out), any array-API library, real floating, finite.
    format : {"tt", "tr", "tucker", "cp"}
    rank : None, int, tuple or float
        None: exact (TT, Tucker) — give ``rtol`` to truncate; required for TR (boundary rank) and CP.
        int/tuple/float as in `tedepr.shapes.solve_ranks` (upper bounds for the SVD-based methods).
    rtol : float in [0, 1), optional
        Relative error target for the SVD-based methods.
    in_modes, out_modes, d : modes (default: balanced, `tedepr.shapes.auto_modes`).
    method : Tucker only: "hosvd" (default) or "hooi".
    n_iter, tol : iterations (int >= 1) and tolerance (finite, >= 0) of the iterative methods,
        `cp_als` and `hooi` (their defaults when None); an error for the other methods.
    seed : `cp_als` only: seed of the random starting columns (None, int >= 0 or a Generator).

    Returns
    -------
    Factorized with ``error`` = achieved relative Frobenius error.
    """
    format = check_format(format)
    _check_input(w)
    if len(w.shape) != 2:
        raise ValueError(
            f"w must be a matrix (N_in, N_out); got shape {tuple(w.shape)} "
            "(use decompose_conv for a Conv2d kernel)"
        )
    n_in, n_out = int(w.shape[0]), int(w.shape[1])
    auto_in, auto_out = auto_modes(n_in, n_out, d)
    in_modes = check_modes(in_modes, n_in, "in_modes") or auto_in
    out_modes = check_modes(out_modes, n_out, "out_modes") or auto_out
    options = _iterative_options(format, method, n_iter, tol, seed)
    return _decompose(w, format, rank, rtol, in_modes, out_modes, method, None, None, options)


def _iterative_options(format, method, n_iter, tol, seed) -> dict[str, Any]:
    """The options given, checked against the method they apply to (none is silently dropped)."""
    given = {k: v for k, v in (("n_iter", n_iter), ("tol", tol), ("seed", seed)) if v is not None}
    iterative = format == "cp" or (format == "tucker" and method == "hooi")
    if given and not iterative:
        which = f"format {format!r}" + (f" with method={method!r}" if method else "")
        raise ValueError(
            f"{', '.join(given)} apply to the iterative methods only (format 'cp', or 'tucker' "
            f"with method='hooi'); {which} takes none of them"
        )
    if "seed" in given and format != "cp":
        raise ValueError("seed applies to format 'cp' only (random starting columns of CP-ALS)")
    return given


def _decompose(w, format, rank, rtol, in_modes, out_modes, method, factored, kernel_size, options):
    if method is not None and not isinstance(method, str):
        raise TypeError(f"method must be 'hosvd' or 'hooi' (a str); got {type(method).__name__}")
    if method is not None and format != "tucker":
        raise ValueError(
            f"method applies to format 'tucker' only; got method={method!r} for {format!r}"
        )
    if format == "tt":
        f, _ = tt_svd(w, in_modes, out_modes, rank, rtol)
    elif format == "tr":
        if rank is None:
            raise ValueError(
                "rank is required for format 'tr' (it fixes the boundary rank r_0 = r_d)"
            )
        f, _ = tr_svd(w, in_modes, out_modes, rank, rtol)
    elif format == "tucker":
        method = "hosvd" if method is None else method
        if method == "hosvd":
            f, _ = hosvd(
                w, in_modes, out_modes, rank, rtol, factored=factored, kernel_size=kernel_size
            )
        elif method == "hooi":
            if rank is None:
                raise ValueError("rank is required for method 'hooi'")
            f = hooi(
                w, in_modes, out_modes, rank, factored=factored, kernel_size=kernel_size, **options
            )
        else:
            raise ValueError(f"method must be 'hosvd' or 'hooi'; got {method!r}")
        return f
    else:
        if rank is None:
            raise ValueError("rank is required for format 'cp'")
        return cp_als(w, in_modes, out_modes, rank, kernel_size=kernel_size, **options)
    if kernel_size is not None:
        f = type(f)(f.cores, f.in_modes, f.out_modes, kernel_size=kernel_size, error=f.error)
    return f


def decompose_conv(
    kernel,
    format: str = "tucker",
    rank=None,
    *,
    rtol: float | None = None,
    in_modes=None,
    out_modes=None,
    d: int | None = None,
    method: str | None = None,
    n_iter: int | None = None,
    tol: float | None = None,
    seed: int | np.random.Generator | None = None,
) -> Factorized:
    """Decompose a Conv2d kernel ``(C_out, C_in, kh, kw)`` in a conv scheme (docs/method.md §2).

    TT/TR use the Garipov layout (channel modes plus a spatial core), Tucker is Tucker-2 (channel factors
    only), CP has four factors (Lebedev et al. 2015). The result has ``kernel_size`` and ``to_kernel()``.
    """
    format = check_format(format)
    xp = _check_input(kernel, "kernel")
    if len(kernel.shape) != 4:
        raise ValueError(f"kernel must have shape (C_out, C_in, kh, kw); got {tuple(kernel.shape)}")
    c_out, c_in, kh, kw = (int(n) for n in kernel.shape)
    kh, kw = _kernel_size((kh, kw))
    im, om = conv_modes(format, c_in, c_out, (kh, kw), d, in_modes, out_modes)
    w = xp.permute_dims(xp.reshape(kernel, (c_out, -1)), (1, 0))
    factored = (True, False, True) if format == "tucker" else None
    if format == "tucker" and rank is not None:
        rank = conv_ranks("tucker", rank, im, om)
    options = _iterative_options(format, method, n_iter, tol, seed)
    return _decompose(w, format, rank, rtol, im, om, method, factored, (kh, kw), options)
