"""The dense PaI baselines erk, prospr and ntksap (and any other registered score) on LeNet-300-100.

Embedded MNIST-10k (8,000 train / 2,000 test, stratified, seed 0); ``compress(format=None,
score=s)`` at each sparsity (default guards), then ``fit(..., optimizer="adam", lr=3e-3,
weight_decay=0, epochs=20)`` — issue 7's recipe. Prints one row per (score, sparsity): test accuracy
mean ± std over seeds (population std) and kept weights; writes the rows as JSON with ``--out``.

    python benchmarks/mnist_baselines.py --scores erk prospr ntksap \
        --sparsities 0.99 0.995 0.998 0.999 --seeds 0 1 --out baselines.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import tedepr
from tedepr.backends.torch.compress import compress
from tedepr.backends.torch.training import fit, make_loader
from tedepr.datasets import load_mnist10k, normalize, train_test_split


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scores", nargs="+", default=["erk", "prospr", "ntksap"])
    ap.add_argument("--sparsities", type=float, nargs="+", default=[0.99, 0.995, 0.998, 0.999])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    for s in args.scores:
        tedepr.scores.get(s)  # a clear error for an unknown name, before any training

    images, labels = load_mnist10k()
    (xtr, ytr), (xte, yte) = train_test_split(images, labels, test_fraction=0.2, seed=0)
    xtr, xte = normalize(xtr)[:, None], normalize(xte)[:, None]
    rows = []
    for score in args.scores:
        for sparsity in args.sparsities:
            accs, kept, t0 = [], set(), time.perf_counter()
            for seed in args.seeds:
                torch.manual_seed(seed)
                model = tedepr.models.get("lenet300_100", backend="torch")
                train = make_loader(xtr, ytr, args.batch_size, shuffle=True, seed=seed)
                test = make_loader(xte, yte, 1000, shuffle=False)
                score_batches = make_loader(xtr, ytr, 256, shuffle=True, seed=seed)
                res = compress(
                    model, score_batches, sparsity=sparsity, format=None, score=score, seed=seed
                )
                assert all(r.live for r in res.report.layers), f"{score} {sparsity}: dead layer"
                kept.add(res.report.kept_weights)
                out = fit(
                    res.model,
                    train,
                    epochs=args.epochs,
                    lr=args.lr,
                    optimizer="adam",
                    weight_decay=0.0,
                    eval_data=test,
                    seed=seed,
                    progress=False,
                )
                accs.append(out.history[-1]["eval_acc"])
            rows.append(
                {
                    "method": f"dense+{score}",
                    "sparsity": sparsity,
                    "kept": sorted(kept),
                    "acc_mean": statistics.mean(accs),
                    "acc_std": statistics.pstdev(accs),
                    "accs": accs,
                    "seeds": args.seeds,
                    "seconds": time.perf_counter() - t0,
                }
            )
            r = rows[-1]
            print(
                f"dense+{score:<10} {sparsity:<6} kept {','.join(map(str, r['kept'])):>6}  acc "
                f"{100 * r['acc_mean']:6.2f} ± {100 * r['acc_std']:4.2f}  ({r['seconds']:.0f}s)",
                flush=True,
            )
            if args.out:
                with open(args.out, "w") as fh:
                    json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
