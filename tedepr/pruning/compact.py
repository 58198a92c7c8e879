"""Compaction: drop the bond indices of a pruned tensor network that no complete path uses.

After pruning (structured pruning especially: the `trainability` score removes whole bond
indices) a tensorized layer often computes with far smaller ranks than it stores. A bond index
that lies on no complete path of kept entries (`tedepr.pruning.connectivity`) contributes nothing:
every term of the weight through it contains a pruned, hence exactly zero, entry. Removing it from
both cores it joins is therefore *exact*: the weight, and the gradient of every remaining entry
(a sum over the paths through that entry), are unchanged. Kept entries that sit on such an index
lie on no complete path either: their gradient is identically zero, they never change the output,
and compaction removes them too (`LayerCompaction.dropped` counts them; the budget only shrinks).

Units per format (the same as the liveness analysis):

* TT / TR: the indices of every bond (TR: the closing bond too); a TT boundary bond has size 1;
* CP: the rank columns shared by all factors;
* Tucker: on each factored mode, the core index together with the factor column it multiplies
  (unfactored core axes, e.g. the spatial mode of Tucker-2 convolutions, are kept whole).

Everything here is NumPy bookkeeping on masks; backends slice their own arrays with the index sets
(`take_kept` does it for any array-API array).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..namespace import get_namespace
from .connectivity import _chain, _cp_columns, _tucker_axes, _tucker_split, layers_of, to_numpy
from .problem import CoreInfo

__all__ = [
    "LayerCompaction",
    "plan_compaction",
    "take_kept",
    "compaction_note",
    "compact_result",
]


@dataclass(frozen=True)
class LayerCompaction:
    """How to compact one tensorized layer.

    Attributes
    ----------
    layer : str
        The layer's name (`CoreInfo.layer`).
    format : str
        ``"tt"``, ``"tr"``, ``"tucker"`` or ``"cp"``.
    names : tuple of str
        The layer's core arrays in core order (the keys of the masks).
    keep : dict
        ``name -> ((axis, indices), ...)``: for every array, the axes that shrink and the sorted
        ``int64`` indices kept on each (axes not listed are kept whole).
    ranks_before, ranks_after : tuple
        Bond sizes before and after: TT/TR ``(r_0, ..., r_d)`` (``r_d = r_0``), CP ``(R,)``,
        Tucker one entry per mode (``None`` for an unfactored mode).
    dropped : int
        Kept entries removed with their index (they lie on no complete path).
    """

    layer: str
    format: str
    names: tuple[str, ...]
    keep: dict[str, tuple[tuple[int, np.ndarray], ...]] = field(repr=False)
    ranks_before: tuple
    ranks_after: tuple
    dropped: int

    @property
    def changed(self) -> bool:
        """Whether any array shrinks."""
        return self.ranks_after != self.ranks_before

    def shape_after(self, name: str, shape: Sequence[int]) -> tuple[int, ...]:
        """The shape of array ``name`` (of ``shape`` before) after compaction."""
        out = [int(s) for s in shape]
        for axis, idx in self.keep[name]:
            out[axis] = int(idx.shape[0])
        return tuple(out)


def take_kept(a, entries: Sequence[tuple[int, np.ndarray]], *, xp: Any = None):
    """``a`` restricted to the kept indices ``entries`` (``((axis, indices), ...)``, as in
    `LayerCompaction.keep`), in ``a``'s own namespace. A copy when anything shrinks."""
    xp = get_namespace(a, xp=xp)
    for axis, idx in entries:
        if int(idx.shape[0]) == int(a.shape[axis]):
            continue
        a = xp.take(a, xp.asarray(idx, device=getattr(a, "device", None)), axis=axis)
    return a


def _kept_in(mask: np.ndarray, entries) -> int:
    sub = mask
    for axis, idx in entries:
        sub = np.take(sub, idx, axis=axis)
    return int(sub.sum())


def _chain_plan(layer, fmt, names, masks, structure):
    mats, closings = _chain(masks, names, structure)
    if not closings:
        return None  # a dead layer: nothing to compact it to (compress reports it as an error)
    d = len(names)
    live = [np.zeros(m.shape[0], bool) for m in mats]  # live[k]: left bond of core k
    for fwd, bwd in closings:
        live[0] |= fwd[0]
        for k in range(1, d):
            live[k] |= fwd[k] & bwd[k - 1]
    idx = [np.flatnonzero(v).astype(np.int64) for v in live]
    keep = {}
    for k, n in enumerate(names):
        left, right = structure[n].bond_axes
        keep[n] = ((left, idx[k]), (right, idx[(k + 1) % d]))
    before = tuple(int(m.shape[0]) for m in mats) + (int(mats[0].shape[0]),)
    after = tuple(int(i.shape[0]) for i in idx) + (int(idx[0].shape[0]),)
    return keep, before, after


def _cp_plan(layer, fmt, names, masks, structure):
    cols = _cp_columns(masks, names, structure)
    if not cols.any():
        return None
    idx = np.flatnonzero(cols).astype(np.int64)
    keep = {n: ((structure[n].bond_axes[0], idx),) for n in names}
    return keep, (int(cols.shape[0]),), (int(idx.shape[0]),)


def _tucker_plan(layer, fmt, names, masks, structure, factored):
    core, factors = _tucker_split(names, structure)
    cm = masks[core]
    if factored is not None:
        axes = [k for k, f in enumerate(factored) if f]
        if len(axes) != len(factors):
            raise ValueError(
                f"factored of Tucker layer {layer!r} marks {len(axes)} factored modes but the "
                f"layer has {len(factors)} factors"
            )
    else:
        axes = _tucker_axes(cm.shape, [masks[f].shape for f in factors])
        if axes is None:
            return None
    ok = cm.copy()
    for f, ax in zip(factors, axes):
        col = np.any(masks[f], axis=0)
        shape = [1] * cm.ndim
        shape[ax] = col.shape[0]
        ok &= col.reshape(shape)
    if not ok.any():
        return None
    keep = {core: []}
    before = [None] * cm.ndim
    after = [None] * cm.ndim
    for f, ax in zip(factors, axes):
        used = np.any(np.moveaxis(ok, ax, 0).reshape(ok.shape[ax], -1), axis=1)
        idx = np.flatnonzero(used).astype(np.int64)
        keep[core].append((ax, idx))
        keep[f] = ((structure[f].bond_axes[0], idx),)
        before[ax], after[ax] = int(cm.shape[ax]), int(idx.shape[0])
    keep[core] = tuple(keep[core])
    return keep, tuple(before), tuple(after)


def plan_compaction(
    masks: Mapping[str, Any],
    structure: Mapping[str, CoreInfo],
    *,
    factored: Mapping[str, Sequence[bool]] | None = None,
) -> dict[str, LayerCompaction]:
    """A `LayerCompaction` for every live tensorized layer whose cores all have masks.

    Parameters
    ----------
    masks : mapping ``name -> bool array`` (any namespace; True = kept)
    structure : mapping ``name -> CoreInfo`` (e.g. a `ScoringProblem`'s ``structure()``)
    factored : mapping ``layer -> tuple of bool``, optional
        Per Tucker layer, which modes carry a factor (``Factorized.ranks`` is None where not). It
        places each factor on its core axis; without it a factor goes on the first matching axis
        of its size, which is ambiguous when an unfactored axis has the same size.

    Dense weights, dead layers (no complete path) and layers with an unmasked core are left out.
    Layers with nothing to drop are included with ``changed`` False.
    """
    if not isinstance(masks, Mapping):
        raise TypeError(
            f"masks must be a mapping of name -> bool array; got {type(masks).__name__}"
        )
    if not isinstance(structure, Mapping):
        raise TypeError(
            f"structure must be a mapping of name -> CoreInfo; got {type(structure).__name__}"
        )
    np_masks = {n: to_numpy(m).astype(bool) for n, m in masks.items()}
    out: dict[str, LayerCompaction] = {}
    for layer, names in layers_of(structure).items():
        fmt = structure[names[0]].format
        if fmt not in ("tt", "tr", "cp", "tucker") or any(n not in np_masks for n in names):
            continue
        if fmt in ("tt", "tr"):
            res = _chain_plan(layer, fmt, names, np_masks, structure)
        elif fmt == "cp":
            res = _cp_plan(layer, fmt, names, np_masks, structure)
        else:
            fac = None if factored is None else factored.get(layer)
            res = _tucker_plan(layer, fmt, names, np_masks, structure, fac)
        if res is None:
            continue
        keep, before, after = res
        dropped = sum(int(np_masks[n].sum()) - _kept_in(np_masks[n], keep[n]) for n in names)
        out[layer] = LayerCompaction(layer, fmt, tuple(names), keep, before, after, dropped)
    return out


def compaction_note(plan: Mapping[str, LayerCompaction]) -> str:
    """The report note of a compaction: every layer's ranks before and after, and the kept
    entries removed with their indices (if any)."""
    parts = [
        f"{c.layer} {tuple(c.ranks_before)}->{tuple(c.ranks_after)}".replace("None", "-")
        for c in plan.values()
        if c.changed
    ]
    dropped = sum(c.dropped for c in plan.values())
    tail = f"; {dropped} kept entries on no complete path removed with them" if dropped else ""
    return "compacted (dead bond indices removed): " + ", ".join(parts) + tail


def compact_result(result, backend: str, plan_of, shrink, report_of):
    """The one `compact(result)` of every backend: check ``result``, plan, shrink, re-report.

    ``plan_of(result)`` is the backend's `plan_compaction` call; ``shrink(result, plan)`` returns
    the compacted ``(model, params, masks)`` (``params`` None where the model holds them);
    ``report_of(model, params, masks, old_report)`` rebuilds the report with the old accounting.
    ``result`` is returned as it is when nothing can be compacted.
    """
    from ..pipeline import CompressionResult

    if not isinstance(result, CompressionResult):
        raise TypeError(
            f"result must be the CompressionResult of tedepr.compress(..., backend={backend!r}); "
            f"got {type(result).__name__}"
        )
    if not result.masks:
        return result
    plan = plan_of(result)
    if not any(c.changed for c in plan.values()):
        return result
    model, params, masks = shrink(result, plan)
    old = result.report
    report = report_of(model, params, masks, old)
    report.notes.extend(old.notes)
    report.notes.append(compaction_note(plan))
    return CompressionResult(model, report, masks, params)
