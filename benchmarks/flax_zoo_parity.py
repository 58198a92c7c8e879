"""The Flax zoo against the `Model` zoo on the embedded digits: for each model, the same seed
through `tedepr.compress` + `fit` on both paths, printing the masks' agreement, the final
accuracy and loss of each, and the seconds each path took (same run, same machine).

    python benchmarks/flax_zoo_parity.py                       # lenet300_100, lenet5; 2 epochs
    python benchmarks/flax_zoo_parity.py --models lenet5 --epochs 1 --train 1000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import tedepr  # noqa: E402
from tedepr.backends.jax import fit  # noqa: E402
from tedepr.datasets import load_mnist10k, normalize, train_test_split  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["lenet300_100", "lenet5"])
    ap.add_argument("--format", default="tt", help="tt | tr | tucker | cp | none")
    ap.add_argument("--score", default="trainability")
    ap.add_argument("--sparsity", type=float, default=0.99)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    fmt = None if args.format == "none" else args.format
    (xtr, ytr), (xte, yte) = train_test_split(*load_mnist10k(), test_fraction=0.2, seed=0)
    xtr, ytr = normalize(xtr)[: args.train, None].astype(np.float32), ytr[: args.train]
    xte, yte = normalize(xte)[:1000, None].astype(np.float32), yte[:1000]
    print(
        f"{args.format} {args.score} sparsity {args.sparsity}, {args.epochs} epochs on "
        f"{len(ytr)} digits, evaluated on {len(yte)}"
    )
    for name in args.models:
        rows = {}
        for flax in (False, True):
            t0 = time.perf_counter()
            model = tedepr.models.get(
                name, backend="jax", flax=flax, **({"rngs": args.seed} if flax else {})
            )
            r = tedepr.compress(
                model,
                [(xtr[:256], ytr[:256])],
                sparsity=args.sparsity,
                format=fmt,
                score=args.score,
                backend="jax",
                seed=args.seed,
            )
            out = fit(
                r.model,
                None if flax else r.params,
                (xtr, ytr),
                masks=None if flax else r.masks,
                epochs=args.epochs,
                lr=0.05,
                batch_size=64,
                eval_data=(xte, yte),
                progress=False,
                seed=args.seed,
            )
            rows[flax] = (r, out.history[-1], time.perf_counter() - t0)
        (rm, hm, tm), (rf, hf, tf) = rows[False], rows[True]
        same = sorted(rm.masks) == sorted(rf.masks) and all(
            np.array_equal(np.asarray(rm.masks[k]), np.asarray(rf.masks[k])) for k in rm.masks
        )
        print(f"{name}: masks identical: {same} ({rm.report.kept_weights} kept)")
        for label, h, t in (("Model", hm, tm), ("Flax ", hf, tf)):
            print(
                f"  {label} eval_acc {h['eval_acc']:.4f}  eval_loss {h['eval_loss']:.6f}  "
                f"train_loss {h['train_loss']:.6f}  {t:.1f} s"
            )


if __name__ == "__main__":
    main()
