"""Textbook decompositions: TT-SVD (Oseledets 2011), TR-SVD (Zhao et al. 2016), truncated HOSVD.

All are matrix versions over the in/out modes of docs/method.md: W (N_in, N_out) is viewed as the
tensor ``W.reshape(*in_modes, *out_modes)`` and the k-th TT/TR core carries the pair (n_k, m_k).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["tt_svd", "tr_svd", "hosvd"]


def _prod(xs: Sequence[int]) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out


def _interleaved(W: np.ndarray, in_modes: Sequence[int], out_modes: Sequence[int]) -> np.ndarray:
    """W (N_in, N_out) -> tensor (n_1*m_1, ..., n_d*m_d) with the pairs (n_k, m_k) side by side."""
    d = len(in_modes)
    if len(out_modes) != d:
        raise ValueError(
            f"need as many in modes as out modes, got {len(in_modes)}, {len(out_modes)}"
        )
    if W.shape != (_prod(in_modes), _prod(out_modes)):
        raise ValueError(f"W has shape {W.shape}, modes give {(_prod(in_modes), _prod(out_modes))}")
    T = W.reshape(*in_modes, *out_modes)
    perm = []
    for k in range(d):
        perm += [k, d + k]  # (n_1, m_1, n_2, m_2, ...)
    T = T.transpose(perm)
    return T.reshape([int(in_modes[k]) * int(out_modes[k]) for k in range(d)])


def _rank_caps(max_rank, d: int) -> list[int | None]:
    """Interior rank caps (r_1..r_{d-1}) from None, an int, d-1 ints, or the full d+1 ranks."""
    if max_rank is None:
        return [None] * (d - 1)
    if np.isscalar(max_rank):
        return [int(max_rank)] * (d - 1)
    caps = list(max_rank)
    if len(caps) == d + 1:
        caps = caps[1:-1]
    if len(caps) != d - 1:
        raise ValueError(f"max_rank must be an int, {d - 1} interior ranks or {d + 1} ranks")
    return [None if c is None else int(c) for c in caps]


def _truncation_rank(S: np.ndarray, cap: int | None, delta_sq: float | None) -> int:
    """Smallest kept rank: drop the smallest σ while their squared sum ≤ delta_sq; then cap; ≥ 1."""
    r = len(S)
    if delta_sq is not None:
        tail = 0.0
        while r > 1 and tail + S[r - 1] ** 2 <= delta_sq:
            tail += S[r - 1] ** 2
            r -= 1
    if cap is not None:
        r = min(r, cap)
    return max(r, 1)


def tt_svd(
    W: np.ndarray,
    in_modes: Sequence[int],
    out_modes: Sequence[int],
    max_rank=None,
    rtol: float | None = None,
) -> tuple[list[np.ndarray], float]:
    """TT-matrix SVD of W (N_in, N_out) -> (cores G_k (r_{k-1}, n_k, m_k, r_k), discarded_sq).

    ``max_rank``: None, int, or the interior ranks (d-1) / all ranks (d+1). ``rtol``: at each of
    the d-1 SVDs drop the smallest σ whose squared sum ≤ (rtol·‖W‖_F)²/(d-1). ``discarded_sq`` = Σ
    of all dropped σ², so ‖W - tt_to_dense(cores)‖_F ≤ sqrt(discarded_sq) (Oseledets 2011, Thm 2.2).
    """
    W = np.asarray(W)
    d = len(in_modes)
    T = _interleaved(W, in_modes, out_modes)
    caps = _rank_caps(max_rank, d)
    delta_sq = None
    if rtol is not None and d > 1:
        delta_sq = (rtol * np.linalg.norm(W)) ** 2 / (d - 1)
    cores: list[np.ndarray] = []
    discarded_sq = 0.0
    C = T
    r_prev = 1
    for k in range(d - 1):
        n_k, m_k = int(in_modes[k]), int(out_modes[k])
        C = C.reshape(r_prev * n_k * m_k, -1)
        U, S, Vt = np.linalg.svd(C, full_matrices=False)
        r = _truncation_rank(S, caps[k], delta_sq)
        discarded_sq += float(np.sum(S[r:] ** 2))
        cores.append(U[:, :r].reshape(r_prev, n_k, m_k, r))
        C = S[:r, None] * Vt[:r, :]
        r_prev = r
    cores.append(C.reshape(r_prev, int(in_modes[-1]), int(out_modes[-1]), 1))
    return cores, discarded_sq


def tr_svd(
    W: np.ndarray,
    in_modes: Sequence[int],
    out_modes: Sequence[int],
    r0: int,
    max_rank=None,
) -> list[np.ndarray]:
    """TR-SVD of W (N_in, N_out) -> TR cores G_k (r_{k-1}, n_k, m_k, r_k) with r_0 = r_d = r0.

    The first unfolding (n_1 m_1, rest) is SVD'd and its rank split as r0 × r1 (r1 = ceil(rank/r0),
    zero-padded when r0 does not divide the rank); TT-SVD of the remainder, with r0 moved to the
    end, closes the ring. ``max_rank`` (int or None) caps r_1..r_{d-1}. Exact at full rank.
    """
    W = np.asarray(W)
    d = len(in_modes)
    r0 = int(r0)
    T = _interleaved(W, in_modes, out_modes)
    if d == 1:
        G = np.zeros((r0, int(in_modes[0]), int(out_modes[0]), r0), dtype=W.dtype)
        G[0, :, :, 0] = T.reshape(in_modes[0], out_modes[0])
        return [G]
    caps = _rank_caps(max_rank, d)
    n1, m1 = int(in_modes[0]), int(out_modes[0])
    U, S, Vt = np.linalg.svd(T.reshape(n1 * m1, -1), full_matrices=False)
    rank = len(S)
    r1 = -(-rank // r0)  # ceil
    if caps[0] is not None:
        r1 = min(r1, caps[0])
    k = min(rank, r0 * r1)
    # zero-pad to exactly r0*r1 columns/rows
    Upad = np.zeros((n1 * m1, r0 * r1), dtype=U.dtype)
    Upad[:, :k] = U[:, :k]
    SVpad = np.zeros((r0 * r1, Vt.shape[1]), dtype=Vt.dtype)
    SVpad[:k] = S[:k, None] * Vt[:k]
    # column index alpha = (a0, a1) in C order
    cores = [Upad.reshape(n1, m1, r0, r1).transpose(2, 0, 1, 3)]  # (r0, n1, m1, r1)
    C = SVpad.reshape(r0, r1, -1)
    C = np.moveaxis(C, 0, -1)  # (r1, rest, r0)
    r_prev = r1
    for j in range(1, d - 1):
        n_k, m_k = int(in_modes[j]), int(out_modes[j])
        C = C.reshape(r_prev * n_k * m_k, -1)
        U, S, Vt = np.linalg.svd(C, full_matrices=False)
        r = _truncation_rank(S, caps[j], None)
        cores.append(U[:, :r].reshape(r_prev, n_k, m_k, r))
        C = S[:r, None] * Vt[:r, :]
        r_prev = r
    cores.append(C.reshape(r_prev, int(in_modes[-1]), int(out_modes[-1]), r0))
    return cores


def _unfold(T: np.ndarray, k: int) -> np.ndarray:
    """Mode-k unfolding (dim_k, product of the other dims)."""
    return np.moveaxis(T, k, 0).reshape(T.shape[k], -1)


def _mode_product(T: np.ndarray, M: np.ndarray, k: int) -> np.ndarray:
    """T ×_k M for M (new, old): mode k of T (size old) becomes size new."""
    Tk = np.moveaxis(T, k, 0)
    rest = Tk.shape[1:]
    out = M @ Tk.reshape(Tk.shape[0], -1)
    return np.moveaxis(out.reshape(M.shape[0], *rest), 0, k)


def hosvd(tensor: np.ndarray, ranks) -> tuple[np.ndarray, list[np.ndarray]]:
    """Truncated HOSVD of ``tensor`` (I_1..I_N) -> (core (R_1..R_N), factors U_k (I_k, R_k)).

    ``ranks``: an int or one entry per mode (None = full I_k). U_k = leading left singular vectors
    of the mode-k unfolding; core = tensor ×_1 U_1ᵀ ⋯ ×_N U_Nᵀ. Exact at full rank.
    """
    T = np.asarray(tensor)
    N = T.ndim
    if ranks is None or np.isscalar(ranks):
        ranks = [ranks] * N
    if len(ranks) != N:
        raise ValueError(f"need {N} ranks, got {len(ranks)}")
    factors = []
    for k in range(N):
        R = T.shape[k] if ranks[k] is None else int(ranks[k])
        if not 1 <= R <= T.shape[k]:
            raise ValueError(f"rank {R} for mode {k} must be in [1, {T.shape[k]}]")
        A = _unfold(T, k)
        # full U only when the unfolding is wide enough not to give R columns otherwise
        U = np.linalg.svd(A, full_matrices=R > min(A.shape))[0]
        factors.append(U[:, :R])
    core = T
    for k in range(N):
        core = _mode_product(core, factors[k].conj().T, k)
    return core, factors
