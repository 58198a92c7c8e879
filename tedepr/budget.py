"""Rank allocation under a whole-model weight budget (the coarse grain), backend-neutral.

`allocate_ranks` gives every tensorized layer its floor (rank 1 on every bond) and then grows ranks
one bond at a time — always in the layer that holds the smallest fraction of its dense weights, on
its smallest bond — while the total still fits the budget. So every layer gets the same share of
its dense size as far as integer ranks allow, a small layer that cannot go below its floor pays
only that floor and the rest of the budget goes to the others (never "the whole model at rank 1"),
and the result is never over the budget and never more than one increment under it per layer.

`tensorize_within` runs a backend's ``tensorize`` twice — once at rank 1 to learn each layer's
modes, once with the allocated per-layer ranks — and is shared by both backends' ``compress``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .pruning.problem import canonical_name
from .shapes import count_params, max_tt_ranks

__all__ = ["BudgetError", "LayerShape", "allocate_ranks", "floor_params", "tensorize_within"]


class BudgetError(ValueError):
    """The requested whole-model budget cannot be met by this configuration."""


@dataclass(frozen=True)
class LayerShape:
    """What rank allocation needs of one tensorized layer."""

    name: str
    format: str
    in_modes: tuple[int, ...]
    out_modes: tuple[int, ...]
    dense: int
    #: Tucker only: which modes are factorised (None in the ranks marks the others)
    factored: tuple[bool, ...] | None = None

    @classmethod
    def of(cls, name: str, f) -> LayerShape:
        """From a `tedepr.formats.Factorized` (any ranks)."""
        factored = None
        if f.format == "tucker":
            factored = tuple(r is not None for r in f.ranks)
        return cls(
            name, f.format, tuple(f.in_modes), tuple(f.out_modes), int(f.dense_params), factored
        )

    def floor(self) -> tuple:
        d = len(self.in_modes)
        if self.format in ("tt", "tr"):
            return (1,) * (d + 1)
        if self.format == "tucker":
            return tuple(1 if f else None for f in self.factored)
        return (1,)

    def params(self, ranks) -> int:
        return count_params(self.format, self.in_modes, self.out_modes, ranks)

    def growths(self, ranks: tuple) -> list[tuple]:
        """Every ``ranks`` with one growable bond (or mode) one larger, preferred first: the
        smallest rank, then the most central bond (balanced TT/TR shapes)."""
        r = list(ranks)
        if self.format == "tt":
            cap = max_tt_ranks(self.in_modes, self.out_modes)
            cands = [k for k in range(1, len(r) - 1) if r[k] < cap[k]]
        elif self.format == "tr":
            # bonds 1..d-1 and the closing bond (r_0 = r_d, grown together as index 0)
            cands = [k for k in range(0, len(r) - 1) if r[k] < self.dense]
        elif self.format == "tucker":
            dims = self.in_modes + self.out_modes
            cands = [k for k, v in enumerate(r) if v is not None and v < dims[k]]
        else:
            cands = [0] if r[0] < self.dense else []
        mid = (len(r) - 1) / 2
        out = []
        for k in sorted(cands, key=lambda k: (r[k], abs(k - mid), k)):
            nxt = list(r)
            nxt[k] += 1
            if self.format == "tr" and k == 0:
                nxt[-1] = nxt[0]
            out.append(tuple(nxt))
        return out


def layer_key(name: str) -> str:
    """A layer name in one spelling for both backends: JAX's ``"hidden/0"`` is torch's
    ``"hidden.0"`` (names given by a user or a score match either)."""
    return name.replace("/", ".")


def floor_params(layers: Iterable[LayerShape]) -> int:
    """Weights the layers hold at their floor ranks."""
    return sum(layer.params(layer.floor()) for layer in layers)


def allocate_ranks(
    layers: Iterable[LayerShape],
    budget: int,
    *,
    strict: bool = True,
    shares: Mapping[str, float] | None = None,
) -> dict[str, tuple]:
    """Per-layer ranks whose total parameter count is as large as possible but ``<= budget``.

    ``strict``: raise `BudgetError` when even the floors exceed ``budget`` (otherwise return the
    floors). ``shares`` (layer name → positive weight, 1 for a layer not named): a layer's target
    is its dense size times its weight, so a layer of weight ½ ends near half the fraction of its
    dense size that the others hold. Deterministic and backend-independent: ties are broken by
    canonical layer name.
    """
    layers = list(layers)
    shares = dict(shares or {})
    for key, w in shares.items():
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w > 0:
            raise ValueError(f"shares[{key!r}] must be a positive number; got {w!r:.40}")
    shares = {layer_key(k): w for k, w in shares.items()}
    weight = {layer.name: float(shares.get(layer_key(layer.name), 1.0)) for layer in layers}
    if isinstance(budget, bool) or not isinstance(budget, int):
        raise TypeError(f"budget must be an int; got {budget!r}")
    ranks = {layer.name: layer.floor() for layer in layers}
    used = {layer.name: layer.params(ranks[layer.name]) for layer in layers}
    total = sum(used.values())
    if total > budget:
        if strict:
            detail = ", ".join(f"{layer.name} {used[layer.name]}" for layer in layers)
            raise BudgetError(
                f"the budget of {budget:,} weights cannot be met: at rank 1 on every bond the "
                f"tensorized layers already hold {total:,} ({detail})"
            )
        return ranks
    open_layers = {layer.name: layer for layer in layers}
    while open_layers:
        # the layer holding the smallest share of its dense size grows next
        name = min(
            open_layers,
            key=lambda n: (used[n] / (open_layers[n].dense * weight[n]), canonical_name(n)),
        )
        layer = open_layers[name]
        room = budget - total + used[name]
        # the preferred growth that still fits (a cheaper bond may fit where the preferred does not)
        nxt = next((g for g in layer.growths(ranks[name]) if layer.params(g) <= room), None)
        if nxt is None:
            del open_layers[name]  # nothing more fits in this layer; others may still grow
            continue
        cost = layer.params(nxt)
        total += cost - used[name]
        ranks[name], used[name] = nxt, cost
    return ranks


def tensorize_within(
    tensorize: Callable[..., Any],
    layers_of: Callable[[Any], Mapping[str, Any]],
    model: Any,
    format: str,
    budget: int | Callable[[int, int], int],
    options: Mapping[str, Any] | None,
    *,
    strict: bool,
    reseed: Callable[[], None] = lambda: None,
    shares: Mapping[str, float] | None = None,
):
    """Tensorize ``model`` so that its tensorized layers hold at most ``budget`` core entries.

    ``tensorize(model, format=, rank=, **options)`` is the backend's tensorize; ``layers_of(m)``
    maps the tensorized layers' names (as ``overrides`` globs match them) to their `Factorized`.
    ``budget`` may be a callable ``(dense weights tensorized, dense weights left dense) -> int``,
    evaluated once the tensorized layers are known. ``reseed()`` is called before each tensorize so
    that the kept model's fresh cores do not depend on the probe. ``shares`` weights the layers'
    targets (`allocate_ranks`); the callable ``budget`` then gets the weighted dense count
    ``Σ share · dense``. Returns
    ``(model, ranks by layer name, budget)``.
    """
    options = dict(options or {})
    reseed()
    probe = tensorize(model, format=format, rank=1, **options)
    shapes = [LayerShape.of(name, f) for name, f in layers_of(probe).items()]
    shares = dict(shares or {})
    unknown = [n for n in shares if layer_key(n) not in {layer_key(s.name) for s in shapes}]
    if unknown:
        raise ValueError(
            f"shares: no tensorized layer named {unknown[0]!r}; the layers are "
            f"{', '.join(s.name for s in shapes)}"
        )
    if callable(budget):
        weights = {layer_key(k): w for k, w in shares.items()}
        budget = budget(round(sum(s.dense * weights.get(layer_key(s.name), 1.0) for s in shapes)))
    ranks = allocate_ranks(shapes, budget, strict=strict, shares=shares)
    overrides: dict[str, dict] = {name: {"rank": r} for name, r in ranks.items()}
    for glob, kw in dict(options.pop("overrides", None) or {}).items():
        overrides[glob] = {**overrides.get(glob, {}), **kw}  # the user's own overrides win
    reseed()
    return tensorize(model, format=format, rank=1, overrides=overrides, **options), ranks, budget
