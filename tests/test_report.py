"""The text table of a `Report` (``str(report)``): every column starts (left-aligned text) or ends
(right-aligned numbers) at the same offset in every line, however long a layer's name, kind or
ranks are; nothing is cut."""

from __future__ import annotations

import warnings

import pytest

from tedepr.report import LayerReport, Report

HEAD = ("layer", "kind", "format", "ranks", "kept/total", "dense", "compr.", "FLOPs")
LEFT = 4  # layer, kind, format, ranks


def _cells(r: LayerReport, ranks: str | None = None) -> list[str]:
    """The cells the table must show for ``r``; ``ranks`` defaults to ``(allocated)→(connected)``
    (the allocated alone when they agree)."""
    if ranks is None:
        ranks = "→".join(
            "(" + ",".join(map(str, rk)) + ")"
            for rk in dict.fromkeys(tuple(rk) for rk in (r.ranks, r.connected_ranks) if rk)
        )
    numbers = [f"{r.kept:,}/{r.total:,}", f"{r.dense:,}", f"{r.dense / max(r.kept, 1):.1f}x"]
    return [r.name, r.kind, r.format, ranks, *numbers, "" if r.flops is None else f"{r.flops:,}"]


def _check_columns(report: Report, ranks: dict | None = None) -> list[str]:
    """Assert every table line holds its cells at the header's offsets (``ranks``: the ranks
    cell of a row by name, where not its allocated ranks); return the lines."""
    lines = str(report).splitlines()
    head, rule = lines[0], lines[1]
    assert set(rule) == {"-"} and lines[2 + len(report.layers)] == rule
    # the header's columns: a left column starts where its title starts, a right one ends there
    starts = [head.index(title) for title in HEAD]
    assert starts == sorted(starts) and starts[0] == 0
    ends = [s + len(t) for s, t in zip(starts, HEAD, strict=True)]
    width = len(rule)
    assert len(head) <= width
    for line, row in zip(lines[2:], report.layers, strict=False):
        if line == rule:
            break
        assert len(line) <= width
        padded = line.ljust(width)
        cells = _cells(row, (ranks or {}).get(row.name))
        for k, cell in enumerate(cells):
            if k < LEFT:
                at = starts[k]
                assert padded[at : at + len(cell)] == cell, (k, line)
                nxt = starts[k + 1] if k + 1 < LEFT else ends[k + 1] - len(cells[k + 1])
                assert padded[at + len(cell) : nxt].strip() == "", (k, line)
            else:
                at = ends[k]
                assert padded[at - len(cell) : at] == cell, (k, line)
                assert padded[at - len(cell) - 1] == " ", (k, line)
    return lines


def _row(name, kind, kept, total, **kw):
    return LayerReport(
        name=name, kind=kind, format="dense", kept=kept, total=total, dense=total, **kw
    )


def test_long_names_kinds_and_ranks_keep_the_columns_aligned():
    long_name = "encoder.layers.11.self_attention.output_projection.inner"  # 55 characters
    rows = [
        _row("fc", "Linear", 3, 10),
        _row(long_name, "TensorizedTransformerEncoderLayer", 12_345, 1_000_000, flops=2_000_000),
        LayerReport(
            name="lstm.weight_ih_l0",
            kind="TensorizedLSTM",
            format="tt",
            kept=7,
            total=900,
            dense=40_000,
            ranks=(1, 16, 16, 16, 16, 16, 1),
            connected_ranks=(1, 3, 2, 2, 2, 2, 1),
            live=False,
            flops=123_456_789,
        ),
    ]
    report = Report(rows, dense_weights=1_040_010)
    dead = "DEAD (1,16,16,16,16,16,1)→(1,3,2,2,2,2,1)"
    lines = _check_columns(report, {"lstm.weight_ih_l0": dead})
    text = "\n".join(lines)
    assert long_name in text and "TensorizedTransformerEncoderLayer" in text  # nothing cut
    assert not any(line != line.rstrip() for line in lines)


def test_a_vit_report_has_its_columns_at_the_same_offsets():
    jax = pytest.importorskip("jax")
    import tedepr
    from tedepr.backends import jax as tj

    model = tj.get("vit", flax=False, image_size=8, dim=8, depth=2, heads=2, mlp_dim=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = tedepr.compress(
            model,
            None,
            sparsity=0.9,
            format="tt",
            score="magnitude",
            params=model.init(jax.random.key(0)),
            backend="jax",
            compact=False,
        )
    rows = result.report.layers
    assert len(rows) == 14 and max(len(r.name) for r in rows) > 25
    _check_columns(result.report)
    # a kind longer than the old fixed column (10) and a name longer than the old 28
    result.report.layers.append(
        _row("layers/1/self_attn/out_proj/extra/map", "TensorizedLSTM", 1, 2)
    )
    _check_columns(result.report)
