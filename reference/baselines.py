"""Oracles for the pruning-at-initialization baselines (ERK, ProsPr, NTK-SAP), written from the papers.

* `erk_real_counts`: Erdős–Rényi-Kernel densities solved by bisection on the scale ε of
  ``Σ min(1, ε · sum(s)/prod(s)) · prod(s) = keep`` (a different route from the iterative re-solve).
* `lookahead_loss` / `prospr_scores`: ProsPr's ``|∂L(w_M)/∂m|`` by central differences *through* the
  ``M`` SGD steps, each step's gradient by complex step.
* `ntk_sap_objective` / `ntk_sap_scores`: NTK-SAP's ``R(m) = mean_x ||f(x; w⊙m) − f(x; w'⊙m)||²``
  and ``|∂R/∂m| · [m ≠ 0]`` by complex step.
* `mlp_forward`: a ReLU MLP whose layers are dense ``(in, out)`` weights or TT-matrix cores.

Parameters are dicts ``name -> ndarray``; everything is float64/complex128 NumPy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from .gradients import _tt_matrix, central_difference_grad, complex_step_grad, relu

__all__ = [
    "erk_real_counts",
    "mlp_forward",
    "lookahead_loss",
    "prospr_scores",
    "ntk_sap_objective",
    "ntk_sap_scores",
]

Params = dict[str, np.ndarray]


def erk_real_counts(shapes: Mapping[str, Sequence[int]], keep: int) -> dict[str, float]:
    """Real-valued entries kept per array under ERK densities, capped at dense, summing to ``keep``."""
    sizes = {n: float(np.prod(s)) for n, s in shapes.items()}
    raw = {n: float(np.sum(s)) / sizes[n] for n, s in shapes.items()}

    def kept(eps):
        return sum(min(1.0, eps * raw[n]) * sizes[n] for n in shapes)

    lo, hi = 0.0, 1.0
    while kept(hi) < keep:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if kept(mid) < keep else (lo, mid)
    eps = 0.5 * (lo + hi)
    return {n: min(1.0, eps * raw[n]) * sizes[n] for n in shapes}


def mlp_forward(layers: Sequence[tuple], params: Params, x: np.ndarray) -> np.ndarray:
    """ReLU MLP. ``layers``: ``("dense", weight_name, bias_name)`` with the weight (in, out), or
    ``("tt", [core names], bias_name)`` with TT-matrix cores (r, n, m, r'). Complex-safe."""
    h = np.reshape(x, (np.shape(x)[0], -1))
    for k, (kind, weight, bias) in enumerate(layers):
        W = params[weight] if kind == "dense" else _tt_matrix([params[c] for c in weight])
        h = h @ W + params[bias]
        if k < len(layers) - 1:
            h = relu(h)
    return h


def lookahead_loss(
    losses: Sequence[Callable[[Params], complex]], w0: Params, steps: int, lr: float
) -> complex:
    """``L_M(w_M)`` with ``w_{k+1} = w_k − lr ∇L_k(w_k)``; step ``k`` uses ``losses[k % B]``, the end
    ``losses[steps % B]``; each ``∇L_k`` by complex step (exact)."""
    w = {n: np.asarray(v, dtype=np.float64) for n, v in w0.items()}
    for k in range(steps):
        g = complex_step_grad(losses[k % len(losses)], w)
        w = {n: w[n] - lr * g[n] for n in w}
    return losses[steps % len(losses)](w)


def prospr_scores(
    losses: Sequence[Callable[[Params], complex]],
    theta: Params,
    masks: Params,
    steps: int,
    lr: float,
    eps: float = 1e-6,
) -> Params:
    """ProsPr's ``|∂ L_M(w_M) / ∂m|`` at ``m = masks`` with ``w_0 = θ ⊙ m``, by central differences
    in ``m`` through the steps."""
    m0 = {n: np.asarray(v, dtype=np.float64) for n, v in masks.items()}

    def f(m):
        return lookahead_loss(losses, {n: theta[n] * m[n] for n in theta}, steps, lr)

    return {n: np.abs(g) for n, g in central_difference_grad(f, m0, eps).items()}


def ntk_sap_objective(
    forward: Callable[[Params, np.ndarray], np.ndarray],
    weights: Params,
    perturbed: Params,
    masks: Params,
    x: np.ndarray,
) -> complex:
    """``mean_x ||f(x; w ⊙ m) − f(x; w' ⊙ m)||²`` (squares, not ``|·|²``: complex-step safe)."""
    f = forward({n: weights[n] * masks[n] for n in weights}, x)
    fp = forward({n: perturbed[n] * masks[n] for n in perturbed}, x)
    d = np.reshape(f - fp, (np.shape(x)[0], -1))
    return np.mean(np.sum(d * d, axis=1))


def ntk_sap_scores(forward, weights: Params, perturbed: Params, masks: Params, x) -> Params:
    """NTK-SAP's ``|∂R/∂m| · [m ≠ 0]`` at ``m = masks``, by complex step in ``m``."""
    m0 = {n: np.asarray(v, dtype=np.float64) for n, v in masks.items()}
    g = complex_step_grad(lambda m: ntk_sap_objective(forward, weights, perturbed, m, x), m0)
    return {n: np.abs(g[n]) * (m0[n] != 0) for n in g}
