"""Docs/method.md §10, Round 7 (screening): the upper bound of a fine grain that removes the input
slices of ``hidden.0`` reading MNIST's blank border (pixels whose value is the same constant on
almost every image, so their weights only add a bias the layer already has).

Removing those slices whole is the same network as one trained on the images cropped to the
border-free centre: rows and columns 4..23 (the 20 x 20 box MNIST centres its digits in), with the
axis-aligned modes of the cropped image. So this script trains `lowrank` and `tedepr` on the crop
at the *same whole-model weight budgets* as on the full image (1,331 / 532 / 266 at 99.5 / 99.8 /
99.9% of the 28 x 28 model) with the study's runner and the 20-epoch recipe of Rounds 1-6, and
prints both. If the crop does not lift low-rank alone, the blank border costs it nothing and
pruning it cannot pay.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/border_crop.py --seeds 0,1,2 --out crop.jsonl

Resumable: finished runs are read back from ``--out`` (one JSON record per line).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from collections import defaultdict
from multiprocessing import Pool

import numpy as np

#: the 28 x 28 model's budgets (kept weights) at 99.5 / 99.8 / 99.9%
BUDGETS = {0.995: 1331, 0.998: 532, 0.999: 266}
RECIPE = dict(
    epochs=20,
    lr=3e-3,
    optimizer="adam",
    momentum=0.9,
    weight_decay=0.0,
    schedule="cosine",
    batch_size=128,
)
LO, HI = 4, 24  # the border-free centre, rows and columns


def _crop(x):
    return np.ascontiguousarray(x.reshape(-1, 1, 28, 28)[:, :, LO:HI, LO:HI])


def run(job: tuple) -> dict:
    crop, method, budget_of, seed = job
    import torch

    from tedepr.cli.data import prepare_data
    from tedepr.cli.runners import TorchRunner

    torch.set_num_threads(1)
    data = dict(prepare_data("mnist10k"))
    kwargs = dict(data["model_kwargs"])
    if crop:
        data["train"] = (_crop(data["train"][0]), data["train"][1])
        data["test"] = (_crop(data["test"][0]), data["test"][1])
        kwargs["image_size"] = HI - LO
    data["model_kwargs"] = kwargs
    dense = kwargs["image_size"] ** 2 * 300 + 300 * 100 + 100 * 10  # LeNet-300-100
    spec = dict(
        seed=seed,
        recipe=RECIPE,
        method=method,
        format="tt",
        sparsity=1 - BUDGETS[budget_of] / dense,  # the same kept count as the 28 x 28 model
        model="lenet300_100",
        model_options=None,
    )
    out = TorchRunner("cpu", 1).run(spec, data, False)
    return dict(
        crop=crop,
        method=method,
        sparsity=budget_of,
        seed=seed,
        accuracy=100 * out["history"][-1]["eval_acc"],
        kept=out["report"]["kept_weights"],
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--methods", default="lowrank,tedepr")
    ap.add_argument("--out", default="border_crop.jsonl")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    records = [json.loads(line) for line in open(args.out)] if os.path.exists(args.out) else []
    done = {(r["crop"], r["method"], r["sparsity"], r["seed"]) for r in records}
    jobs = [
        (crop, method, s, seed)
        for seed in map(int, args.seeds.split(","))
        for s in BUDGETS
        for crop in (False, True)
        for method in args.methods.split(",")
        if (crop, method, s, seed) not in done
    ]
    with Pool(args.workers) as pool:
        for record in pool.imap_unordered(run, jobs):
            with open(args.out, "a") as f:
                f.write(json.dumps(record) + "\n")
            records.append(record)
    cells = defaultdict(list)
    for r in records:
        cells[(r["sparsity"], r["method"], r["crop"])].append(r)
    print("sparsity (budget)  method    28x28 image                 20x20 crop")
    for s, budget in BUDGETS.items():
        for method in args.methods.split(","):
            row = [f"{100 * s:.1f}% ({budget:,})".ljust(18), method.ljust(9)]
            for crop in (False, True):
                rs = cells[(s, method, crop)]
                acc = [r["accuracy"] for r in rs]
                row.append(
                    f"{statistics.mean(acc):6.2f} ± {statistics.pstdev(acc):4.2f} "
                    f"({len(rs)}; {max(r['kept'] for r in rs):,})".ljust(28)
                    if rs
                    else "—".ljust(28)
                )
            print(" ".join(row).rstrip())


if __name__ == "__main__":
    main()
