"""Brute-force path enumeration through TT / TR core masks (the oracle of tedepr's connectivity).

A *path* of a TT/TR chain of cores ``G_k`` (shape ``(r_{k-1}, n_k, m_k, r_k)``) is one kept entry of
every core with matching bond indices (TR: the last right index equals the first left index). This
module enumerates every bond-index sequence and every entry explicitly — exponential, for tiny cores
only — and never imports tedepr.
"""

from __future__ import annotations

import itertools

import numpy as np


def chain_paths(masks: list[np.ndarray], ring: bool = False):
    """Every complete path as a list of per-core entry indices ``(a, i, j, b)``."""
    d = len(masks)
    ranks = [m.shape[0] for m in masks] + [masks[-1].shape[3]]
    paths = []
    for bonds in itertools.product(*[range(r) for r in ranks]):
        if not ring and (bonds[0] != 0 or bonds[-1] != 0):
            continue
        if ring and bonds[0] != bonds[-1]:
            continue
        per_core = []
        for k in range(d):
            a, b = bonds[k], bonds[k + 1]
            per_core.append([(a, i, j, b) for i, j in zip(*np.nonzero(masks[k][a, :, :, b]))])
        for combo in itertools.product(*per_core):
            paths.append(list(combo))
    return paths


def path_count(masks, ring=False) -> int:
    return len(chain_paths(masks, ring))


def useful(masks, ring=False) -> list[np.ndarray]:
    """Per core, the entries that lie on at least one complete path."""
    out = [np.zeros(m.shape, bool) for m in masks]
    for path in chain_paths(masks, ring):
        for k, idx in enumerate(path):
            out[k][idx] = True
    return out


def live_ranks(masks, ring=False) -> tuple[int, ...]:
    """Per bond ``0..d``, the indices used by some complete path."""
    d = len(masks)
    used = [set() for _ in range(d + 1)]
    for path in chain_paths(masks, ring):
        for k, (a, _i, _j, b) in enumerate(path):
            used[k].add(a)
            used[k + 1].add(b)
    return tuple(len(u) for u in used)


def entry_path_counts(masks, ring=False) -> np.ndarray:
    """Per entry ``(row, col)`` of the reconstructed ``(N_in, N_out)`` matrix, the number of complete
    paths through it: row = C-order index of ``(i_1, …, i_d)``, col = that of ``(j_1, …, j_d)``."""
    in_modes = [m.shape[1] for m in masks]
    out_modes = [m.shape[2] for m in masks]
    counts = np.zeros((int(np.prod(in_modes)), int(np.prod(out_modes))), dtype=np.int64)
    for path in chain_paths(masks, ring):
        row = int(np.ravel_multi_index(tuple(e[1] for e in path), in_modes))
        col = int(np.ravel_multi_index(tuple(e[2] for e in path), out_modes))
        counts[row, col] += 1
    return counts
