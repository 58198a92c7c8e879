"""Training-step time of compressed models: TEDEPR (tensorized + pruned at 99%) vs the dense model
vs the dense model with pruning-at-initialization masks at 99%, in PyTorch and JAX.

Random data of the model's input shape; one SGD-momentum step (forward, backward, update; masks
as the backends apply them: parametrizations in torch, gradient/update projection in JAX, jitted).
Variants: ``dense``; ``dense+PaI`` (the dense model with masks from ``--score``); ``TEDEPR`` (masks
from ``--tedepr-score``, default the library's default ``trainability``, as ``compress`` returns
it, ``compact=False``) and ``TEDEPR compact`` (the same after `compact`: dead bond indices
removed; what ``compress`` returns by default). ``--compile`` adds torch variants whose model is
``torch.compile``d (inductor), the same treatment for dense, PaI and TEDEPR; ``--autotune`` adds
the compacted model with ``strategy="autotune"`` on every tensorized layer (each layer's
chain / optimal / reconstruct timed forward+backward once, the fastest kept). All variants of one
model are timed round-robin in one run; ratios compare them. The torch rows also give the GEMM
FLOPs of one step (forward + backward, from the layers' own contraction plans; ``-`` for models
with convolutions): the time a step could reach if FLOPs alone set it.

    python -m tedepr.benchmarks.training                    # LeNet-300-100 and VGG-16, both backends
    python -m tedepr.benchmarks.training --quick            # LeNet-300-100 only, few steps
    python -m tedepr.benchmarks.training --models lenet300_100 --backends torch --batch 128
    python -m tedepr.benchmarks.training --models lenet300_100 --sparsity 0.99 0.995 0.999
"""

from __future__ import annotations

import argparse
import copy
import random
import time
import warnings

from ._timing import MODEL_KW, MODELS, summarize


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="tedepr bench training",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--device", default="cpu", help="torch device; JAX uses its GPU when cuda")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", nargs="+", choices=sorted(MODELS))
    ap.add_argument("--backends", nargs="+", choices=["torch", "jax"], default=["torch", "jax"])
    ap.add_argument("--batch", type=int, default=128, help="LeNet batch (default 128)")
    ap.add_argument("--vgg-batch", type=int, help="VGG-16 batch (default 32; 8 with --quick)")
    ap.add_argument("--sparsity", type=float, nargs="+", default=[0.99])
    ap.add_argument("--format", default="tt", choices=["tt", "tr", "tucker", "cp"])
    ap.add_argument(
        "--score",
        default="random",
        help="score of the PaI masks (their speed does not depend on which entries are kept)",
    )
    ap.add_argument(
        "--tedepr-score",
        default="trainability",
        help="score of the TEDEPR masks (default: compress's default; structured scores leave "
        "dead bond indices that `compact` removes)",
    )
    ap.add_argument("--compile", action="store_true", help="add torch.compile'd torch variants")
    ap.add_argument(
        "--autotune",
        action="store_true",
        help='add the compacted torch model with strategy="autotune" on its tensorized layers',
    )
    ap.add_argument(
        "--bare", action="store_true", help="add the TEDEPR model without masks (their cost)"
    )
    ap.add_argument(
        "--ops",
        action="store_true",
        help="print the ops of one step of every torch variant (profiler: top-level aten ops, "
        "GEMMs, copies, autograd nodes)",
    )
    ap.add_argument("--stat", choices=["median", "min", "p25"], default="median")
    ap.add_argument("--steps", type=int, help="timed steps per variant (default 60; 15 quick)")
    args = ap.parse_args(argv)
    if args.models is None:
        args.models = ["lenet300_100"] if args.quick else ["lenet300_100", "vgg16"]
    if args.vgg_batch is None:
        args.vgg_batch = 8 if args.quick else 32
    if args.steps is None:
        args.steps = 15 if args.quick else 60
    for s in args.sparsity:
        if not 0 <= s < 1:
            ap.error(f"--sparsity must be in [0, 1); got {s}")
    return args


def _round_robin(steps: dict, n: int, sync, stat: str = "median") -> dict[str, float]:
    """``stat`` ms of each step function, one call of each per round in a shuffled order, ``n``
    rounds (after warm-up), so load drifts hit every variant alike."""
    rng = random.Random(0)
    for fn in steps.values():
        for _ in range(3):
            fn()
    sync()
    times = {k: [] for k in steps}
    order = list(steps)
    for _ in range(n):
        rng.shuffle(order)
        for k in order:
            t = time.perf_counter()
            steps[k]()
            sync()
            times[k].append(time.perf_counter() - t)
    return {k: 1e3 * summarize(v, stat) for k, v in times.items()}


# ---------------------------------------------------------------------------- torch
def torch_variants(name, args, batch):
    import torch

    import tedepr
    from tedepr.models import get

    device = torch.device(args.device)
    shape = MODELS[name]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((batch,) + shape, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    data = (x[:32], y[:32])
    torch.manual_seed(0)
    dense = get(name, backend="torch", **MODEL_KW[name])
    sparsity = args.sparsity_now
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pai = tedepr.compress(
            dense, data, sparsity=sparsity, format=None, score=args.score, backend="torch"
        ).model
        result = tedepr.compress(
            dense,
            data,
            sparsity=sparsity,
            format=args.format,
            score=args.tedepr_score,
            backend="torch",
            compact=False,
        )
    ted = result.model
    small = tedepr.backends.torch.compact(result).model
    models = {
        "dense": dense,
        f"dense+PaI {sparsity:.1%}": pai,
        f"TEDEPR {args.format}": ted,
        "TEDEPR compact": small,
    }
    if args.bare:
        # the TEDEPR model without its masks: what applying them costs per step (not a valid way
        # to train: pruned entries would get gradients)
        bare = copy.deepcopy(small)
        tedepr.backends.torch.remove_masks(bare)
        models["compact, no masks"] = bare
    if args.autotune:
        tuned = copy.deepcopy(small)
        for m in tuned.modules():
            if isinstance(m, tedepr.backends.torch.layers.TensorizedLayer):
                m.strategy = "autotune"
        models["compact autotune"] = tuned
    if args.compile:
        for label, k in (
            ("dense compiled", "dense"),
            ("PaI compiled", f"dense+PaI {sparsity:.1%}"),
            ("compact compiled", "TEDEPR compact"),
        ):
            models[label] = torch.compile(copy.deepcopy(models[k]))
    x, y = x.to(device), y.to(device)
    steps = {}
    for k, m in models.items():
        m.to(device).train()
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

        def step(m=m, opt=opt):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(m(x), y).backward()
            opt.step()

        steps[k] = step
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    counts = {
        k: tedepr.backends.torch.count_weights(getattr(m, "_orig_mod", m))["kept"]
        for k, m in models.items()
    }

    def flops():  # after the timing: autotuned layers have measured their strategy by then
        return {k: step_gemm_flops(getattr(m, "_orig_mod", m), batch) for k, m in models.items()}

    return steps, sync, counts, flops


def torch_step_ops(step) -> dict[str, int]:
    """Ops of one call of ``step`` (after a warm-up call), from the torch profiler: top-level
    ``aten::`` ops (parent not itself an ``aten::`` op), GEMMs (``mm``/``addmm``/``bmm``) and
    copies (``copy_``) among all ``aten::`` events, and autograd nodes run by the backward."""
    from torch.profiler import ProfilerActivity, profile

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    ev = list(prof.events())
    aten = [e for e in ev if e.name.startswith("aten::")]
    return {
        "aten": sum(
            1 for e in aten if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")
        ),
        "gemm": sum(1 for e in aten if e.name in ("aten::mm", "aten::addmm", "aten::bmm")),
        "copy": sum(1 for e in aten if e.name == "aten::copy_"),
        "autograd": sum(1 for e in ev if e.name.startswith("autograd::engine::evaluate_function")),
    }


def _plan_flops(plan, grads) -> tuple[int, int]:
    """``(forward, backward)`` GEMM FLOPs of a contraction plan; ``grads[i]``: operand ``i``
    needs a gradient (the backward of a pairwise GEMM is one GEMM per operand that needs one)."""
    req = list(grads)
    fwd = bwd = 0
    for s in plan._steps:
        (b1, m, k), (b2, _, n) = s.shape_a, s.shape_b
        f = 2 * max(b1, b2) * m * k * n
        ra, rb = req[s.i], req[s.j]
        fwd += f
        bwd += f * (int(ra) + int(rb))
        for i in sorted((s.i, s.j), reverse=True):
            del req[i]
        req.append(ra or rb)
    return fwd, bwd


def step_gemm_flops(model, batch: int) -> int | None:
    """GEMM FLOPs of one training step (forward + backward) of an MLP of ``nn.Linear`` and
    tensorized Linear layers, from each layer's plan at ``batch``; the first layer's input needs
    no gradient. None for models with other weight layers (convolutions, recurrent, ...)."""

    from torch import nn

    from tedepr.backends.torch.layers import _PLANS, _plan_index, _TensorizedLinear, _tuned_strategy

    total, first = 0, True
    for m in model.modules():
        if isinstance(m, _TensorizedLinear):
            strategy = m.strategy
            if strategy == "autotune":
                probe = next(iter(m.parameters()))
                strategy = _tuned_strategy(m._plan_key(), batch, probe.new_empty(1, 1)) or "auto"
            plan = _PLANS[_plan_index(m._plan_key(), batch, strategy)]
            n_in, n_out = m.in_features, m.out_features
            cores = len(m._core_shapes)
            if plan._reconstruct is not None:  # build W from the cores, then one dense GEMM
                f, b = _plan_flops(plan._reconstruct, [True] * cores)
                mm = 2 * batch * n_in * n_out
                total += f + b + mm * (2 if first else 3)
            else:
                f, b = _plan_flops(plan, [not first] + [True] * cores)
                total += f + b
            first = False
        elif isinstance(m, nn.Linear):
            total += 2 * batch * m.in_features * m.out_features * (2 if first else 3)
            first = False
        elif isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.RNNBase)) or (
            hasattr(m, "_core_shapes") and not isinstance(m, _TensorizedLinear)
        ):
            return None
    return total if not first else None


# ---------------------------------------------------------------------------- jax
def jax_variants(name, args, batch):
    import jax
    import jax.numpy as jnp
    import numpy as np

    import tedepr
    from tedepr.backends.jax import compact, make_optimizer, make_train_step, normalize_masks
    from tedepr.backends.jax.masking import prunable_leaves
    from tedepr.backends.jax.training import trainable_mask
    from tedepr.models import get

    platform = "gpu" if str(args.device).startswith("cuda") else "cpu"
    dev = jax.devices(platform)[0]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch,) + MODELS[name]).astype(np.float32)
    y = rng.integers(0, 10, batch).astype(np.int32)
    dense = get(name, backend="jax", flax=False, **MODEL_KW[name])
    params = dense.init(jax.random.key(0))
    variants = {"dense": (dense, params, None)}
    sparsity = args.sparsity_now
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, fmt, score in (
            (f"dense+PaI {sparsity:.1%}", None, args.score),
            (f"TEDEPR {args.format}", args.format, args.tedepr_score),
        ):
            r = tedepr.compress(
                dense,
                (x[:32], y[:32]),
                sparsity=sparsity,
                format=fmt,
                score=score,
                backend="jax",
                params=params,
                compact=False,
            )
            variants[label] = (
                r.model,
                r.params,
                normalize_masks(r.params, r.masks) if r.masks else None,
            )
    c = compact(r)
    variants["TEDEPR compact"] = (
        c.model,
        c.params,
        normalize_masks(c.params, c.masks) if c.masks else None,
    )
    if args.bare:
        variants["compact, no masks"] = (c.model, c.params, None)  # what the masks cost per step
    xj, yj = jax.device_put(jnp.asarray(x), dev), jax.device_put(jnp.asarray(y), dev)
    lr = jnp.asarray(0.01, jnp.float32)
    steps, counts = {}, {}
    for k, (model, p, masks) in variants.items():
        trainable = trainable_mask(model, p)
        tx = make_optimizer("sgd", momentum=0.9, weight_decay=5e-4, decay_mask=trainable)
        state = {"p": jax.device_put(p, dev), "o": jax.device_put(tx.init(p), dev)}
        masks = jax.device_put(masks, dev) if masks is not None else None
        compiled = (
            jax.jit(make_train_step(model, tx, trainable))
            .lower(state["p"], state["o"], masks, xj, yj, lr)
            .compile()
        )

        def step(compiled=compiled, state=state, masks=masks):
            state["p"], state["o"], loss, _ = compiled(state["p"], state["o"], masks, xj, yj, lr)
            loss.block_until_ready()

        steps[k] = step
        leaves = prunable_leaves(p)
        counts[k] = int(
            sum(np.asarray(masks_leaf).sum() for masks_leaf in _flat_masks(masks, leaves))
        )
    return steps, (lambda: None), counts, dict


def _flat_masks(masks, leaves):
    import numpy as np

    from tedepr.backends.jax.masking import prunable_leaves

    if masks is None:
        return [np.ones(np.shape(w), bool) for w in leaves.values()]
    flat = prunable_leaves(masks)
    return [flat.get(path, np.ones(np.shape(w), bool)) for path, w in leaves.items()]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from ._env import describe, setup

    setup(args)
    print(describe(args))
    print(
        f"training step (forward, backward, SGD-momentum update), {args.stat} of "
        f"round-robin steps ({args.steps} for LeNet, a tenth for VGG); PaI masks from score "
        f"{args.score!r}, TEDEPR masks from {args.tedepr_score!r}"
    )
    header = (
        f"{'backend':<7} {'model':<14} {'sparsity':>8} {'batch':>5} {'variant':<18} "
        f"{'kept weights':>12} {'ms/step':>9} {'PaI/this':>9} {'dense/this':>10} "
        f"{'GEMM MFLOP':>10} {'PaI/this FLOPs':>14}"
    )
    print(header)
    print("-" * len(header))
    for backend in args.backends:
        for name in args.models:
            for sparsity in args.sparsity:
                args.sparsity_now = sparsity
                batch = args.batch if name.startswith("lenet") else args.vgg_batch
                make = torch_variants if backend == "torch" else jax_variants
                steps, sync, counts, flops = make(name, args, batch)
                n = args.steps if name.startswith("lenet") else max(3, args.steps // 10)
                t = _round_robin(steps, n, sync, args.stat)
                flops = flops()
                keys = list(t)
                if args.ops and backend == "torch":
                    for k in keys:
                        o = torch_step_ops(steps[k])
                        print(
                            f"ops per step, {k}: {o['aten']} top-level aten ops, {o['gemm']} "
                            f"GEMMs, {o['copy']} copies, {o['autograd']} autograd nodes"
                        )
                for k in keys:
                    f, f_pai = flops.get(k), flops.get(keys[1])
                    fcols = (
                        f"{f / 1e6:>10.1f} {f_pai / f:>13.2f}x"
                        if f and f_pai
                        else f"{'-':>10} {'-':>14}"
                    )
                    print(
                        f"{backend:<7} {name:<14} {sparsity:>8.3%} {batch:>5} {k:<18} "
                        f"{counts[k]:>12,} {t[k]:>9.3f} {t[keys[1]] / t[k]:>8.2f}x "
                        f"{t[keys[0]] / t[k]:>9.2f}x {fcols}",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
