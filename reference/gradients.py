"""Derivative oracles (finite differences, complex step) and tiny NumPy models for pruning scores.

Parameters are dicts ``name -> ndarray``. Weights are stored (in, out): ``y = x @ W + b``.
All models accept complex arrays, so ``complex_step_grad`` gives gradients to machine precision.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "central_difference_grad",
    "complex_step_grad",
    "central_difference_hvp",
    "relu",
    "dense_mlp_forward",
    "tt_mlp_forward",
    "cross_entropy",
    "synflow_objective",
]

Params = dict[str, np.ndarray]


def _as_float(params: Params) -> Params:
    return {k: np.array(v, dtype=np.float64) for k, v in params.items()}


def central_difference_grad(
    f: Callable[[Params], float], params: Params, eps: float = 1e-6
) -> Params:
    """Gradient of scalar f at params by (f(θ+εe) − f(θ−εe)) / (2ε), entry by entry (float64)."""
    base = _as_float(params)
    grads: Params = {}
    for name, value in base.items():
        g = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            plus = dict(base)
            minus = dict(base)
            plus[name] = value.copy()
            minus[name] = value.copy()
            plus[name][idx] += eps
            minus[name][idx] -= eps
            g[idx] = (float(np.real(f(plus))) - float(np.real(f(minus)))) / (2 * eps)
        grads[name] = g
    return grads


def complex_step_grad(f: Callable[[Params], complex], params: Params, h: float = 1e-30) -> Params:
    """Gradient of real-analytic scalar f by Im(f(θ + i·h·e)) / h, entry by entry (exact)."""
    base = {k: np.array(v, dtype=np.complex128) for k, v in params.items()}
    grads: Params = {}
    for name, value in base.items():
        g = np.zeros(value.shape, dtype=np.float64)
        for idx in np.ndindex(value.shape):
            pert = dict(base)
            pert[name] = value.copy()
            pert[name][idx] += 1j * h
            g[idx] = np.imag(f(pert)) / h
        grads[name] = g
    return grads


def central_difference_hvp(
    grad_fn: Callable[[Params], Params], params: Params, v: Params, eps: float = 1e-4
) -> Params:
    """Hessian-vector product H·v ≈ (grad(θ+εv) − grad(θ−εv)) / (2ε); dict in, dict out."""
    base = _as_float(params)
    plus = {k: base[k] + eps * np.asarray(v[k], dtype=np.float64) for k in base}
    minus = {k: base[k] - eps * np.asarray(v[k], dtype=np.float64) for k in base}
    gp, gm = grad_fn(plus), grad_fn(minus)
    return {k: (np.asarray(gp[k]) - np.asarray(gm[k])) / (2 * eps) for k in base}


def relu(z: np.ndarray) -> np.ndarray:
    """ReLU that passes complex perturbations through: where(Re z > 0, z, 0)."""
    return np.where(np.real(z) > 0, z, 0)


def dense_mlp_forward(params: Params, x: np.ndarray) -> np.ndarray:
    """x (B, N_in) -> logits (B, C); params fc1.weight (N_in, H), fc1.bias (H,), fc2.weight (H, C),
    fc2.bias (C,)."""
    h = relu(x @ params["fc1.weight"] + params["fc1.bias"])
    return h @ params["fc2.weight"] + params["fc2.bias"]


def _tt_matrix(cores: Sequence[np.ndarray]) -> np.ndarray:
    """TT-matrix cores (r_{k-1}, n_k, m_k, r_k) -> W (N_in, N_out) via one einsum (complex-safe)."""
    d = len(cores)
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    bonds, ins, outs = letters[: d + 1], letters[d + 1 : 2 * d + 1], letters[2 * d + 1 : 3 * d + 1]
    terms = [bonds[k] + ins[k] + outs[k] + bonds[k + 1] for k in range(d)]
    eq = ",".join(terms) + "->" + bonds[0] + ins + outs + bonds[d]
    full = np.einsum(eq, *cores, optimize=False)  # (1, n_1..n_d, m_1..m_d, 1)
    n_in = int(np.prod([g.shape[1] for g in cores]))
    return full.reshape(n_in, -1)


def tt_mlp_forward(
    params: Params, x: np.ndarray, in_modes: Sequence[int], out_modes: Sequence[int]
) -> np.ndarray:
    """Like dense_mlp_forward but fc1 is a TT-matrix: params fc1.cores.0..d-1, fc1.bias, fc2.*."""
    d = len(in_modes)
    cores = [params[f"fc1.cores.{k}"] for k in range(d)]
    for k, g in enumerate(cores):
        if g.shape[1:3] != (in_modes[k], out_modes[k]):
            raise ValueError(f"fc1.cores.{k} has shape {g.shape}, modes {in_modes}x{out_modes}")
    W1 = _tt_matrix(cores)
    h = relu(x @ W1 + params["fc1.bias"])
    return h @ params["fc2.weight"] + params["fc2.bias"]


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean cross-entropy of logits (B, C) against integer labels (B,); stable, complex-safe."""
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    shift = np.max(np.real(logits), axis=1, keepdims=True)
    z = logits - shift
    log_probs = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    return -np.mean(log_probs[np.arange(logits.shape[0]), labels])


def synflow_objective(
    forward: Callable[[Params, np.ndarray], np.ndarray], abs_params: Params, input_shape
) -> np.ndarray:
    """SynFlow R = sum(forward(abs_params, ones(input_shape))).

    Convention: the caller passes ``abs_params = {k: |θ_k|}``. The SynFlow score is then
    ``|θ| ⊙ ∂R/∂|θ|`` (= θ ⊙ ∂R/∂θ), i.e. take gradients of this function w.r.t. ``abs_params``.
    ``forward(params, x)``: e.g. ``dense_mlp_forward`` or a partial of ``tt_mlp_forward``.
    """
    dtype = np.result_type(*[np.asarray(v) for v in abs_params.values()], np.float64)
    x = np.ones(input_shape, dtype=dtype)
    return np.sum(forward(abs_params, x))
