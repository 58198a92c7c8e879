"""Aggregate a study's records into the results table (text and Markdown) and the accuracy plot."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

__all__ = ["aggregate", "render_table", "render_markdown", "plot", "BUDGET_TOLERANCE"]

#: a row whose kept count differs from the budget by more than this fraction is flagged
BUDGET_TOLERANCE = 0.01


def _budget(dense: int, sparsity: float | None) -> int:
    return dense if sparsity is None else round((1.0 - sparsity) * dense)


def aggregate(records: list[dict], methods: list[str]) -> list[dict]:
    """One row per (method, sparsity): accuracy mean ± std over the seeds that finished, kept weights
    (max over seeds), budget, flags, timings. Rows are in method order, then sparsity."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        s = r["spec"]
        groups.setdefault((s["method"], s["sparsity"]), []).append(r)
    order = {m: i for i, m in enumerate(methods)}
    rows = []
    for (method, sparsity), recs in sorted(
        groups.items(), key=lambda kv: (order.get(kv[0][0], 1e9), kv[0][1] or 0.0)
    ):
        ok = [r for r in recs if r.get("status") == "ok"]
        accs = [100 * r["accuracy"] for r in ok]
        dense = next((r["dense_weights"] for r in recs if r.get("dense_weights")), None)
        kept = max((r["kept"] for r in recs if r.get("kept") is not None), default=None)
        budget = _budget(dense, sparsity) if dense else None
        flags = []
        if kept is not None and budget and sparsity is not None:
            if kept > budget:
                flags.append("OVER BUDGET")
            elif abs(kept - budget) > BUDGET_TOLERANCE * budget:
                flags.append(f"{100 * (kept - budget) / budget:+.0f}% vs budget")
        statuses = sorted({r.get("status", "?") for r in recs} - {"ok"})
        flags.extend(f"{sum(r.get('status') == st for r in recs)} {st}" for st in statuses)
        rows.append(
            {
                "method": method,
                "sparsity": sparsity,
                "seeds": len(recs),
                "n_ok": len(ok),
                "acc_mean": statistics.fmean(accs) if accs else None,
                "acc_std": statistics.pstdev(accs) if len(accs) > 1 else (0.0 if accs else None),
                "kept": kept,
                "budget": budget,
                "compression": (dense / kept) if dense and kept else None,
                "train_seconds": _mean(r.get("train_seconds") for r in ok),
                "latency_ms": _mean(
                    1e3 * r["latency_seconds"] for r in ok if "latency_seconds" in r
                ),
                "file_bytes": _mean(r.get("file_bytes") for r in ok),
                "flags": flags,
                # under budget is a handicap, not an advantage: only over-budget rows, failed
                # runs and rows with no finished seed are left out of the comparison
                "comparable": bool(ok)
                and "OVER BUDGET" not in flags
                and not any("over_budget" in f or "error" in f for f in flags),
            }
        )
    return rows


def _mean(values):
    vals = [v for v in values if v is not None]
    return statistics.fmean(vals) if vals else None


def _fmt_acc(row) -> str:
    if row["acc_mean"] is None:
        return "—"
    return f"{row['acc_mean']:.2f} ± {row['acc_std']:.2f}"


def _fmt_bytes(n) -> str:
    if n is None:
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


_COLUMNS = (
    ("sparsity", lambda r: "dense" if r["sparsity"] is None else f"{100 * r['sparsity']:g}%"),
    ("method", lambda r: r["method"]),
    ("accuracy % (mean ± std)", _fmt_acc),
    ("seeds", lambda r: f"{r['n_ok']}/{r['seeds']}"),
    ("kept", lambda r: "—" if r["kept"] is None else f"{r['kept']:,}"),
    ("budget", lambda r: "—" if r["budget"] is None else f"{r['budget']:,}"),
    ("compr.", lambda r: "—" if r["compression"] is None else f"{r['compression']:.0f}x"),
    ("train s/run", lambda r: "—" if r["train_seconds"] is None else f"{r['train_seconds']:.1f}"),
    ("ms/batch 256", lambda r: "—" if r["latency_ms"] is None else f"{r['latency_ms']:.2f}"),
    ("file", lambda r: _fmt_bytes(r["file_bytes"])),
    ("flags", lambda r: ", ".join(r["flags"])),
)


def _cells(rows):
    return [[fn(r) for _, fn in _COLUMNS] for r in rows]


def render_table(rows: list[dict], title: str = "") -> str:
    """A plain-text table, grouped by sparsity (dense first), best accuracy of a block marked *."""
    rows = _by_sparsity(rows)
    cells = _cells(rows)
    best = _best_marks(rows)
    for c, mark in zip(cells, best):
        if mark:
            c[2] = c[2] + " *"
    head = [h for h, _ in _COLUMNS]
    widths = [
        max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(head)
    ]
    right = {2, 3, 4, 5, 6, 7, 8, 9}

    def line(vals):
        return "  ".join(
            v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(vals, widths))
        ).rstrip()

    out = [title] if title else []
    out += [line(head), "-" * sum(widths + [2 * (len(widths) - 1)])]
    prev = None
    for i, (r, c) in enumerate(zip(rows, cells)):
        if i and r["sparsity"] != prev:
            out.append("")
        prev = r["sparsity"]
        out.append(line(c))
    out.append("")
    out.append(
        "* best comparable accuracy at that sparsity; kept = weights the model holds (max over seeds); "
        f"rows more than {100 * BUDGET_TOLERANCE:g}% off the budget are flagged; over-budget rows are "
        "not compared"
    )
    return "\n".join(out)


def render_markdown(rows: list[dict]) -> str:
    rows = _by_sparsity(rows)
    cells = _cells(rows)
    for c, mark in zip(cells, _best_marks(rows)):
        if mark:
            c[2] = f"**{c[2]}**"
    head = [h for h, _ in _COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    return "\n".join(lines)


def _by_sparsity(rows):
    return sorted(rows, key=lambda r: -1.0 if r["sparsity"] is None else r["sparsity"])


def _best_marks(rows):
    best: dict = {}
    for r in rows:
        if r["sparsity"] is None or not r["comparable"] or r["acc_mean"] is None:
            continue
        best[r["sparsity"]] = max(best.get(r["sparsity"], -math.inf), r["acc_mean"])
    return [
        r["sparsity"] is not None
        and r["comparable"]
        and r["acc_mean"] is not None
        and r["acc_mean"] == best.get(r["sparsity"])
        for r in rows
    ]


def plot(rows: list[dict], path: Path, title: str = "") -> Path | None:
    """Accuracy vs density (1 − sparsity, log axis), one line per method with error bars over seeds;
    dense as a horizontal band. Returns the path, or None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        return None
    fig, ax = plt.subplots(figsize=(9.5, 5.2), dpi=120)
    methods = []
    for r in rows:
        if r["method"] not in methods:
            methods.append(r["method"])
    colors = plt.get_cmap("tab20").colors
    curves = [m for m in methods if m != "dense"]
    for method in methods:
        pts = [
            r
            for r in rows
            if r["method"] == method and r["sparsity"] is not None and r["acc_mean"] is not None
        ]
        if method == "dense":
            for r in rows:
                if r["method"] == "dense" and r["acc_mean"] is not None:
                    ax.axhline(
                        r["acc_mean"],
                        color="k",
                        ls="--",
                        lw=1,
                        label=f"dense ({r['acc_mean']:.1f})",
                    )
            continue
        if not pts:
            continue
        pts.sort(key=lambda r: r["sparsity"])
        x = [1.0 - r["sparsity"] for r in pts]
        y = [r["acc_mean"] for r in pts]
        e = [r["acc_std"] for r in pts]
        bold = method == "tedepr"
        ax.errorbar(
            x,
            y,
            yerr=e,
            marker="o",
            ms=6 if bold else 3.5,
            capsize=3,
            lw=2.8 if bold else 1.1,
            # solid: PaI on the dense model; dashed: the fine-grain ablation on the cores
            ls=":" if "+" in method else "-",
            color="k" if bold else colors[curves.index(method) % len(colors)],
            label=method,
            zorder=3 if bold else 2,
        )
    ax.set_xscale("log")
    ax.set_xlabel("density (fraction of dense weights kept, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title or "accuracy vs density")
    ax.legend(fontsize=7, ncol=1, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path
