"""Budget accounting and the compression report (backend-neutral).

Counting (SPEC §5): ``sparsity`` is the fraction of the *dense* model's weights that is removed;
``kept = round((1 − sparsity) · dense_count)`` over every weight of the whole model (Linear, Conv,
recurrent and attention weights). Biases and normalisation parameters are excluded and reported apart.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

#: coarse/fine split: the low-rank cores hold this many times the final kept count (docs/method.md §7)
DEFAULT_OVERSAMPLE = 2.0

__all__ = [
    "DEFAULT_OVERSAMPLE",
    "layer_row",
    "keep_count",
    "low_rank_budget",
    "LayerReport",
    "Report",
]


def keep_count(sparsity: float, dense_count: int) -> int:
    """Number of weights kept: ``round((1 − sparsity) · dense_count)``; ``sparsity`` in [0, 1)."""
    if (
        isinstance(sparsity, bool)
        or not isinstance(sparsity, (int, float))
        or not (math.isfinite(sparsity) and 0.0 <= sparsity < 1.0)
    ):
        raise ValueError(
            f"sparsity must be a number in [0, 1) (fraction of dense weights removed); got {sparsity!r}"
        )
    keep = round((1.0 - sparsity) * dense_count)
    if keep < 1:
        raise ValueError(
            f"sparsity={sparsity} keeps {keep} of the model's {dense_count} weights; at least one must remain"
        )
    return keep


def low_rank_budget(sparsity: float, oversample: float) -> float:
    """Fraction of each tensorized layer's dense parameters the low-rank cores may hold.

    The coarse grain (rank reduction) gives the cores ``oversample`` times the final kept count; the
    fine grain (pruning) then removes ``1 − 1/oversample`` of the core entries. ``oversample = 1``
    is the low-rank-only ablation (nothing left to prune).
    """
    if not (
        isinstance(oversample, (int, float)) and math.isfinite(oversample) and oversample >= 1.0
    ):
        raise ValueError(f"oversample must be a number >= 1; got {oversample!r}")
    return min(1.0, oversample * (1.0 - sparsity))


@dataclass
class LayerReport:
    """One row of the report. ``kept``/``total`` count the layer's trainable weight entries (core
    entries for a tensorized layer); ``dense`` the weights of the dense layer it stands for."""

    name: str
    kind: str
    format: str
    kept: int
    total: int
    dense: int
    in_modes: tuple | None = None
    out_modes: tuple | None = None
    ranks: tuple | None = None
    effective_ranks: dict | None = None
    flops: int | None = None
    dense_flops: int | None = None
    #: the layer has at least one complete input→output path of kept entries (None: unpruned)
    live: bool | None = None
    #: number of complete paths (kept entries for a dense weight); None when unpruned
    paths: float | None = None
    #: per bond, the indices on a complete path (tensorized layers, after pruning)
    connected_ranks: tuple | None = None

    @property
    def compression(self) -> float:
        return self.dense / max(self.kept, 1)


def layer_row(
    name: str,
    kind: str,
    kept: int,
    total: int,
    factorized=None,
    *,
    strategy: str = "auto",
    effective_ranks: dict | None = None,
    liveness=None,
) -> LayerReport:
    """A report row for one layer: a tensorized one (``factorized`` given: modes, ranks, the FLOPs of its
    planned contraction for one sample) or a dense one (``total`` weights). ``liveness``: the
    layer's `tedepr.pruning.connectivity.LayerLiveness` after pruning."""
    live = {}
    if liveness is not None:
        live = {"live": liveness.live, "paths": liveness.paths, "connected_ranks": liveness.ranks}
    if factorized is None:
        return LayerReport(
            name=name,
            kind=kind,
            format="dense",
            kept=kept,
            total=total,
            dense=total,
            dense_flops=2 * total,
            **live,
        )
    from .contraction import plan_contraction

    f = factorized
    return LayerReport(
        name=name,
        kind=kind,
        format=f.format,
        kept=kept,
        total=total,
        dense=f.dense_params,
        in_modes=f.in_modes,
        out_modes=f.out_modes,
        ranks=f.ranks,
        effective_ranks=effective_ranks or None,
        flops=plan_contraction(f, 1, strategy).flops,
        dense_flops=2 * f.dense_params,
        **live,
    )


@dataclass
class Report:
    """Per-layer and whole-model accounting of a compressed model."""

    layers: list[LayerReport]
    dense_weights: int
    other_params: int = 0
    target_sparsity: float | None = None
    method: str | None = None
    notes: list[str] = field(default_factory=list)
    #: the candidates of a probed split (`tedepr.probe`): oversample, kept, probe_loss; else None
    probe: list[dict] | None = None

    @property
    def kept_weights(self) -> int:
        return sum(r.kept for r in self.layers)

    @property
    def sparsity(self) -> float:
        """Achieved fraction of the dense model's weights removed."""
        return 1.0 - self.kept_weights / self.dense_weights

    @property
    def compression(self) -> float:
        return self.dense_weights / max(self.kept_weights, 1)

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "target_sparsity": self.target_sparsity,
            "sparsity": self.sparsity,
            "dense_weights": self.dense_weights,
            "kept_weights": self.kept_weights,
            "compression": self.compression,
            "other_params": self.other_params,
            "notes": list(self.notes),
            "probe": self.probe,
            "layers": [dict(asdict(r), compression=r.compression) for r in self.layers],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=list)

    def __str__(self) -> str:
        """The table: one line per layer, each column as wide as its widest cell (a long layer
        name, kind or rank list shifts the columns after it, in every line alike), then the
        whole-model line and notes."""
        table = [_TABLE_HEAD] + [_cells(r) for r in self.layers]
        widths = [max(len(row[k]) for row in table) for k in range(len(_TABLE_HEAD))]
        lines = [
            " ".join(
                cell.ljust(w) if k < _LEFT_COLUMNS else cell.rjust(w)
                for k, (cell, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
            for row in table
        ]
        rule = "-" * (sum(widths) + len(widths) - 1)
        lines[1:1] = [rule]
        lines.append(rule)
        lines.append(
            f"whole model: kept {self.kept_weights:,} of {self.dense_weights:,} dense weights "
            f"(sparsity {100 * self.sparsity:.3f}%, {self.compression:.1f}x); "
            f"biases/normalisation params (not counted): {self.other_params:,}"
        )
        if any(r.connected_ranks is not None for r in self.layers):
            lines.append("ranks a→b: allocated ranks → ranks on complete paths of kept entries")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


#: the report table's columns; the first `_LEFT_COLUMNS` are left-aligned, the numbers right-aligned
_TABLE_HEAD = ("layer", "kind", "format", "ranks", "kept/total", "dense", "compr.", "FLOPs")
_LEFT_COLUMNS = 4


def _cells(r: LayerReport) -> tuple[str, ...]:
    """One layer's cells of the report table, in `_TABLE_HEAD`'s order."""
    ranks = "" if r.ranks is None else str(tuple(r.ranks)).replace(" ", "")
    if r.connected_ranks is not None and tuple(r.connected_ranks) != tuple(r.ranks or ()):
        ranks += "→" + str(tuple(r.connected_ranks)).replace(" ", "")
    if r.live is False:
        ranks = "DEAD " + ranks
    flops = "" if r.flops is None else f"{r.flops:,}"
    return (
        r.name,
        r.kind,
        r.format,
        ranks,
        f"{r.kept:,}/{r.total:,}",
        f"{r.dense:,}",
        f"{r.compression:.1f}x",
        flops,
    )


def count_summary(layers: dict, *, biases: int, norm: int, other: int) -> dict:
    """The ``count_weights`` result of every backend: per-layer entries (``dense``, ``params``,
    ``kept``) with their totals, and the parameter counts that are not weights."""
    return {
        "layers": layers,
        "dense": sum(e["dense"] for e in layers.values()),
        "params": sum(e["params"] for e in layers.values()),
        "kept": sum(e["kept"] for e in layers.values()),
        "biases": biases,
        "norm": norm,
        "other": other,
    }
