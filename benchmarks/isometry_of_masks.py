"""Docs/method.md §10, Round 6: the layer-wise isometry (log participation ratio of each layer's
reconstructed weight, `tedepr.pruning.isometry`) of the networks `tedepr run` trains, at init —
compressed exactly as the study runner does (same model seed, scoring batch and options), not
trained. PR = (Σσ²)²/Σσ⁴ lies in [1, min(N_in, N_out)].

    PYTHONPATH=. python benchmarks/isometry_of_masks.py --seeds 0,1,2 --sparsities 0.995,0.998,0.999
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import tedepr
from tedepr.cli.data import prepare_data
from tedepr.cli.methods import compress_options
from tedepr.cli.runners import _score_batch
from tedepr.pruning.isometry import log_participation

METHODS = ("lowrank", "tedepr", "tt+trainability-isometry", "tt+trainability-isometry-exact")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--sparsities", default="0.995,0.998,0.999")
    ap.add_argument("--methods", default=",".join(METHODS))
    args = ap.parse_args()
    data = prepare_data("mnist10k")
    print("sparsity method seed: PR per layer (hidden.0 hidden.1 classifier) | J = Σ log PR")
    for sparsity in map(float, args.sparsities.split(",")):
        for method in args.methods.split(","):
            js = []
            for seed in map(int, args.seeds.split(",")):
                torch.manual_seed(seed)
                model = tedepr.models.get("lenet300_100", backend="torch", **data["model_kwargs"])
                result = tedepr.compress(
                    model,
                    _score_batch(data, seed),
                    sparsity=sparsity,
                    backend="torch",
                    seed=seed,
                    **compress_options(method, "tt"),
                )
                prs = []
                for layer in (
                    result.model.hidden[0],
                    result.model.hidden[1],
                    result.model.classifier,
                ):
                    w = layer.factorized().to_dense().detach().double().numpy()
                    prs.append(log_participation(w))
                js.append(sum(prs))
                print(
                    f"{sparsity} {method} seed{seed}: "
                    + " ".join(f"{np.exp(p):7.2f}" for p in prs)
                    + f" | J = {sum(prs):.3f}"
                )
            print(f"{sparsity} {method} mean J = {np.mean(js):.3f}")


if __name__ == "__main__":
    main()
