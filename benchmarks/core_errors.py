"""Largest relative errors of the core against the NumPy reference, per array library and dtype.

For a fixed seeded set of random factorised matrices (TT/TR/Tucker/CP, 1-3 modes per side, mode
sizes 1-4, ranks 1-3, 0-2 leading batch dims), prints ``max |y − y_ref| / max |y_ref|`` for
``contract(x, f, strategy=s)`` (each strategy) and for ``f.to_dense()``, where the reference is
``reference.einsum_reference`` / ``reference.to_dense`` in float64 on the same (rounded) inputs.
The quality bar is 1e-10 for float64 and 1e-5 for float32.

Run: ``python benchmarks/core_errors.py [--specs N] [--seed S]``
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from pathlib import Path

import numpy as np

try:
    import tedepr
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import tedepr

import reference

STRATEGIES = ("chain", "optimal", "reconstruct", "auto")
LIBRARIES = {  # name: (module that must import, namespace)
    "numpy": ("numpy", "array_api_compat.numpy"),
    "array_api_strict": ("array_api_strict", "array_api_strict"),
    "torch": ("torch", "array_api_compat.torch"),
    "jax": ("jax", "jax.numpy"),
}
BARS = {"float64": 1e-10, "float32": 1e-5}


def random_spec(rng):
    """A random format, modes and valid ranks, with float64 cores in ``Factorized.cores`` order."""
    fmt = str(rng.choice(["tt", "tr", "tucker", "cp"]))
    p = int(rng.integers(1, 4))
    q = p if fmt in ("tt", "tr") else int(rng.integers(1, 4))
    im = tuple(int(v) for v in rng.integers(1, 5, p))
    om = tuple(int(v) for v in rng.integers(1, 5, q))
    factored = None
    if fmt == "tt":
        sizes = [n * m for n, m in zip(im, om)]
        caps = [min(math.prod(sizes[:k]), math.prod(sizes[k:]), 3) for k in range(1, p)]
        ranks = (1,) + tuple(int(rng.integers(1, c + 1)) for c in caps) + (1,)
        shapes = [(ranks[k], im[k], om[k], ranks[k + 1]) for k in range(p)]
    elif fmt == "tr":
        r0 = int(rng.integers(1, 4))
        ranks = (r0,) + tuple(int(r) for r in rng.integers(1, 4, p - 1)) + (r0,)
        shapes = [(ranks[k], im[k], om[k], ranks[k + 1]) for k in range(p)]
    elif fmt == "tucker":
        dims = im + om
        factored = tuple(bool(b) for b in rng.integers(0, 2, len(dims)))
        if not any(factored):
            factored = (True,) + factored[1:]
        ranks = tuple(
            int(rng.integers(1, min(d, 3) + 1)) if f else None for d, f in zip(dims, factored)
        )
        shapes = [tuple(d if r is None else r for d, r in zip(dims, ranks))]
        shapes += [(d, r) for d, r in zip(dims, ranks) if r is not None]
    else:
        ranks = (int(rng.integers(1, 4)),)
        shapes = [(d, ranks[0]) for d in im + om]
    cores = [rng.standard_normal(s) for s in shapes]
    lead = tuple(int(v) for v in rng.integers(1, 4, int(rng.integers(0, 3))))
    x = rng.standard_normal(lead + (math.prod(im),))
    return fmt, im, om, factored, cores, x


def reference_cores(fmt, factored, cores):
    if fmt != "tucker":
        return list(cores)
    it = iter(cores[1:])
    return cores[0], [next(it) if f else None for f in factored]


def to_numpy(a):
    if type(a).__module__.split(".")[0] == "torch":
        return a.detach().cpu().numpy()
    return np.asarray(a)


def rel_error(actual, expected):
    actual = to_numpy(actual).astype(np.float64)
    scale = np.abs(expected).max()
    err = np.abs(actual - expected).max()
    return float(err / scale) if scale > 0 else float(err)


def measure(xp, dtype, specs, jit=None):
    """Worst errors over ``specs``; ``jit`` (e.g. ``jax.jit``) compiles each spec's computation once
    (JAX would otherwise compile every primitive for every new shape)."""
    worst = dict.fromkeys(STRATEGIES + ("to_dense",), 0.0)
    np_dtype = np.dtype(dtype)
    for fmt, im, om, factored, cores, x in specs:
        rc = [c.astype(np_dtype).astype(np.float64) for c in cores]
        rx = x.astype(np_dtype).astype(np.float64)

        def outputs(x, *cores, fmt=fmt, im=im, om=om, factored=factored):
            f = tedepr.from_cores(fmt, cores, im, om, factored=factored)
            return [tedepr.contract(x, f, strategy=s) for s in STRATEGIES] + [f.to_dense()]

        run = outputs if jit is None else jit(outputs)
        got = run(xp.asarray(x.astype(np_dtype)), *[xp.asarray(c.astype(np_dtype)) for c in cores])
        y_ref = reference.einsum_reference(rx, fmt, reference_cores(fmt, factored, rc), im, om)
        w_ref = reference.to_dense(fmt, reference_cores(fmt, factored, rc), im, om)
        for name, y, ref in zip(worst, got, [y_ref] * len(STRATEGIES) + [w_ref]):
            worst[name] = max(worst[name], rel_error(y, ref))
    return worst


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=int, default=60, help="number of random specs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    specs = [random_spec(rng) for _ in range(args.specs)]
    counts = {f: sum(s[0] == f for s in specs) for f in ("tt", "tr", "tucker", "cp")}
    print(
        f"{args.specs} specs (seed {args.seed}): "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
    )
    cols = STRATEGIES + ("to_dense",)
    header = f"{'library':<18}{'dtype':<9}" + "".join(f"{c:>13}" for c in cols) + f"{'bar':>9}"
    print(header)
    print("-" * len(header))
    for name, (module, ns) in LIBRARIES.items():
        try:
            importlib.import_module(module)
        except ImportError:
            print(f"{name:<18}(not installed)")
            continue
        jit = None
        if name == "jax":
            import jax

            jax.config.update("jax_enable_x64", True)  # this script's process only
            jit = jax.jit
        xp = importlib.import_module(ns)
        for dtype in ("float32", "float64"):
            worst = measure(xp, dtype, specs, jit)
            ok = all(v <= BARS[dtype] for v in worst.values())
            label = name + (" (jit)" if jit else "")
            print(
                f"{label:<18}{dtype:<9}"
                + "".join(f"{worst[c]:>13.2e}" for c in cols)
                + f"{BARS[dtype]:>9.0e}"
                + ("" if ok else "  ABOVE BAR")
            )


if __name__ == "__main__":
    main()
