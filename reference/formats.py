"""Naive dense reconstruction of the four matrix formats (TT, TR, Tucker, CP).

Conventions (docs/method.md §1-2): a weight is ``W`` of shape ``(N_in, N_out)`` with
``N_in = prod(in_modes)`` and ``N_out = prod(out_modes)``; row/column indices are C-order ravels of
the mode indices, i.e. ``W.reshape(*in_modes, *out_modes)`` is the full weight tensor.
Only numpy is used; everything is written for clarity, not speed.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

__all__ = [
    "tt_to_dense",
    "tr_to_dense",
    "tucker_to_dense",
    "cp_to_dense",
    "to_dense",
    "matrix_to_kernel",
    "kernel_to_matrix",
]

_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _prod(xs: Sequence[int]) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out


def _check_chain(cores: Sequence[np.ndarray]) -> None:
    if len(cores) == 0:
        raise ValueError("need at least one core")
    for k, g in enumerate(cores):
        if g.ndim != 4:
            raise ValueError(f"core {k} must have shape (r_prev, n, m, r_next), got {g.shape}")
    for k in range(len(cores) - 1):
        if cores[k].shape[3] != cores[k + 1].shape[0]:
            raise ValueError(
                f"rank mismatch between core {k} {cores[k].shape} and core {k + 1} "
                f"{cores[k + 1].shape}"
            )


def _chain_product(cores: Sequence[np.ndarray], idx_in: tuple, idx_out: tuple) -> np.ndarray:
    """Matrix product G_1[:, i_1, j_1, :] @ ... @ G_d[:, i_d, j_d, :], shape (r_0, r_d)."""
    prod = cores[0][:, idx_in[0], idx_out[0], :]
    for k in range(1, len(cores)):
        prod = prod @ cores[k][:, idx_in[k], idx_out[k], :]
    return prod


def _chain_to_dense(cores: Sequence[np.ndarray], ring: bool) -> np.ndarray:
    cores = [np.asarray(g) for g in cores]
    _check_chain(cores)
    in_modes = [g.shape[1] for g in cores]
    out_modes = [g.shape[2] for g in cores]
    dtype = np.result_type(*cores)
    W = np.zeros((_prod(in_modes), _prod(out_modes)), dtype=dtype)
    for idx_in in itertools.product(*[range(n) for n in in_modes]):
        i = int(np.ravel_multi_index(idx_in, in_modes))
        for idx_out in itertools.product(*[range(m) for m in out_modes]):
            j = int(np.ravel_multi_index(idx_out, out_modes))
            M = _chain_product(cores, idx_in, idx_out)
            W[i, j] = np.trace(M) if ring else M[0, 0]
    return W


def tt_to_dense(cores: Sequence[np.ndarray]) -> np.ndarray:
    """TT-matrix cores ``G_k`` (r_{k-1}, n_k, m_k, r_k), r_0 = r_d = 1 -> W (N_in, N_out).

    Element by element: ``W[i, j] = G_1[:, i_1, j_1, :] @ ... @ G_d[:, i_d, j_d, :]``.
    """
    cores = [np.asarray(g) for g in cores]
    _check_chain(cores)
    if cores[0].shape[0] != 1 or cores[-1].shape[3] != 1:
        raise ValueError(
            f"TT needs r_0 = r_d = 1, got r_0={cores[0].shape[0]}, r_d={cores[-1].shape[3]}"
        )
    return _chain_to_dense(cores, ring=False)


def tr_to_dense(cores: Sequence[np.ndarray]) -> np.ndarray:
    """TR cores ``G_k`` (r_{k-1}, n_k, m_k, r_k), r_0 = r_d -> W (N_in, N_out).

    Element by element: ``W[i, j] = trace(G_1[:, i_1, j_1, :] @ ... @ G_d[:, i_d, j_d, :])``.
    """
    cores = [np.asarray(g) for g in cores]
    _check_chain(cores)
    if cores[0].shape[0] != cores[-1].shape[3]:
        raise ValueError(
            f"TR needs r_0 == r_d, got r_0={cores[0].shape[0]}, r_d={cores[-1].shape[3]}"
        )
    return _chain_to_dense(cores, ring=True)


def tucker_to_dense(
    core: np.ndarray,
    factors: Sequence[np.ndarray | None],
    in_modes: Sequence[int],
    out_modes: Sequence[int],
) -> np.ndarray:
    """Tucker core (R_1..R_{p+q}) and factors U_k (dim_k, R_k) or None -> W (N_in, N_out).

    ``None`` is an identity factor (R_k = dim_k). One-shot ``np.einsum(optimize=False)``.
    """
    core = np.asarray(core)
    dims = list(in_modes) + list(out_modes)
    n = len(dims)
    if core.ndim != n or len(factors) != n:
        raise ValueError(
            f"need a core of ndim {n} and {n} factors, "
            f"got core {core.shape} and {len(factors)} factors"
        )
    rank_letters = _LETTERS[:n]
    idx_letters = _LETTERS[n : 2 * n]
    operands: list[np.ndarray] = [core]
    terms = [rank_letters]
    out = ""
    for k, U in enumerate(factors):
        if U is None:
            if core.shape[k] != dims[k]:
                raise ValueError(
                    f"mode {k}: None factor needs R_k = {dims[k]}, got {core.shape[k]}"
                )
            out += rank_letters[k]
        else:
            U = np.asarray(U)
            if U.shape != (dims[k], core.shape[k]):
                raise ValueError(
                    f"factor {k} must have shape {(dims[k], core.shape[k])}, got {U.shape}"
                )
            operands.append(U)
            terms.append(idx_letters[k] + rank_letters[k])
            out += idx_letters[k]
    eq = ",".join(terms) + "->" + out
    full = np.einsum(eq, *operands, optimize=False)
    return full.reshape(_prod(in_modes), _prod(out_modes))


def cp_to_dense(
    factors: Sequence[np.ndarray], in_modes: Sequence[int], out_modes: Sequence[int]
) -> np.ndarray:
    """CP factors U_k (dim_k, R) -> W (N_in, N_out) = sum_r outer(U_1[:, r], ..., U_N[:, r])."""
    factors = [np.asarray(U) for U in factors]
    dims = list(in_modes) + list(out_modes)
    if len(factors) != len(dims):
        raise ValueError(f"need {len(dims)} factors, got {len(factors)}")
    R = factors[0].shape[1]
    for k, U in enumerate(factors):
        if U.shape != (dims[k], R):
            raise ValueError(f"factor {k} must have shape {(dims[k], R)}, got {U.shape}")
    full = np.zeros(dims, dtype=np.result_type(*factors))
    for r in range(R):
        term = factors[0][:, r]
        for U in factors[1:]:
            term = np.multiply.outer(term, U[:, r])
        full = full + term
    return full.reshape(_prod(in_modes), _prod(out_modes))


def to_dense(format: str, cores, in_modes: Sequence[int], out_modes: Sequence[int]) -> np.ndarray:
    """Dispatch to the format's reconstruction -> W (N_in, N_out).

    ``cores``: TT/TR core list; CP factor list; Tucker ``(core, factors)``.
    """
    fmt = format.lower()
    if fmt in ("tt", "tr"):
        got_in = tuple(int(np.shape(g)[1]) for g in cores)
        got_out = tuple(int(np.shape(g)[2]) for g in cores)
        if got_in != tuple(in_modes) or got_out != tuple(out_modes):
            raise ValueError(
                f"cores have modes {got_in} x {got_out}, expected {tuple(in_modes)} x "
                f"{tuple(out_modes)}"
            )
        return tt_to_dense(cores) if fmt == "tt" else tr_to_dense(cores)
    if fmt == "tucker":
        core, factors = cores
        return tucker_to_dense(core, factors, in_modes, out_modes)
    if fmt == "cp":
        return cp_to_dense(cores, in_modes, out_modes)
    raise ValueError(f"unknown format {format!r}; expected 'tt', 'tr', 'tucker' or 'cp'")


def kernel_to_matrix(K: np.ndarray) -> np.ndarray:
    """Conv kernel K (C_out, C_in, kh, kw) -> matrix view W (C_in*kh*kw, C_out), rows (c, y, x)."""
    K = np.asarray(K)
    if K.ndim != 4:
        raise ValueError(f"kernel must have shape (C_out, C_in, kh, kw), got {K.shape}")
    return K.reshape(K.shape[0], -1).T


def matrix_to_kernel(W: np.ndarray, kernel_size) -> np.ndarray:
    """Matrix view W (C_in*kh*kw, C_out) -> kernel K (C_out, C_in, kh, kw) (inverse view)."""
    W = np.asarray(W)
    kh, kw = (kernel_size, kernel_size) if np.isscalar(kernel_size) else tuple(kernel_size)
    if W.ndim != 2 or W.shape[0] % (kh * kw) != 0:
        raise ValueError(f"W of shape {W.shape} is not a (C_in*{kh}*{kw}, C_out) matrix")
    c_in = W.shape[0] // (kh * kw)
    return W.T.reshape(W.shape[1], c_in, kh, kw)
