"""Cost of planning a contraction: uncached (tedepr.contraction's lru caches cleared) vs cached.

Layer: a 5-core TT-matrix, in_modes (4,4,4,4,4), out_modes (4,4,4,4,4) (a 1024 x 1024 weight),
rank 8, batch 64. For each strategy, prints the median time of one ``plan_contraction`` call in
microseconds, uncached and cached, and their ratio.

Run: ``python benchmarks/planner.py [--repeats N]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

try:
    import tedepr
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import tedepr

from tedepr import contraction

MODES = (4, 4, 4, 4, 4)
RANK = 8
BATCH = 64
CACHED_CALLS = 2000


def clear_plan_caches() -> list[str]:
    """Clear every lru cache of tedepr.contraction (``_plan``, per-layer and reconstruct plans)."""
    cleared = []
    for name in sorted(vars(contraction)):
        obj = getattr(contraction, name)
        if callable(getattr(obj, "cache_clear", None)):
            obj.cache_clear()
            cleared.append(name)
    return cleared


def time_uncached(f, strategy, repeats):
    times = []
    for _ in range(repeats):
        clear_plan_caches()
        t0 = time.perf_counter_ns()
        tedepr.plan_contraction(f, BATCH, strategy)
        times.append((time.perf_counter_ns() - t0) / 1e3)
    return statistics.median(times)


def time_cached(f, strategy, repeats):
    tedepr.plan_contraction(f, BATCH, strategy)  # warm
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        for _ in range(CACHED_CALLS):
            tedepr.plan_contraction(f, BATCH, strategy)
        times.append((time.perf_counter_ns() - t0) / 1e3 / CACHED_CALLS)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    f = tedepr.random_factorized("tt", 4**5, 4**5, RANK, in_modes=MODES, out_modes=MODES, seed=0)
    print(
        f"TT-matrix in_modes={MODES} out_modes={MODES} ranks={f.ranks} batch={BATCH}; "
        f"median of {args.repeats} repeats (cached: mean of {CACHED_CALLS} calls per repeat)"
    )
    print(f"caches cleared between uncached repeats: {', '.join(clear_plan_caches())}")
    header = f"{'strategy':<13}{'chosen':<13}{'uncached us':>13}{'cached us':>12}{'ratio':>10}"
    print(header)
    print("-" * len(header))
    for strategy in ("chain", "optimal", "reconstruct", "auto"):
        uncached = time_uncached(f, strategy, args.repeats)
        cached = time_cached(f, strategy, args.repeats)
        chosen = tedepr.plan_contraction(f, BATCH, strategy).strategy
        print(
            f"{strategy:<13}{chosen:<13}{uncached:>13.1f}{cached:>12.2f}{uncached / cached:>9.0f}x"
        )


if __name__ == "__main__":
    main()
