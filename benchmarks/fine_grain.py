"""The fine-grain research grid of docs/method.md §10: TEDEPR candidates vs low-rank alone.

LeNet-300-100 on the embedded MNIST-10k (fixed 8,000/2,000 split), one recipe for every row (Adam
lr 3e-3, no weight decay, cosine, 20 epochs, batch 128 — the `tedepr run` default until Round 7,
which moved it to 60 epochs), scoring on one batch of 256; each candidate is a `tedepr.compress`
call. Prints mean ± std over seeds with the kept weights; appends every run to ``--out`` (JSON
lines) so an interrupted grid resumes.

    python benchmarks/fine_grain.py --sparsities 0.995 0.998 0.999 --seeds 0 1 \
        --candidates lowrank trainability trainability-os4 entries snip
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import torch

import tedepr
from tedepr.backends.torch import fit, make_loader
from tedepr.datasets import load_mnist10k, normalize, train_test_split

A = {"format": "tt"}
CANDIDATES = {
    "lowrank": {**A, "score": None},
    "trainability": {**A, "score": "trainability"},  # structured, oversample 2 (the default)
    "trainability-os4": {**A, "score": "trainability", "oversample": 4.0},
    "entries": {**A, "score": "trainability-entries"},  # entry-wise, progressive, connected
    "entries-os1.5": {**A, "score": "trainability-entries", "oversample": 1.5},
    "entries-os3": {**A, "score": "trainability-entries", "oversample": 3.0},
    "snip": {**A, "score": "snip"},
    "snip-os1.5": {**A, "score": "snip", "oversample": 1.5},
    "snip-os4": {**A, "score": "snip", "oversample": 4.0},
    "synflow": {**A, "score": "synflow"},
    "snip-classifier-dense": {**A, "score": "snip", "tensorize_options": {"min_params": 1024}},
}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sparsities", type=float, nargs="+", default=[0.995, 0.998, 0.999])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    p.add_argument("--out", type=Path, default=Path("fine_grain.jsonl"))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    (xtr, ytr), (xte, yte) = train_test_split(*load_mnist10k(), seed=0)
    xtr, xte = normalize(xtr)[:, None], normalize(xte)[:, None]
    done = {}
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            r = json.loads(line)
            done[(r["candidate"], r["sparsity"], r["seed"])] = r
    for sparsity in args.sparsities:
        for name in args.candidates:
            for seed in args.seeds:
                if (name, sparsity, seed) in done:
                    continue
                torch.manual_seed(seed)
                model = tedepr.models.get("lenet300_100", backend="torch")
                rng = torch.Generator().manual_seed(seed)
                idx = torch.randperm(len(ytr), generator=rng)[:256].numpy()
                t0 = time.perf_counter()
                res = tedepr.compress(
                    model, (xtr[idx], ytr[idx]), sparsity=sparsity, backend="torch", seed=seed,
                    **CANDIDATES[name],
                )  # fmt: skip
                t1 = time.perf_counter()
                out = fit(
                    res.model, make_loader(xtr, ytr, 128, seed=seed), epochs=args.epochs,
                    optimizer="adam", lr=3e-3, weight_decay=0.0, schedule="cosine",
                    eval_data=make_loader(xte, yte, 1000, shuffle=False), seed=seed, progress=False,
                )  # fmt: skip
                h = out.history[-1]
                rec = {
                    "candidate": name,
                    "sparsity": sparsity,
                    "seed": seed,
                    "kept": res.report.kept_weights,
                    "acc": h["eval_acc"],
                    "train_acc": h["train_acc"],
                    "ranks": [
                        (r.name, r.ranks, r.connected_ranks, r.kept) for r in res.report.layers
                    ],
                    "compress_s": t1 - t0,
                    "train_loss": [e["train_loss"] for e in out.history],
                }
                done[(name, sparsity, seed)] = rec
                with args.out.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
                print(f"{name:24s} {sparsity:g} seed {seed}: {100 * rec['acc']:.2f}% ({rec['kept']} kept)",
                      flush=True)  # fmt: skip
    print(f"\n| sparsity | candidate | kept | accuracy % (mean ± std, {len(args.seeds)} seeds) |")
    print("|---|---|---|---|")
    for sparsity in args.sparsities:
        for name in args.candidates:
            recs = [done[(name, sparsity, s)] for s in args.seeds if (name, sparsity, s) in done]
            accs = [100 * r["acc"] for r in recs]
            std = statistics.pstdev(accs) if len(accs) > 1 else 0.0
            kept = max(r["kept"] for r in recs)
            print(
                f"| {100 * sparsity:g}% | {name} | {kept:,} | {statistics.fmean(accs):.2f} ± {std:.2f} |"
            )


if __name__ == "__main__":
    main()
