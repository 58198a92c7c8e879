"""Forward+backward time of tensorized Linear layers per contraction strategy vs a dense nn.Linear.

Each row is one layer and batch size; every time is the best of 5 repeats of 20 steps, measured in
this run, single-threaded; ratios are against the dense layer of the same row. ``auto`` shows the
strategy the cost model picked.

    python benchmarks/strategies.py
"""

from __future__ import annotations

import argparse
import time

import torch

import tedepr
from tedepr.backends.torch import CPLinear, TRLinear, TTLinear, TuckerLinear

STRATEGIES = ("chain", "optimal", "reconstruct", "auto")


def bench(layer, x, reps=20, repeats=5):
    for _ in range(3):
        layer(x).sum().backward()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(reps):
            layer(x).sum().backward()
        best = min(best, (time.perf_counter() - t) / reps)
    return best * 1e3


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64, 512])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    layers = ((TTLinear, 8), (TRLinear, 6), (TuckerLinear, 16), (CPLinear, 40))
    print(
        f"{'layer 784->300':<16}{'batch':>6}{'dense ms':>10}"
        + "".join(f"{s:>14}" for s in STRATEGIES)
        + "  auto picks"
    )
    for cls, rank in layers:
        for b in args.batches:
            x = torch.randn(b, 784)
            dense = bench(torch.nn.Linear(784, 300), x)
            cells, picked = [], ""
            for s in STRATEGIES:
                torch.manual_seed(0)
                layer = cls(784, 300, rank=rank, strategy=s)
                t = bench(layer, x)
                cells.append(f"{t:7.2f} ({t / dense:4.1f}x)")
                if s == "auto":
                    picked = tedepr.plan_contraction(layer.factorized(), b, "auto").strategy
            print(
                f"{cls.__name__ + f' r={rank}':<16}{b:>6}{dense:>10.2f}"
                + "".join(f"{c:>14}" for c in cells)
                + f"  {picked}",
                flush=True,
            )


if __name__ == "__main__":
    main()
