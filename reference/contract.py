"""Naive forward passes: dense matmul, one-shot einsum over a factorised weight, loop conv2d."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["matmul_reference", "einsum_reference", "einsum_equation", "conv2d_reference"]

_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _prod(xs: Sequence[int]) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out


def matmul_reference(x: np.ndarray, W: np.ndarray) -> np.ndarray:
    """x (..., N_in) @ W (N_in, N_out) -> (..., N_out), via an explicit 2-D reshape."""
    x = np.asarray(x)
    W = np.asarray(W)
    if x.shape[-1] != W.shape[0]:
        raise ValueError(f"x has last dim {x.shape[-1]}, W has {W.shape[0]} rows")
    lead = x.shape[:-1]
    y = np.matmul(x.reshape(-1, W.shape[0]), W)
    return y.reshape(*lead, W.shape[1])


def einsum_equation(format: str, in_modes: Sequence[int], out_modes: Sequence[int], tucker_none=()):
    """Einsum equation ``x, *cores -> y`` for x (B, n_1..n_p) and y (B, m_1..m_q).

    ``tucker_none``: indices (0..p+q-1) of Tucker modes whose factor is None (no operand).
    Operand order: TT/TR cores G_1..G_d; CP factors U_1..U_{p+q}; Tucker core then non-None factors.
    """
    fmt = format.lower()
    p, q = len(in_modes), len(out_modes)
    letters = iter(_LETTERS)
    b = next(letters)
    ins = [next(letters) for _ in range(p)]
    outs = [next(letters) for _ in range(q)]
    x_term = b + "".join(ins)
    y_term = b + "".join(outs)
    if fmt in ("tt", "tr"):
        if p != q:
            raise ValueError(f"{fmt} needs as many in modes as out modes, got {p} and {q}")
        bonds = [next(letters) for _ in range(p + 1)]
        if fmt == "tr":
            bonds[-1] = bonds[0]  # close the ring: the trace
        terms = [bonds[k] + ins[k] + outs[k] + bonds[k + 1] for k in range(p)]
    elif fmt == "cp":
        r = next(letters)
        terms = [a + r for a in ins + outs]
    elif fmt == "tucker":
        dims = ins + outs
        ranks = [next(letters) for _ in range(p + q)]
        core = "".join(dims[k] if k in tucker_none else ranks[k] for k in range(p + q))
        terms = [core] + [dims[k] + ranks[k] for k in range(p + q) if k not in tucker_none]
    else:
        raise ValueError(f"unknown format {format!r}; expected 'tt', 'tr', 'tucker' or 'cp'")
    return ",".join([x_term] + terms) + "->" + y_term


def einsum_reference(
    x: np.ndarray, format: str, cores, in_modes: Sequence[int], out_modes: Sequence[int]
) -> np.ndarray:
    """x (..., N_in) times the factorised W (N_in, N_out) -> (..., N_out), one-shot einsum.

    ``cores``: TT/TR core list; CP factor list; Tucker ``(core, factors)`` (a factor may be None).
    """
    x = np.asarray(x)
    N_in, N_out = _prod(in_modes), _prod(out_modes)
    if x.shape[-1] != N_in:
        raise ValueError(f"x has last dim {x.shape[-1]}, expected N_in = {N_in}")
    lead = x.shape[:-1]
    xr = x.reshape(-1, *in_modes)
    fmt = format.lower()
    if fmt == "tucker":
        core, factors = cores
        none = tuple(k for k, U in enumerate(factors) if U is None)
        operands = [np.asarray(core)] + [np.asarray(U) for U in factors if U is not None]
        eq = einsum_equation(fmt, in_modes, out_modes, tucker_none=none)
    else:
        operands = [np.asarray(g) for g in cores]
        eq = einsum_equation(fmt, in_modes, out_modes)
    y = np.einsum(eq, xr, *operands, optimize=False)
    return y.reshape(*lead, N_out)


def _pair(v) -> tuple[int, int]:
    if np.isscalar(v):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


def conv2d_reference(
    x: np.ndarray,
    K: np.ndarray,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    bias: np.ndarray | None = None,
) -> np.ndarray:
    """Loop-based 2-D cross-correlation (like torch.nn.functional.conv2d), NCHW.

    x (N, C_in, H, W); K (C_out, C_in/groups, kh, kw); bias (C_out,) or None
    -> y (N, C_out, H_out, W_out).
    ``padding``: int, (ph, pw), "valid" or "same" (zero padding; "same" needs stride 1 and pads
    like torch: the extra row/column goes at the bottom/right).
    """
    x = np.asarray(x)
    K = np.asarray(K)
    N, C_in, H, W = x.shape
    C_out, C_in_g, kh, kw = K.shape
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    if C_in % groups or C_out % groups or C_in // groups != C_in_g:
        raise ValueError(
            f"groups={groups} incompatible with C_in={C_in}, C_out={C_out}, kernel {K.shape}"
        )
    if isinstance(padding, str):
        if padding == "valid":
            pads = ((0, 0), (0, 0))
        elif padding == "same":
            if (sh, sw) != (1, 1):
                raise ValueError("padding='same' needs stride 1")
            th, tw = dh * (kh - 1), dw * (kw - 1)
            pads = ((th // 2, th - th // 2), (tw // 2, tw - tw // 2))
        else:
            raise ValueError(f"unknown padding {padding!r}")
    else:
        ph, pw = _pair(padding)
        pads = ((ph, ph), (pw, pw))
    xp = np.zeros(
        (N, C_in, H + pads[0][0] + pads[0][1], W + pads[1][0] + pads[1][1]),
        dtype=np.result_type(x, K),
    )
    xp[:, :, pads[0][0] : pads[0][0] + H, pads[1][0] : pads[1][0] + W] = x
    Hp, Wp = xp.shape[2], xp.shape[3]
    H_out = (Hp - dh * (kh - 1) - 1) // sh + 1
    W_out = (Wp - dw * (kw - 1) - 1) // sw + 1
    out_per_group = C_out // groups
    y = np.zeros((N, C_out, H_out, W_out), dtype=np.result_type(x, K))
    for n in range(N):
        for o in range(C_out):
            g = o // out_per_group
            chans = slice(g * C_in_g, (g + 1) * C_in_g)
            for oy in range(H_out):
                for ox in range(W_out):
                    rows = oy * sh + dh * np.arange(kh)  # input rows the kernel taps
                    cols = ox * sw + dw * np.arange(kw)
                    patch = xp[n, chans][:, rows][:, :, cols]  # (C_in/groups, kh, kw)
                    y[n, o, oy, ox] = np.sum(patch * K[o])
    if bias is not None:
        y = y + np.asarray(bias).reshape(1, C_out, 1, 1)
    return y
