"""Torch vs JAX agreement, measured: forward, gradients and every registered score from the same
NumPy cores and batch (float64), and whether the masks are identical.

    python benchmarks/agreement.py
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch

import tedepr
from tedepr.backends.jax import JaxScoringProblem
from tedepr.backends.jax import interchange as jx
from tedepr.backends.jax import models as jmodels
from tedepr.backends.jax import tensorize as jtensorize
from tedepr.backends.torch import TorchScoringProblem
from tedepr.backends.torch import interchange as tx
from tedepr.backends.torch import tensorize as ttensorize
from tedepr.backends.torch.models import LeNet300_100
from tedepr.pruning import compute_scores, prune
from tedepr.pruning.problem import canonical_name


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def main():
    jax.config.update("jax_enable_x64", True)  # this script's own process only
    print(f"{'format':<7}{'quantity':<14}{'max rel. error':>16}{'masks equal':>13}")
    for fmt in ("tt", "tr", "tucker", "cp"):
        torch.manual_seed(0)
        tmodel = ttensorize(LeNet300_100(hidden=(64, 32)).double(), fmt, rank=4, min_params=0)
        jmodel = jtensorize(jmodels.lenet300_100(hidden=(64, 32)), fmt, rank=4, min_params=0)
        params, _ = jx.import_arrays(jmodel, tx.export_arrays(tmodel), dtype=jnp.float64)
        rng = np.random.default_rng(0)
        x, y = rng.standard_normal((64, 1, 28, 28)), rng.integers(0, 10, 64)
        tp, jp = TorchScoringProblem(tmodel, (x, y)), JaxScoringProblem(jmodel, params, (x, y))
        structure = jp.structure()

        def layout(n, a, structure=structure):
            return np.asarray(a).T if structure[n].format == "dense" else np.asarray(a)

        out = _rel(jmodel.apply(params, jnp.asarray(x)), tmodel(torch.tensor(x)).detach().numpy())
        print(f"{fmt:<7}{'forward':<14}{out:>16.2e}{'':>13}")
        total = sum(int(np.prod(np.shape(w))) for w in jp.weights().values())
        for method in tedepr.scores.available():
            ts, js = compute_scores(tp, method, seed=0), compute_scores(jp, method, seed=0)
            err = max(_rel(layout(n, s), ts[canonical_name(n)].numpy()) for n, s in js.items())
            rounds = 5 if tedepr.pruning.scores.get(method).rounds > 1 else None
            tm, jm = (
                prune(tp, method, total // 4, rounds=rounds),
                prune(jp, method, total // 4, rounds=rounds),
            )
            same = all(
                np.array_equal(layout(n, m), tm[canonical_name(n)].numpy()) for n, m in jm.items()
            )
            print(f"{'':<7}{method:<14}{err:>16.2e}{str(same):>13}", flush=True)


if __name__ == "__main__":
    main()
