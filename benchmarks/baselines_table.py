"""Merge the JSON rows written by ``benchmarks/mnist_baselines.py`` (runs split by seed or score) into
one Markdown table: test accuracy mean ± std (population) over every seed found, and kept weights.

    python benchmarks/baselines_table.py benchmarks/results/*.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--seeds", type=int, nargs="*", default=None, help="only these seeds")
    args = ap.parse_args(argv)
    accs: dict = defaultdict(dict)
    kept: dict = defaultdict(set)
    for path in args.files:
        with open(path) as fh:
            for row in json.load(fh):
                key = (row["method"], row["sparsity"])
                for seed, acc in zip(row["seeds"], row["accs"], strict=True):
                    if args.seeds is None or seed in args.seeds:
                        accs[key][seed] = acc
                kept[key].update(row["kept"])
    methods = sorted({m for m, _ in accs})
    sparsities = sorted({s for _, s in accs})
    print("| method | " + " | ".join(f"{100 * s:g}%" for s in sparsities) + " |")
    print("|---|" + "---|" * len(sparsities))
    for m in methods:
        cells = []
        for s in sparsities:
            a = accs.get((m, s))
            if not a:
                cells.append("")
                continue
            vals = [100 * a[k] for k in sorted(a)]
            cells.append(
                f"{statistics.mean(vals):.2f} ± {statistics.pstdev(vals):.2f} "
                f"(n={len(vals)}, kept {','.join(map(str, sorted(kept[(m, s)])))})"
            )
        print(f"| {m} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
