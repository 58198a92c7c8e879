"""JIT compile time and steady-state step time of a JAX training step: TT LeNet-300-100, batch 128,
against the PyTorch backend's step on the same batch.

Times, on the same machine in one run, the jitted training step of `tedepr.backends.jax.fit`
(forward, backward, SGD-momentum update, mask projection) for the tensorized LeNet-300-100 and for
the dense one, and the same step in eager PyTorch (forward, backward, SGD-momentum step; masks as
parametrizations), and prints them side by side.

    python benchmarks/jax_step.py                     # TT, rank 8, batch 128, 200 timed steps
    python benchmarks/jax_step.py --format tr --rank 4 --batch 256 --sparsity 0.9
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from tedepr.backends.jax import get, make_optimizer, make_train_step, normalize_masks, tensorize  # noqa: E402
from tedepr.backends.jax.masking import prunable_leaves  # noqa: E402
from tedepr.backends.jax.training import trainable_mask  # noqa: E402


def time_step(model, batch: int, steps: int, sparsity: float, seed: int = 0) -> dict:
    params = model.init(jax.random.key(seed))
    masks = None
    if sparsity > 0:
        rng = np.random.default_rng(seed)
        masks = normalize_masks(
            params, {p: rng.random(w.shape) >= sparsity for p, w in prunable_leaves(params).items()}
        )
    trainable = trainable_mask(model, params)
    tx = make_optimizer("sgd", momentum=0.9, weight_decay=5e-4, decay_mask=trainable)
    opt_state = tx.init(params)
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((batch,) + model.input_shape), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, batch), jnp.int32)
    lr = jnp.asarray(0.05, jnp.float32)
    step = jax.jit(make_train_step(model, tx, trainable))

    t0 = time.perf_counter()
    lowered = step.lower(params, opt_state, masks, x, y, lr)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    for _ in range(5):  # warm-up
        params, opt_state, loss, _ = compiled(params, opt_state, masks, x, y, lr)
    jax.block_until_ready(params)
    times = []
    for _ in range(steps):
        s = time.perf_counter()
        params, opt_state, loss, _ = compiled(params, opt_state, masks, x, y, lr)
        jax.block_until_ready(loss)
        times.append(time.perf_counter() - s)
    n_weights = sum(int(np.prod(w.shape)) for w in prunable_leaves(params).values())
    return {
        "trace_s": t1 - t0,
        "compile_s": t2 - t1,
        "median_ms": 1e3 * statistics.median(times),
        "p10_ms": 1e3 * float(np.percentile(times, 10)),
        "p90_ms": 1e3 * float(np.percentile(times, 90)),
        "weights": n_weights,
        "loss": float(loss),
    }


def time_torch_step(
    tensorized: bool, fmt: str, rank: int, batch: int, steps: int, sparsity: float, seed: int = 0
) -> dict:
    import torch

    from tedepr.backends.torch import apply_masks, prunable_parameters
    from tedepr.backends.torch import tensorize as torch_tensorize
    from tedepr.backends.torch.models import LeNet300_100

    torch.manual_seed(seed)
    model = LeNet300_100()
    if tensorized:
        model = torch_tensorize(model, fmt, rank=rank, min_params=0)
        if sparsity > 0:
            gen = torch.Generator().manual_seed(seed)
            apply_masks(
                model,
                {
                    n: torch.rand(p.shape, generator=gen) >= sparsity
                    for n, p in prunable_parameters(model).items()
                },
            )
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, 1, 28, 28), generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(5):
        step()
    times = []
    for _ in range(steps):
        s = time.perf_counter()
        step()
        times.append(time.perf_counter() - s)
    return {
        "trace_s": 0.0,
        "compile_s": 0.0,
        "median_ms": 1e3 * statistics.median(times),
        "p10_ms": 1e3 * float(np.percentile(times, 10)),
        "p90_ms": 1e3 * float(np.percentile(times, 90)),
        "weights": sum(p.numel() for p in prunable_parameters(model).values()),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--format", default="tt", choices=["tt", "tr", "tucker", "cp"])
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument(
        "--strategy", default="auto", choices=["auto", "chain", "optimal", "reconstruct"]
    )
    ap.add_argument(
        "--sparsity", type=float, default=0.0, help="random masks pruning this fraction of cores"
    )
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch rows")
    args = ap.parse_args(argv)

    dense = get("lenet300_100", flax=False)
    tt = tensorize(dense, args.format, args.rank, min_params=0, strategy=args.strategy)
    print(
        f"jax {jax.__version__} on {jax.devices()[0].device_kind} ({jax.default_backend()}), "
        f"{len(jax.devices())} device(s); batch {args.batch}, {args.steps} timed steps, "
        f"strategy {args.strategy!r}"
    )
    for name, layer in tt.layers.items():
        plan = layer.plan(args.batch)
        print(
            f"  {name}: {type(layer).__name__} modes {layer.in_modes}x{layer.out_modes} "
            f"ranks {layer.ranks}, "
            f"plan {plan.strategy!r} ({plan.num_steps} steps, {plan.flops:,} FLOPs)"
        )
    rows = [
        (
            f"{args.format.upper()} LeNet-300-100 (rank {args.rank})",
            time_step(tt, args.batch, args.steps, args.sparsity),
        ),
        ("dense LeNet-300-100", time_step(dense, args.batch, args.steps, 0.0)),
    ]
    if not args.no_torch:
        rows += [
            (
                f"torch {args.format.upper()} LeNet (rank {args.rank})",
                time_torch_step(
                    True, args.format, args.rank, args.batch, args.steps, args.sparsity
                ),
            ),
            (
                "torch dense LeNet-300-100",
                time_torch_step(False, args.format, args.rank, args.batch, args.steps, 0.0),
            ),
        ]
    print(
        f"{'model':<32} {'weights':>9} {'trace s':>8} {'compile s':>10} {'step ms (median)':>17} "
        f"{'p10':>7} {'p90':>7}"
    )
    for label, r in rows:
        print(
            f"{label:<32} {r['weights']:>9,} {r['trace_s']:>8.3f} {r['compile_s']:>10.3f} "
            f"{r['median_ms']:>17.3f} {r['p10_ms']:>7.3f} {r['p90_ms']:>7.3f}"
        )
    ratio = rows[0][1]["median_ms"] / rows[1][1]["median_ms"]
    print(f"jax step time tensorized / dense: {ratio:.2f}x")
    if len(rows) == 4:
        print(
            f"tensorized step time jax / torch: {rows[0][1]['median_ms'] / rows[2][1]['median_ms']:.2f}x "
            "(torch rows are eager: no trace or compile)"
        )


if __name__ == "__main__":
    main()
