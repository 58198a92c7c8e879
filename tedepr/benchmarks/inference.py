"""Inference latency per batch size of a finished model: the dense model, the dense model with
PaI masks at 99%, and TEDEPR at 99% as trained (masks as parametrizations) and with the masks
folded into the cores (``remove_masks`` on a copy: no mask multiply per call; each tensorized
layer still picks its contraction per batch size, pre-contracting the cores when that is
cheaper). Torch in ``eval()`` under ``torch.inference_mode()``; JAX jitted ``apply``.

    python -m tedepr.benchmarks.inference                  # LeNet-300-100 and VGG-16
    python -m tedepr.benchmarks.inference --quick          # LeNet-300-100, batches 1 and 64
"""

from __future__ import annotations

import argparse
import warnings

from ._timing import Timer

MODELS = {"lenet300_100": (1, 28, 28), "vgg16": (3, 32, 32)}
# the CIFAR shape for VGG-16 (the zoo's default input is MNIST-like)
MODEL_KW = {"lenet300_100": {}, "vgg16": {"in_channels": 3, "image_size": 32}}


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="tedepr bench inference",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", nargs="+", choices=sorted(MODELS))
    ap.add_argument("--backends", nargs="+", choices=["torch", "jax"], default=["torch", "jax"])
    ap.add_argument("--batches", type=int, nargs="+")
    ap.add_argument("--sparsity", type=float, default=0.99)
    ap.add_argument("--format", default="tt", choices=["tt", "tr", "tucker", "cp"])
    ap.add_argument("--score", default="random")
    ap.add_argument(
        "--stat",
        choices=["median", "min", "p25"],
        default="median",
        help="statistic of the repeats (default median; min/p25 resist preemption)",
    )
    ap.add_argument("--budget", type=float, help="seconds of timing per row")
    args = ap.parse_args(argv)
    if args.models is None:
        args.models = ["lenet300_100"] if args.quick else ["lenet300_100", "vgg16"]
    if args.batches is None:
        args.batches = [1, 64] if args.quick else [1, 8, 64, 256]
    if args.budget is None:
        args.budget = 1.0 if args.quick else 5.0
    return args


def torch_models(name, args):
    import torch

    import tedepr
    from tedepr.backends.torch import remove_masks
    from tedepr.models import get

    gen = torch.Generator().manual_seed(0)
    data = (
        torch.randn((32,) + MODELS[name], generator=gen),
        torch.randint(0, 10, (32,), generator=gen),
    )
    torch.manual_seed(0)
    dense = get(name, backend="torch", **MODEL_KW[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pai = tedepr.compress(
            dense, data, args.sparsity, format=None, score=args.score, backend="torch"
        ).model
        ted = tedepr.compress(
            dense, data, args.sparsity, format=args.format, score=args.score, backend="torch"
        ).model
    # the same compress again, then folded: remove_masks on a deepcopy of a parametrized model
    # would also strip the original's parametrized properties (torch shares the generated class)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folded = tedepr.compress(
            dense, data, args.sparsity, format=args.format, score=args.score, backend="torch"
        ).model
    remove_masks(folded)
    models = {
        "dense": dense,
        "dense+PaI": pai,
        "TEDEPR masked": ted,
        "TEDEPR folded": folded,
    }
    for m in models.values():
        m.to(args.device).eval()
    return models


def torch_rows(name, args, timer):
    import torch

    models = torch_models(name, args)
    rows = []
    for batch in args.batches:
        x = torch.randn((batch,) + MODELS[name], device=args.device)
        ref = models["TEDEPR masked"](x).detach()
        torch.testing.assert_close(models["TEDEPR folded"](x), ref, rtol=1e-4, atol=1e-5)

        def call(m, x=x):
            def run():
                with torch.inference_mode():
                    m(x)

            return run

        rows.append((batch, timer.run({k: call(m) for k, m in models.items()})))
    return rows


def jax_rows(name, args, timer):
    import jax
    import jax.numpy as jnp
    import numpy as np

    import tedepr
    from tedepr.backends.jax import normalize_masks
    from tedepr.backends.jax.masking import apply_masks as fold
    from tedepr.models import get

    rng = np.random.default_rng(0)
    data = (
        rng.standard_normal((32,) + MODELS[name]).astype(np.float32),
        rng.integers(0, 10, 32).astype(np.int32),
    )
    dense = get(name, backend="jax", **MODEL_KW[name])
    params = dense.init(jax.random.key(0))
    variants = {"dense": (dense, params, None)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, fmt in (("dense+PaI", None), ("TEDEPR masked", args.format)):
            r = tedepr.compress(
                dense,
                data,
                args.sparsity,
                format=fmt,
                score=args.score,
                backend="jax",
                params=params,
            )
            variants[label] = (r.model, r.params, normalize_masks(r.params, r.masks))
    model, p, masks = variants["TEDEPR masked"]
    variants["TEDEPR folded"] = (model, fold(p, masks), None)
    fns = {
        k: jax.jit(lambda p, x, masks=masks, model=model: model.apply(p, x, masks))
        for k, (model, p, masks) in variants.items()
    }
    rows = []
    for batch in args.batches:
        x = jnp.asarray(rng.standard_normal((batch,) + MODELS[name]).astype(np.float32))
        calls = {}
        for k, (_, p, _) in variants.items():
            calls[k] = lambda f=fns[k], p=p, x=x: f(p, x).block_until_ready()
        rows.append((batch, timer.run(calls)))
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from ._env import describe, setup

    setup(args)
    print(describe(args))
    timer = Timer(quick=args.quick, device=args.device, budget=args.budget, stat=args.stat)
    print(
        f"inference latency, ms per call (median of round-robin repeats); sparsity "
        f"{args.sparsity}, format {args.format}; ratios: dense/this, PaI/this (> 1: faster)"
    )
    cols = ("dense", "dense+PaI", "TEDEPR masked", "TEDEPR folded")
    header = (
        f"{'backend':<7} {'model':<14} {'batch':>5}"
        + "".join(f"{c:>15}" for c in cols)
        + f"{'dense/folded':>14}{'PaI/folded':>12}"
    )
    print(header)
    print("-" * len(header))
    for backend in args.backends:
        for name in args.models:
            rows = (torch_rows if backend == "torch" else jax_rows)(name, args, timer)
            for batch, t in rows:
                print(
                    f"{backend:<7} {name:<14} {batch:>5}"
                    + "".join(f"{t[c]:15.3f}" for c in cols)
                    + f"{t['dense'] / t['TEDEPR folded']:13.2f}x"
                    + f"{t['dense+PaI'] / t['TEDEPR folded']:11.2f}x",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
