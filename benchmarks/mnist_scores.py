"""Accuracy of every registered score, TEDEPR (tensorized + pruned) vs the dense PaI baselines.

LeNet-300-100 on the embedded MNIST-10k digits (8,000 train / 2,000 test, stratified, seed 0), one
sparsity, the same training recipe for every method. Prints a table of test accuracy (mean ± std over
seeds) and writes the rows as JSON.

    python benchmarks/mnist_scores.py --sparsity 0.995 --epochs 5 --seeds 0 1
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
    ap.add_argument("--sparsity", type=float, default=0.995)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--format", default="tt")
    ap.add_argument("--scores", nargs="+", default=list(tedepr.scores.available()))
    ap.add_argument(
        "--baselines",
        nargs="*",
        default=["random", "magnitude", "snip", "grasp", "synflow", "force"],
    )
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--oversample", type=float, default=None)
    ap.add_argument(
        "--rounds", type=int, default=None, help="override every iterative score's rounds"
    )
    ap.add_argument("--no-rescale", action="store_true", help="keep the pruned init's scale")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    images, labels = load_mnist10k()
    (xtr, ytr), (xte, yte) = train_test_split(images, labels, test_fraction=0.2, seed=0)
    xtr, xte = normalize(xtr)[:, None], normalize(xte)[:, None]
    torch.set_num_threads(max(1, torch.get_num_threads()))

    runs = [(f"{args.format}+{s}", args.format, s) for s in args.scores]
    runs += [(f"dense+{s}", None, s) for s in args.baselines]
    rows = []
    for label, fmt, score in runs:
        accs, t0 = [], time.perf_counter()
        for seed in args.seeds:
            torch.manual_seed(seed)
            model = tedepr.models.get("lenet300_100", backend="torch")
            train = make_loader(xtr, ytr, args.batch_size, shuffle=True, seed=seed)
            test = make_loader(xte, yte, 1000, shuffle=False)
            score_batches = make_loader(xtr, ytr, 256, shuffle=True, seed=seed)
            kw = {} if args.oversample is None or fmt is None else {"oversample": args.oversample}
            if args.rounds is not None:
                kw["rounds"] = args.rounds
            res = compress(
                model,
                score_batches,
                sparsity=args.sparsity,
                format=fmt,
                score=score,
                seed=seed,
                rescale=not args.no_rescale,
                **kw,
            )
            out = fit(
                res.model,
                train,
                epochs=args.epochs,
                lr=args.lr,
                eval_data=test,
                seed=seed,
                progress=False,
            )
            accs.append(out.history[-1]["eval_acc"])
        rows.append(
            {
                "method": label,
                "sparsity": args.sparsity,
                "kept": res.report.kept_weights,
                "acc_mean": statistics.mean(accs),
                "acc_std": statistics.pstdev(accs),
                "accs": accs,
                "seconds": time.perf_counter() - t0,
            }
        )
        r = rows[-1]
        print(
            f"{label:<22} kept {r['kept']:>6}  acc {100 * r['acc_mean']:6.2f} ± {100 * r['acc_std']:4.2f}"
            f"  ({r['seconds']:.0f}s)",
            flush=True,
        )
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
