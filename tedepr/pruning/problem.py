"""What a backend must provide so that the backend-neutral score math can run on its model.

The score math (`tedepr.pruning.scores`) never differentiates anything itself: it asks a
`ScoringProblem` — implemented by each backend with its own autodiff (torch.autograd, jax.grad/jvp) —
for gradients and Hessian-vector products, and combines the arrays with array-API operations.

All gradients are taken with respect to the *effective* weights ``w = θ ⊙ m`` (the masked
parameters), at the current masks ``m``; so ``θ ⊙ ∂L/∂w`` is the connection sensitivity of every entry,
pruned ones included (FORCE, de Jorge et al. 2021).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["ScoringProblem", "CoreInfo", "canonical_name", "canonical_order", "core_info"]


def canonical_name(name: str) -> str:
    """The canonical name of a parameter: its path components joined by ``"."``, the ``k``-th core
    of a tensorized layer written ``core_k`` (``"hidden/0/cores/1"`` and ``"hidden.0.core_1"`` →
    ``"hidden.0.core_1"``).

    Selection ties and random scores follow the lexicographic order of these names, so backends
    whose parameter orders and path separators differ choose identical masks from identical
    weights. The definition depends on no framework: a backend only has to name a model's layers
    alike (the interchange names of `tedepr.io`).
    """
    return name.replace("/", ".").replace(".cores.", ".core_")


def canonical_order(names) -> list:
    """``names`` sorted by `canonical_name`."""
    return sorted(names, key=canonical_name)


@dataclass(frozen=True)
class CoreInfo:
    """How a prunable parameter sits in a tensor network (for the structural guards).

    ``format`` is "tt"/"tr"/"tucker"/"cp" for a tensorized layer's core and "dense" for an ordinary
    weight. ``layer`` names the layer the parameter belongs to. ``slice_axes`` are the axes that index
    one "slice" of the core whose entries must not all be pruned (e.g. ``(1, 2)`` — the ``(n_k, m_k)``
    slice of a TT core, so that every input/output mode index keeps a path), and ``bond_axes`` are the
    rank axes (for effective-rank reports). ``layout`` is the axis permutation from the canonical
    layout of this weight to the backend's array; None when they agree. Random scores are drawn in
    the canonical layout, C order (row-major): a dense weight is ``(out, in)`` — axis 0 indexes the
    outputs, axis 1 the inputs (a convolution ``(out_channels, in_channels / groups, kh, kw)``, a
    recurrent map ``(gates·hidden, in)``, gates in their published order); a core has the shape of
    `tedepr.Factorized.cores`. So a backend storing a dense weight ``(in, out)`` for ``y = x @ W``
    gives ``layout=(1, 0)``.

    ``in_modes`` / ``out_modes`` (a tensorized layer's core: its layer's `tedepr.Factorized` modes;
    ``()`` when unknown or dense) and ``factored`` (Tucker: which modes have a factor) let the core
    rebuild the layer's matrix from its cores (`tedepr.formats.from_cores`; the isometry score,
    `tedepr.pruning.isometry`).
    """

    layer: str
    format: str
    index: int = 0
    slice_axes: tuple[int, ...] = ()
    bond_axes: tuple[int, ...] = ()
    layout: tuple[int, ...] | None = None
    in_modes: tuple[int, ...] = ()
    out_modes: tuple[int, ...] = ()
    factored: tuple[bool, ...] | None = None


def core_info(f, layer: str, k: int) -> CoreInfo:
    """The `CoreInfo` of core ``k`` of `tedepr.Factorized` ``f`` in layer ``layer`` (both backends'
    structures): a TT/TR core's ``(n_k, m_k)`` slices and ``(r_{k-1}, r_k)`` bonds, a Tucker core's
    bonds (every axis), a Tucker/CP factor's rows (one mode index each) and its rank column; and
    the modes of ``f``."""
    factored = tuple(r is not None for r in f.ranks) if f.format == "tucker" else None
    modes = {"in_modes": tuple(f.in_modes), "out_modes": tuple(f.out_modes), "factored": factored}
    if f.format in ("tt", "tr"):
        return CoreInfo(layer, f.format, k, slice_axes=(1, 2), bond_axes=(0, 3), **modes)
    if f.format == "tucker" and k == 0:
        axes = tuple(range(len(f.cores[0].shape)))
        return CoreInfo(layer, f.format, k, slice_axes=(), bond_axes=axes, **modes)
    return CoreInfo(layer, f.format, k, slice_axes=(0,), bond_axes=(1,), **modes)


@runtime_checkable
class ScoringProblem(Protocol):
    """A model, its data and its loss, seen as arrays keyed by parameter name."""

    #: the array namespace of every array this object returns
    xp: Any

    def weights(self) -> dict[str, Any]:
        """The prunable parameters θ (current values), in a fixed order."""

    def structure(self) -> dict[str, CoreInfo]:
        """A `CoreInfo` for every prunable parameter, same keys as `weights`."""

    @property
    def has_data(self) -> bool:
        """Whether `loss_gradient`/`hessian_gradient_product` can be evaluated (data were given)."""

    def loss_gradient(self, masks: dict[str, Any]) -> dict[str, Any]:
        """``∂L/∂w`` at ``w = θ ⊙ m``, averaged over the scoring batches."""

    def hessian_gradient_product(self, masks: dict[str, Any]) -> dict[str, Any]:
        """``H g`` at ``w = θ ⊙ m`` where ``g = ∂L/∂w`` and ``H = ∂²L/∂w²`` (GraSP)."""

    def synflow_gradient(self, masks: dict[str, Any]) -> dict[str, Any]:
        """``∂R/∂w`` at ``w = |θ| ⊙ m`` where ``R = Σ f(1)`` is the network's summed output on an
        all-ones input with every nonlinearity kept (SynFlow, Tanaka et al. 2020); normalisation
        layers in eval mode. Evaluated in float64."""

    # Optional (the baselines `prospr` and `ntksap` need them; docs/method.md, "Baselines"):
    #
    # lookahead_gradient(masks, steps, lr) -> ``∂L_M(w_M)/∂w_0`` at ``w_0 = θ ⊙ m`` through ``steps``
    #     SGD steps ``w_{k+1} = w_k − lr ∇L_k(w_k)`` on the prunable weights (batch ``k mod B``).
    # ntk_perturbation_gradient(masks, weights, perturbed, inputs) -> ``∂R/∂m`` of
    #     ``R(m) = mean_x ||f(x; w ⊙ m) − f(x; w' ⊙ m)||²`` (eval mode).
