"""Call overhead of the Flax NNX layers: one tensorized layer's jitted forward three ways, timed in
one run — the pure layer (`jax.jit(layer.apply)`), the NNX module through `jax.jit` over its
`nnx.split` state (`nnx.merge` inside), and `nnx.jit(module)` — printed side by side with ratios.

    python benchmarks/nnx_overhead.py                  # TT 784->300, rank 8, batch 128
    python benchmarks/nnx_overhead.py --format tr --rank 4 --batch 32
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
from flax import nnx  # noqa: E402

from tedepr.backends.jax import nnx as tnnx  # noqa: E402


def best_time(f, args, repeats: int, calls: int) -> float:
    """Best of ``repeats`` means over ``calls`` calls, in seconds (after one warm-up call)."""
    jax.block_until_ready(f(*args))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            out = f(*args)
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", default="tt", choices=sorted(tnnx.LINEAR_CLASSES))
    parser.add_argument("--in-features", type=int, default=784)
    parser.add_argument("--out-features", type=int, default=300)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args(argv)
    module = tnnx.LINEAR_CLASSES[args.format](
        args.in_features, args.out_features, rank=args.rank, rngs=nnx.Rngs(0)
    )
    x = jax.random.normal(jax.random.key(1), (args.batch, args.in_features))
    graphdef, state = nnx.split(module)
    ways = {
        "jax.jit(layer.apply)": (jax.jit(module.layer.apply), (module.pure_params(), x)),
        "jax.jit(split/merge)": (jax.jit(lambda s, v: nnx.merge(graphdef, s)(v)), (state, x)),
        "nnx.jit(module)": (nnx.jit(lambda m, v: m(v)), (module, x)),
    }
    times = {name: best_time(f, a, args.repeats, args.calls) for name, (f, a) in ways.items()}
    base = times["jax.jit(layer.apply)"]
    print(
        f"{args.format} {args.in_features}->{args.out_features} rank {args.rank}, "
        f"batch {args.batch} (best of {args.repeats}x{args.calls} calls)"
    )
    for name, t in times.items():
        print(f"  {name:22s} {t * 1e6:8.0f} us   {t / base:5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
