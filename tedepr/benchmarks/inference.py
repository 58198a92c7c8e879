"""Inference latency per batch size of a finished model: the dense model, the dense model with
PaI masks at 99%, and TEDEPR at 99% (masks from ``--tedepr-score``, default ``trainability``):
``TEDEPR masked`` as ``compress`` returns it (masks as parametrizations), ``TEDEPR final`` =
``finalize(model)`` (compacted — dead bond indices removed — masks folded into the cores, layers
still tensorized: each picks its contraction per batch size) and ``TEDEPR folded`` =
``finalize(model, fold=True)`` (every tensorized layer pre-contracted into a dense one).
``--compile`` adds ``torch.compile`` of the dense model and of ``TEDEPR final`` (torch; its ratio
columns are ``final.c``). ``--floor`` (LeNet-300-100) adds what no variant can go below:
``struct. floor`` (the same model with hidden widths (1, 1): its modules and ops, no
arithmetic), ``empty op`` (one 1-element ``torch.add`` / one jitted identity call) and ``1st
GEMM`` (the dense model's first product alone, ``x @ W`` of 784×300), and prints
the op count of every variant per call (torch: top-level ``aten::`` ops in the profiler; JAX:
``dot`` and ``fusion`` ops of the compiled HLO). Torch in
``eval()`` under ``torch.inference_mode()``; JAX jitted ``apply``. All variants of a row are
timed round-robin in one run.

    python -m tedepr.benchmarks.inference                  # LeNet-300-100 and VGG-16
    python -m tedepr.benchmarks.inference --quick          # LeNet-300-100, batches 1 and 64
    python -m tedepr.benchmarks.inference --models lenet300_100 --sparsity 0.99 0.995 0.999
"""

from __future__ import annotations

import argparse
import warnings

from ._timing import MODEL_KW, MODELS, Timer


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
    ap.add_argument("--sparsity", type=float, nargs="+", default=[0.99])
    ap.add_argument("--format", default="tt", choices=["tt", "tr", "tucker", "cp"])
    ap.add_argument("--score", default="random", help="score of the PaI masks")
    ap.add_argument(
        "--tedepr-score",
        default="trainability",
        help="score of the TEDEPR masks (compress's default)",
    )
    ap.add_argument(
        "--compile", action="store_true", help="add torch.compile'd dense and TEDEPR final (torch)"
    )
    ap.add_argument(
        "--floor",
        action="store_true",
        help="add the structure floor and one empty op, and print op counts (LeNet-300-100)",
    )
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
    import copy

    import torch

    import tedepr
    from tedepr.backends.torch import finalize
    from tedepr.models import get

    gen = torch.Generator().manual_seed(0)
    data = (
        torch.randn((32,) + MODELS[name], generator=gen),
        torch.randint(0, 10, (32,), generator=gen),
    )
    torch.manual_seed(0)
    dense = get(name, backend="torch", **MODEL_KW[name])
    sparsity = args.sparsity_now
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pai = tedepr.compress(
            dense, data, sparsity, format=None, score=args.score, backend="torch"
        ).model
        ted = tedepr.compress(
            dense, data, sparsity, format=args.format, score=args.tedepr_score, backend="torch"
        ).model
    models = {
        "dense": dense,
        "dense+PaI": pai,
        "TEDEPR masked": ted,
        "TEDEPR final": finalize(ted),
        "TEDEPR folded": finalize(ted, fold=True),
    }
    if args.compile:
        models["dense compiled"] = torch.compile(copy.deepcopy(dense).eval())
        models["final compiled"] = torch.compile(finalize(ted))
    if args.floor and name == "lenet300_100":
        models["struct. floor"] = get(name, backend="torch", hidden=(1, 1))
    for m in models.values():
        m.to(args.device).eval()
    return models


def torch_op_counts(models, x) -> dict[str, int]:
    """Top-level ``aten::`` ops of one inference call of each model (profiler events whose
    parent is not itself an ``aten::`` op)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    out = {}
    with torch.inference_mode():
        for k, m in models.items():
            m(x)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                m(x)
            out[k] = sum(
                1
                for e in prof.events()
                if e.name.startswith("aten::")
                and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))
            )
    return out


def torch_rows(name, args, timer):
    import torch

    models = torch_models(name, args)
    rows = []
    for batch in args.batches:
        x = torch.randn((batch,) + MODELS[name], device=args.device)
        ref = models["TEDEPR masked"](x).detach()
        for k in models:
            if k.startswith(("TEDEPR", "final")):
                with torch.inference_mode():
                    torch.testing.assert_close(models[k](x), ref, rtol=1e-4, atol=1e-5)

        def call(m, x=x):
            def run():
                with torch.inference_mode():
                    m(x)

            return run

        calls = {k: call(m) for k, m in models.items()}
        if args.floor:
            one = torch.ones(1, device=args.device)
            calls["empty op"] = lambda one=one: torch.add(one, one)
            if "struct. floor" in models:  # the dense model's first GEMM alone
                w0 = models["dense"].hidden[0].weight.detach().t().contiguous()
                x2 = x.flatten(1)
                calls["1st GEMM"] = lambda x2=x2, w0=w0: torch.mm(x2, w0)
            if batch == args.batches[0]:
                counts = torch_op_counts(models, x)
                print("aten ops per call: " + ", ".join(f"{k} {n}" for k, n in counts.items()))
        rows.append((batch, timer.run(calls)))
    return rows


def jax_rows(name, args, timer):
    import jax
    import jax.numpy as jnp
    import numpy as np

    import tedepr
    from tedepr.backends.jax import finalize, normalize_masks
    from tedepr.models import get

    rng = np.random.default_rng(0)
    data = (
        rng.standard_normal((32,) + MODELS[name]).astype(np.float32),
        rng.integers(0, 10, 32).astype(np.int32),
    )
    dense = get(name, backend="jax", flax=False, **MODEL_KW[name])
    params = dense.init(jax.random.key(0))
    variants = {"dense": (dense, params, None)}
    sparsity = args.sparsity_now
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, fmt, score in (
            ("dense+PaI", None, args.score),
            ("TEDEPR masked", args.format, args.tedepr_score),
        ):
            r = tedepr.compress(
                dense, data, sparsity, format=fmt, score=score, backend="jax", params=params
            )
            variants[label] = (r.model, r.params, normalize_masks(r.params, r.masks))
    variants["TEDEPR final"] = finalize(r.model, r.params, r.masks) + (None,)
    variants["TEDEPR folded"] = finalize(r.model, r.params, r.masks, fold=True) + (None,)
    if args.floor and name == "lenet300_100":
        floor = get(name, backend="jax", flax=False, hidden=(1, 1))
        variants["struct. floor"] = (floor, floor.init(jax.random.key(0)), None)
    fns = {
        k: jax.jit(lambda p, x, masks=masks, model=model: model.apply(p, x, masks))
        for k, (model, p, masks) in variants.items()
    }
    rows = []
    for batch in args.batches:
        x = jnp.asarray(rng.standard_normal((batch,) + MODELS[name]).astype(np.float32))
        calls = {}
        ref = np.asarray(fns["TEDEPR masked"](variants["TEDEPR masked"][1], x))
        for k, (_, p, _) in variants.items():
            if k.startswith("TEDEPR"):
                np.testing.assert_allclose(np.asarray(fns[k](p, x)), ref, rtol=1e-4, atol=1e-5)
            calls[k] = lambda f=fns[k], p=p, x=x: f(p, x).block_until_ready()
        if args.floor:
            identity = jax.jit(lambda a: a)
            one = jnp.ones((1,), jnp.float32)
            calls["empty op"] = lambda f=identity, one=one: f(one).block_until_ready()
            if "struct. floor" in variants:  # the dense model's first GEMM alone, jitted
                w0 = jnp.asarray(params["hidden/0"]["weight"])
                x2 = x.reshape(x.shape[0], -1)
                mm = jax.jit(jnp.matmul)
                calls["1st GEMM"] = lambda mm=mm, x2=x2, w0=w0: mm(x2, w0).block_until_ready()
            if batch == args.batches[0]:
                counts = []
                for k, (_, p, _) in variants.items():
                    hlo = fns[k].lower(p, x).compile().as_text()
                    counts.append(f"{k} {hlo.count(' dot(')}/{hlo.count(' fusion(')}")
                print("XLA dot/fusion ops per call: " + ", ".join(counts))
        rows.append((batch, timer.run(calls)))
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from ._env import describe, setup

    setup(args)
    print(describe(args))
    timer = Timer(quick=args.quick, device=args.device, budget=args.budget, stat=args.stat)
    print(
        f"inference latency, ms per call ({args.stat} of round-robin repeats); format "
        f"{args.format}, TEDEPR masks from {args.tedepr_score!r}, PaI masks from {args.score!r}; "
        "ratios: dense/this, PaI/this (> 1: faster)"
    )
    for backend in args.backends:
        for name in args.models:
            for sparsity in args.sparsity:
                args.sparsity_now = sparsity
                rows = (torch_rows if backend == "torch" else jax_rows)(name, args, timer)
                cols = list(rows[0][1])
                ours = [c for c in cols if c in ("TEDEPR final", "TEDEPR folded", "final compiled")]
                short = {"TEDEPR final": "final", "TEDEPR folded": "folded"}
                header = (
                    f"{'backend':<7} {'model':<13} {'sparsity':>8} {'batch':>5}"
                    + "".join(f"{c:>15}" for c in cols)
                    + "".join(f"{'dense/' + short.get(c, 'final.c'):>15}" for c in ours)
                    + "".join(f"{'PaI/' + short.get(c, 'final.c'):>13}" for c in ours)
                )
                print(header)
                print("-" * len(header))
                for batch, t in rows:
                    print(
                        f"{backend:<7} {name:<13} {sparsity:>8.3%} {batch:>5}"
                        + "".join(f"{t[c]:15.3f}" for c in cols)
                        + "".join(f"{t['dense'] / t[c]:14.2f}x" for c in ours)
                        + "".join(f"{t['dense+PaI'] / t[c]:12.2f}x" for c in ours),
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
