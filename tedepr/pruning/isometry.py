"""Layer-wise dynamical isometry of the prunable weights (the ``trainability-isometry`` score).

Lee et al. (ICLR 2020, "A signal propagation perspective for pruning neural networks at
initialization") show that a pruned network trains well when every layer stays close to an isometry:
the singular values of each layer's Jacobian — for a linear map, of its weight matrix — stay
concentrated. The objective here measures that spread, layer by layer, data-free and up to scale
(the norm rescale of docs/method.md §8, or a re-initialisation, restores the scale after pruning):

    J(w) = Σ_l log PR(W_l),      PR(W) = ||W||_F⁴ / ||WᵀW||_F² = (Σ σ_i²)² / Σ σ_i⁴,

the *participation ratio* of the squared singular values σ_i² of each reconstructed weight ``W_l``
(a tensorized layer's matrix ``(N_in, N_out)`` rebuilt from its cores; a dense weight's canonical
``(out, in·…)`` unfolding). ``PR`` lies in ``[1, min(N_in, N_out)]`` and reaches the upper end
exactly when all singular values are equal (an isometry up to scale); its log makes a relative
change comparable between layers of different sizes. The gradient is closed-form,

    ∂ log PR / ∂W = 4 (W / ||W||_F² − W WᵀW / ||WᵀW||_F²),

and through a tensor network the chain rule is one contraction per core: the gradient with respect
to core ``k`` is the contraction of ``∂J/∂W`` with every other core (the reverse of
`tedepr.contraction.plan_reconstruction`). Everything is NumPy float64 on host copies, so both
backends hand identical numbers to the selection.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..contraction import einsum
from ..formats import from_cores
from .connectivity import layers_of
from .problem import CoreInfo

__all__ = [
    "log_participation",
    "isometry_objective",
    "isometry_gradient",
    "layer_matrix",
    "removal_cost",
]


def log_participation(w: np.ndarray) -> float:
    """``log PR(W) = 2 log ||W||_F² − log ||WᵀW||_F²`` of a matrix (−inf for the zero matrix)."""
    w = np.asarray(w, dtype=np.float64)
    b = float(np.sum(w * w))
    if b == 0.0:
        return -np.inf
    gram = w.T @ w if w.shape[1] <= w.shape[0] else w @ w.T
    return 2.0 * np.log(b) - np.log(float(np.sum(gram * gram)))


def _log_participation_gradient(w: np.ndarray) -> np.ndarray:
    b = float(np.sum(w * w))
    if b == 0.0:  # a zero matrix has no spectrum to spread: no signal either way
        return np.zeros_like(w)
    wwtw = w @ (w.T @ w) if w.shape[1] <= w.shape[0] else (w @ w.T) @ w
    a = float(np.sum(wwtw * w))  # = ||WᵀW||_F²
    return 4.0 * (w / b - wwtw / a)


def _canonical(w: np.ndarray, info: CoreInfo | None) -> np.ndarray:
    perm = None if info is None else info.layout
    return w if perm is None else np.transpose(w, np.argsort(perm))


def _factorized(names, arrays, structure):
    """The layer's `tedepr.Factorized` over NumPy float64 copies of its cores."""
    info = structure[names[0]]
    cores = [np.asarray(arrays[n], dtype=np.float64) for n in names]
    in_modes, out_modes = info.in_modes, info.out_modes
    if not in_modes and info.format in ("tt", "tr"):  # the cores' shapes carry the modes
        in_modes = tuple(int(c.shape[1]) for c in cores)
        out_modes = tuple(int(c.shape[2]) for c in cores)
    if not in_modes:
        raise ValueError(
            f"the isometry score needs the modes of layer {info.layer!r} ({info.format}); its "
            "structure gives none (CoreInfo.in_modes / out_modes)"
        )
    return from_cores(info.format, cores, in_modes, out_modes, factored=info.factored)


def _units(weights: Mapping, structure: Mapping[str, CoreInfo]):
    """``(names, factorized or None)`` per matrix: a tensorized layer's cores, or one dense weight."""
    known = {n: structure[n] for n in weights if n in structure}
    out = []
    for _layer, names in sorted(layers_of(known).items()):
        if known[names[0]].format == "dense":
            out += [([n], None) for n in names]
        else:
            out.append((names, _factorized(names, weights, known)))
    out += [([n], None) for n in weights if n not in known]  # no structure: a dense matrix
    return out


def layer_matrix(names, f, weights, structure) -> np.ndarray:
    """The matrix whose spectrum is scored: ``f.to_dense()`` ``(N_in, N_out)`` for a tensorized
    layer, else the one dense weight in its canonical layout as ``(shape[0], -1)``."""
    if f is not None:
        return f.to_dense()
    w = _canonical(np.asarray(weights[names[0]], dtype=np.float64), structure.get(names[0]))
    return w.reshape(w.shape[0], -1)


def isometry_objective(
    weights: Mapping[str, np.ndarray], structure: Mapping[str, CoreInfo]
) -> float:
    """``J(w) = Σ log PR`` over the model's matrices (module doc); ``weights`` as NumPy arrays in
    the backend's layout, ``structure`` the problem's `CoreInfo`."""
    return float(
        sum(
            log_participation(layer_matrix(names, f, weights, structure))
            for names, f in _units(weights, structure)
        )
    )


def isometry_gradient(
    weights: Mapping[str, np.ndarray], structure: Mapping[str, CoreInfo]
) -> dict[str, np.ndarray]:
    """``∂J/∂w`` for every array of ``weights`` (NumPy float64, each in its own layout)."""
    out: dict[str, np.ndarray] = {}
    for names, f in _units(weights, structure):
        g = _log_participation_gradient(layer_matrix(names, f, weights, structure))
        if f is None:
            name = names[0]
            w = np.asarray(weights[name])
            canonical = _canonical(w, structure.get(name)).shape
            g = g.reshape(canonical)
            perm = structure[name].layout if name in structure else None
            out[name] = g if perm is None else np.transpose(g, perm)
            continue
        net = f.network()
        dense_labels = net.in_labels + net.out_labels
        g = g.reshape(tuple(f.in_modes) + tuple(f.out_modes))
        cores = f.cores
        for k, name in enumerate(names):
            others = [j for j in range(len(cores)) if j != k]
            present = {lab for j in others for lab in net.operands[j]} | set(dense_labels)
            target = net.operands[k]
            kept = tuple(lab for lab in target if lab in present)
            grad = einsum(
                [cores[j] for j in others] + [g],
                [net.operands[j] for j in others] + [dense_labels],
                kept,
            )
            # a label on core k alone (a TT boundary bond) is summed inside W: ∂W/∂core is
            # constant along it
            for axis, lab in enumerate(target):
                if lab not in present:
                    grad = np.expand_dims(grad, axis)
            out[name] = np.broadcast_to(grad, cores[k].shape).copy()
    return out


def removal_cost(weights: Mapping[str, np.ndarray], structure: Mapping[str, CoreInfo]):
    """The exact cost of removing a unit, for `tedepr.pruning.structured.select_bonds`'s
    ``unit_cost``: ``cost(masks, parts)`` is the drop of ``log PR`` of the unit's layer when the
    unit's kept entries are zeroed, at the current ``masks`` (NumPy bools), or None for a dense
    weight's entry units (ranked by their scores: one exact evaluation per entry of a large
    matrix would cost a Gram matrix each). The ``trainability-isometry-exact`` score."""
    layer_of = {}
    for names, f in _units(weights, structure):
        if f is not None:
            for n in names:
                layer_of[n] = (names, f)
    cache: dict[tuple, float] = {}

    def value(names, f, masks) -> float:
        key = (names[0],) + tuple(masks[n].tobytes() for n in names)
        if key not in cache:
            cores = [np.asarray(weights[n], dtype=np.float64) * masks[n] for n in names]
            cache[key] = log_participation(f.with_cores(cores).to_dense())
        return cache[key]

    def cost(masks, parts):
        if parts[0][0] not in layer_of or parts[0][1] is None:
            return None
        names, f = layer_of[parts[0][0]]
        trial = dict(masks)
        for name, axis, idx in parts:
            sl = [slice(None)] * trial[name].ndim
            sl[axis] = idx
            trial[name] = trial[name].copy()
            trial[name][tuple(sl)] = False
        after = value(names, f, trial)
        return np.inf if after == -np.inf else value(names, f, masks) - after

    cost.layer = {n: structure[n].layer for n in layer_of}  # which units a removal re-prices
    return cost
