"""Measure the constants of the planner's cost model (`tedepr.contraction`) on this machine.

``strategy="auto"`` ranks plans by ``FLOPs + MEMORY_FLOPS_PER_ELEMENT * elements moved +
STEP_OVERHEAD_FLOPS * steps``, all in FLOP-equivalents. This suite measures the three rates they
stand for, with torch on ``--device``:

* GEMM throughput (FLOP/s) of a square float32 matmul of the size the layers' steps reach;
* strided-copy throughput (elements/s) of the permutes a plan makes (``permute(...).contiguous()``
  of a 3-D tensor, the inner axis moved outward);
* the fixed cost of one pairwise step: four small calls (two reshapes, a matmul, a reshape).

and prints the constants they imply next to the ones in use. ``--fit`` fits them instead to the
forward times of every forced strategy over a grid of layers (the small GEMMs of a chain run far
below peak, so the peak-rate ratios above overstate memory and overhead) and reports how often the
model picks the measured fastest strategy with the constants in use and with the fitted ones.

    python -m tedepr.benchmarks.calibrate [--fit] [--device cuda]
"""

from __future__ import annotations

import argparse

from ._timing import Timer


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="tedepr bench calibrate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stat", choices=["median", "min", "p25"], default="min")
    ap.add_argument(
        "--fit",
        action="store_true",
        help="also fit the constants to forward times of every strategy over a grid of layers",
    )
    return ap.parse_args(argv)


def measure(device="cpu", quick=False, stat="min") -> dict[str, float]:
    """Rates measured on ``device``: ``gemm_flops_per_s``, ``copy_elements_per_s``,
    ``step_seconds``; and the cost-model constants they imply."""
    import torch

    timer = Timer(quick=quick, device=device, stat=stat)
    n = 256 if quick else 512
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    t = torch.randn(64, 64, 64, device=device)
    small_a = torch.randn(4, 4, 4, device=device)
    small_b = torch.randn(16, 4, device=device)

    def step():
        x = small_a.reshape(4, 16)
        y = small_b.reshape(16, 4)
        return (x @ y).reshape(2, 2, 4)

    ms = timer.run(
        {
            "gemm": lambda: a @ b,
            "copy": lambda: t.permute(2, 0, 1).contiguous(),
            "step": step,
        }
    )
    gemm = 2 * n**3 / (ms["gemm"] * 1e-3)
    copy = t.numel() / (ms["copy"] * 1e-3)
    step_s = ms["step"] * 1e-3
    return {
        "gemm_flops_per_s": gemm,
        "copy_elements_per_s": copy,
        "step_seconds": step_s,
        "MEMORY_FLOPS_PER_ELEMENT": gemm / copy,
        "STEP_OVERHEAD_FLOPS": step_s * gemm,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from tedepr import contraction

    from ._env import describe, setup

    setup(args)
    print(describe(args))
    r = measure(args.device, args.quick, args.stat)
    print(f"GEMM throughput        {r['gemm_flops_per_s'] / 1e9:10.2f} GFLOP/s")
    print(f"strided copy           {r['copy_elements_per_s'] / 1e9:10.3f} G elements/s")
    print(f"one pairwise step      {r['step_seconds'] * 1e6:10.2f} us (4 small calls)")
    print()
    print(f"{'constant':<26}{'measured':>12}{'in use':>12}")
    for name in ("MEMORY_FLOPS_PER_ELEMENT", "STEP_OVERHEAD_FLOPS"):
        print(f"{name:<26}{r[name]:>12.3g}{getattr(contraction, name):>12.3g}")
    if args.fit:
        print()
        print("forward times (ms) of every forced strategy:")
        f = fit(args.device, args.quick, args.stat)
        print()
        print(
            f"fit over {f['cases']} cases (time ~ FLOPs/{f['effective_gflops']:.2f} GFLOP/s "
            f"+ ... + {f['per_call_us']:.1f} us per call):"
        )
        for name in ("MEMORY_FLOPS_PER_ELEMENT", "STEP_OVERHEAD_FLOPS"):
            print(f"{name:<26}{f[name]:>12.3g}{getattr(contraction, name):>12.3g}")
        for label, key in (("constants in use", "old_picks"), ("fitted constants", "new_picks")):
            hits, gmean, worst = f[key]
            print(
                f"{label}: picks the fastest in {hits}/{f['cases']} cases; chosen/fastest "
                f"geometric mean {gmean:.2f}x, worst {worst:.2f}x"
            )
    return 0


def fit(device="cpu", quick=False, stat="min", out=print) -> dict[str, float]:
    """Fit ``time = a*FLOPs + b*moved + c*steps + d`` to forward times of every forced strategy over a
    grid of layers and batches (non-negative least squares); returns the implied constants and how
    often the cost model with the old and with the fitted constants picks the measured fastest."""
    import warnings

    import numpy as np
    import torch

    from tedepr import contraction
    from tedepr.backends.torch import linear_class

    timer = Timer(quick=True, device=device, stat=stat)
    configs = [("tt", 4), ("tt", 8), ("tr", 4), ("tucker", 16), ("cp", 32)]
    sizes = [256, 1024] if not quick else [256]
    batches = [1, 8, 64, 256] if not quick else [1, 64]
    rows, groups = [], []
    for fmt, rank in configs:
        for size in sizes:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                layers = {}
                for s in ("chain", "optimal", "reconstruct"):
                    torch.manual_seed(0)
                    layers[s] = linear_class(fmt)(size, size, rank=rank, strategy=s, device=device)
            for batch in batches:
                x = torch.randn(batch, size, device=device)

                def call(m, x=x):
                    def run():
                        with torch.no_grad():
                            m(x)

                    return run

                ms = timer.run({s: call(m) for s, m in layers.items()})
                group = []
                for s, m in layers.items():
                    p = m._plan(batch)
                    rows.append((p.flops, p.memory, p.num_steps, ms[s] * 1e-3))
                    group.append(len(rows) - 1)
                groups.append(group)
                out(
                    f"  {fmt:<6} r{rank:<3} {size:>5} batch {batch:>4}: "
                    + ", ".join(f"{s} {ms[s]:.3f}" for s in layers)
                    + " ms"
                )
    a = np.array([r[:3] for r in rows], float)
    t = np.array([r[3] for r in rows], float)
    # plus a per-call constant (the layer's own overhead, the same for every strategy)
    a = np.hstack([a, np.ones((len(a), 1))])
    # relative error: weight every row by 1/time so small layers count as much as large ones
    w = 1.0 / t
    coef = _nnls(a * w[:, None], t * w)
    gemm = coef[0]
    fitted = {
        "MEMORY_FLOPS_PER_ELEMENT": coef[1] / gemm if gemm > 0 else float("inf"),
        "STEP_OVERHEAD_FLOPS": coef[2] / gemm if gemm > 0 else float("inf"),
    }
    old = (contraction.MEMORY_FLOPS_PER_ELEMENT, contraction.STEP_OVERHEAD_FLOPS)
    new = (fitted["MEMORY_FLOPS_PER_ELEMENT"], fitted["STEP_OVERHEAD_FLOPS"])

    def picks(consts):
        hits, loss = 0, []
        for g in groups:
            costs = [a[k, 0] + consts[0] * a[k, 1] + consts[1] * a[k, 2] for k in g]
            chosen = g[int(np.argmin(costs))]
            best = g[int(np.argmin(t[g]))]
            hits += chosen == best
            loss.append(t[chosen] / t[best])
        return hits, float(np.exp(np.mean(np.log(loss)))), float(max(loss))

    fitted["effective_gflops"] = 1e-9 / gemm if gemm > 0 else float("nan")
    fitted["per_call_us"] = coef[3] * 1e6
    fitted["old_picks"], fitted["new_picks"] = picks(old), picks(new)
    fitted["cases"] = len(groups)
    return fitted


def _nnls(a, b):
    """Non-negative least squares by coordinate descent (a few unknowns; no SciPy needed)."""
    import numpy as np

    scale = np.linalg.norm(a, axis=0)
    scale[scale == 0] = 1.0
    an = a / scale
    x = np.zeros(a.shape[1])
    gram, rhs = an.T @ an, an.T @ b
    for _ in range(2000):
        for j in range(len(x)):
            r = rhs[j] - gram[j] @ x + gram[j, j] * x[j]
            x[j] = max(0.0, r / gram[j, j])
    return x / scale


if __name__ == "__main__":
    raise SystemExit(main())
