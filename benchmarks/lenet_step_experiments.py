"""Experiments behind docs/performance.md, *Round 4*: ideas tried for the LeNet-300-100 targets
and not kept in the library (each prints its numbers measured in one run; CPU, 1 thread).

    python benchmarks/lenet_step_experiments.py layer       # compacted hidden.0 fwd+bwd, batch 128:
                                                          # dense, chain, optimal, reconstruct,
                                                          # a batch-last TT chain
    python benchmarks/lenet_step_experiments.py step-compile  # torch.compile of the whole step
    python benchmarks/lenet_step_experiments.py split       # batch-1 inference, cores merged into
                                                          # two halves per layer (torch and JAX)
    python benchmarks/lenet_step_experiments.py jax-plans   # the JAX layers' plans at batch 128,
                                                          # uncompacted and compacted
    python benchmarks/lenet_step_experiments.py plan-function  # a custom autograd.Function per
                                                          # layer: gradcheck, then the step time

``--sparsity`` (default 0.99). Masks: ``compress``'s defaults (trainability, compacted).
"""

from __future__ import annotations

import argparse
import copy
import math
import random
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _times(fns: dict, rounds: int, warm: int = 5) -> dict[str, tuple[float, float]]:
    """(median, min) ms of each function, called round-robin in a shuffled order."""
    for f in fns.values():
        for _ in range(warm):
            f()
    out = {k: [] for k in fns}
    order, rng = list(fns), random.Random(0)
    for _ in range(rounds):
        rng.shuffle(order)
        for k in order:
            t = time.perf_counter()
            fns[k]()
            out[k].append(time.perf_counter() - t)
    res = {}
    for k, v in out.items():
        v.sort()
        res[k] = (1e3 * v[len(v) // 2], 1e3 * v[0])
    return res


def _print(res):
    for k, (med, lo) in res.items():
        print(f"  {k:<34} median {med:8.4f} ms   min {lo:8.4f} ms")


def _torch_models(sparsity):
    import torch

    import tedepr
    from tedepr.models import get

    gen = torch.Generator().manual_seed(0)
    x = torch.randn((128, 1, 28, 28), generator=gen)
    y = torch.randint(0, 10, (128,), generator=gen)
    torch.manual_seed(0)
    dense = get("lenet300_100", backend="torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pai = tedepr.compress(
            dense, (x[:32], y[:32]), sparsity=sparsity, format=None, score="random",
            backend="torch",
        ).model  # fmt: skip
        small = tedepr.compress(
            dense, (x[:32], y[:32]), sparsity=sparsity, format="tt", backend="torch"
        )
    return dense, pai, small, x, y


def tt_batch_last(x2, cores, in_modes):
    """``x2 @ W`` of a TT-matrix, ``x2`` (B, N_in): the batch as the trailing index, cores from the
    last to the first, every step one broadcast matmul ``(r m, n r') @ (a, n r', s)`` with no
    permute copy of a batch-sized tensor."""
    import torch

    b = x2.shape[0]
    t, s = x2.t(), b
    for k in range(len(cores) - 1, -1, -1):
        r0, n, m, r1 = cores[k].shape
        a = math.prod(in_modes[:k])
        g = cores[k].permute(0, 2, 1, 3).reshape(r0 * m, n * r1)
        t = torch.matmul(g, t.reshape(a, n * r1, s))
        s = m * s
    return t.reshape(-1, b).t()


def layer(args):
    import torch

    from tedepr.backends.torch.layers import _PLANS, TORCH_OPS, _plan_index

    _, _, small, _, _ = _torch_models(args.sparsity)
    lay = small.model.hidden[0]
    print(f"hidden.0 {lay.in_modes}->{lay.out_modes} ranks {lay.ranks}, batch 128, fwd+bwd")
    x2 = torch.randn(128, lay.in_features)
    cores = [c.detach().clone().requires_grad_() for c in lay.cores]
    w = torch.randn(lay.in_features, lay.out_features, requires_grad=True)
    with torch.no_grad():
        err = (tt_batch_last(x2, cores, lay.in_modes) - lay._matmul(x2)).abs().max().item()
    print(f"  batch-last chain max |difference| from the layer: {err:.2e}")

    def plan(strategy):
        p = _PLANS[_plan_index(lay._plan_key(), 128, strategy)]
        x = x2.reshape((128,) + lay.in_modes)

        def run():
            out = p.execute((x,) + tuple(cores), xp=TORCH_OPS)
            torch.autograd.grad(out.sum(), cores)

        return run

    def batch_last():
        torch.autograd.grad(tt_batch_last(x2, cores, lay.in_modes).sum(), cores)

    def batch_last_fwd():
        with torch.no_grad():
            tt_batch_last(x2, cores, lay.in_modes)

    def dense():
        torch.autograd.grad((x2 @ w).sum(), [w])

    def dense_fwd():
        with torch.no_grad():
            x2 @ w

    fns = {s: plan(s) for s in ("chain", "optimal", "reconstruct")}
    fns.update({"dense 784x300": dense, "batch-last chain": batch_last})
    fns.update({"dense forward only": dense_fwd, "batch-last forward only": batch_last_fwd})
    _print(_times(fns, args.rounds))


def step_compile(args):
    import torch

    dense, pai, small, x, y = _torch_models(args.sparsity)

    def make(model, mode):
        m = copy.deepcopy(model)
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

        def step():
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(m(x), y).backward()
            opt.step()

        return torch.compile(step) if mode == "compiled step" else step

    fns = {
        f"{k} {mode}": make(m, mode)
        for k, m in (("PaI", pai), ("compact", small.model))
        for mode in ("eager", "compiled step")
    }
    _print(_times(fns, args.rounds // 3, warm=3))


def _merge(cores):
    import numpy as np

    t = cores[0]
    for c in cores[1:]:
        r0, n_, m_, _ = t.shape
        _, n, m, r1 = c.shape
        t = np.einsum("aNMr,rnmb->aNnMmb", t, c).reshape(r0, n_ * n, m_ * m, r1)
    return t


def _halves(cores):
    """``(R', L', N_L, r, M_R)``: the split of a TT layer at the bond that stores least, R' of
    shape (N_Rin, r M_Rout) and L' (M_Lout, N_Lin r), so that ``y = L' @ (x (N_L, N_R) @ R')``."""
    best = None
    for s in range(1, len(cores)):
        left, right = _merge(cores[:s]), _merge(cores[s:])
        r = left.shape[-1]
        rp = right.transpose(1, 0, 2, 3).reshape(right.shape[1], r * right.shape[2])
        lp = left[0].transpose(1, 0, 2).reshape(left.shape[2], left.shape[1] * r)
        if best is None or rp.size + lp.size < best[0]:
            best = (rp.size + lp.size, rp, lp, left.shape[1], r, right.shape[2])
    return best[1:]


def split(args):
    import numpy as np
    import torch

    from tedepr.backends.torch import finalize

    dense, _, small, x, _ = _torch_models(args.sparsity)
    dense.eval()
    final = finalize(small.model)
    x1 = x[:1]
    layers = []
    for mod in (final.hidden[0], final.hidden[1], final.classifier):
        cores = [c.detach().numpy() for c in mod.cores]
        rp, lp, nl, r, mr = _halves(cores)
        layers.append((torch.tensor(rp), torch.tensor(lp), nl, r, mr, mod.bias.detach()))

    def split_torch(xx):
        h = xx.reshape(1, -1)
        for k, (rp, lp, nl, r, mr, b) in enumerate(layers):
            h = torch.mm(lp, torch.mm(h.view(nl, -1), rp).view(nl * r, mr)).view(1, -1) + b
            if k < 2:
                h = torch.relu(h)
        return h

    dense_w = [
        (m.weight.detach().t().contiguous(), m.bias.detach())
        for m in (*dense.hidden, dense.classifier)
    ]

    def dense_torch(xx):  # the dense model as the same kind of plain function (no modules)
        h = xx.reshape(1, -1)
        for k, (w, b) in enumerate(dense_w):
            h = torch.addmm(b, h, w)
            if k < 2:
                h = torch.relu(h)
        return h

    with torch.inference_mode():
        err = (split_torch(x1) - final(x1)).abs().max().item()
        print(f"torch, batch 1; split max |difference| from finalize: {err:.2e}")
        fns = {
            "dense": lambda: dense(x1),
            "finalize (compacted chain)": lambda: final(x1),
            "split halves (a plain function)": lambda: split_torch(x1),
            "dense as a plain function": lambda: dense_torch(x1),
        }
        _print(_times(fns, args.rounds * 10))

    import jax
    import jax.numpy as jnp

    import tedepr
    from tedepr.backends.jax import finalize as jfinalize
    from tedepr.models import get

    rng = np.random.default_rng(0)
    xj = rng.standard_normal((32, 1, 28, 28)).astype(np.float32)
    yj = rng.integers(0, 10, 32).astype(np.int32)
    jd = get("lenet300_100", backend="jax", flax=False)
    params = jd.init(jax.random.key(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = tedepr.compress(jd, (xj, yj), sparsity=args.sparsity, backend="jax", params=params)
    fm, fp = jfinalize(r.model, r.params, r.masks)
    jl = []
    for name in ("hidden/0", "hidden/1", "classifier"):
        rp, lp, nl, rr, mr = _halves([np.asarray(c) for c in fp[name]["cores"]])
        jl.append((jnp.asarray(rp), jnp.asarray(lp), nl, rr, mr, jnp.asarray(fp[name]["bias"])))

    def split_jax(xx):
        h = xx.reshape(1, -1)
        for k, (rp, lp, nl, rr, mr, b) in enumerate(jl):
            h = (lp @ (h.reshape(nl, -1) @ rp).reshape(nl * rr, mr)).reshape(1, -1) + b
            if k < 2:
                h = jax.nn.relu(h)
        return h

    f = {
        "dense": jax.jit(lambda a: jd.apply(params, a)),
        "finalize (compacted chain)": jax.jit(lambda a: fm.apply(fp, a)),
        "split halves": jax.jit(split_jax),
    }
    x1j = jnp.asarray(xj[:1])
    err = float(
        np.max(np.abs(np.asarray(f["split halves"](x1j) - f["finalize (compacted chain)"](x1j))))
    )
    print(f"jax, batch 1 (jitted); split max |difference| from finalize: {err:.2e}")
    _print(
        _times(
            {k: (lambda g=g: g(x1j).block_until_ready()) for k, g in f.items()}, args.rounds * 10
        )
    )


def jax_plans(args):
    import jax
    import numpy as np

    import tedepr
    from tedepr.contraction import plan_contraction
    from tedepr.models import get

    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 128).astype(np.int32)
    dense = get("lenet300_100", backend="jax")
    params = dense.init(jax.random.key(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = tedepr.compress(
            dense, (x[:32], y[:32]), sparsity=args.sparsity, backend="jax", params=params,
            compact=False,
        )  # fmt: skip
    for label, res in (("uncompacted", r), ("compacted", tedepr.backends.jax.compact(r))):
        for name, lay in res.model.layers.items():
            if not hasattr(lay, "_template"):
                continue
            for s in ("auto", "chain", "optimal", "reconstruct"):
                p = plan_contraction(lay._template, 128, s)
                print(
                    f"{label:<12} {name:<10} ranks {lay.ranks} {s:<11} -> {p.strategy:<11} "
                    f"{p.flops / 1e6:7.1f} MFLOP  path {p.path}"
                )


def _inv(perm):
    out = [0] * len(perm)
    for k, p in enumerate(perm):
        out[p] = k
    return tuple(out)


def eligible(plan):
    return plan._reconstruct is None and not plan._diagonals and not plan._sum_axes


def _plan_function():
    """A custom ``torch.autograd.Function`` running a contraction plan as one autograd node
    (built on first use, so importing this script does not import torch)."""
    import torch

    class PlanFunction(torch.autograd.Function):
        """``plan.execute(operands)`` with one autograd node: the backward of every pairwise GEMM
        written out (two GEMMs), no autograd bookkeeping per permute/reshape."""

        @staticmethod
        def forward(ctx, plan, *operands):
            n = len(operands)
            ops = list(operands)
            ids = list(range(n))
            saved = []
            for t, s in enumerate(plan._steps):
                a, b = ops[s.i], ops[s.j]
                ia, ib = ids[s.i], ids[s.j]
                for k in sorted((s.i, s.j), reverse=True):
                    del ops[k]
                    del ids[k]
                sha, shb = tuple(a.shape), tuple(b.shape)
                if s.squeeze_a is not None:
                    a = a.reshape(s.squeeze_a)
                elif s.sum_a:
                    a = a.sum(dim=s.sum_a)
                if s.squeeze_b is not None:
                    b = b.reshape(s.squeeze_b)
                elif s.sum_b:
                    b = b.sum(dim=s.sum_b)
                ida = s.perm_a != tuple(range(len(s.perm_a)))
                idb = s.perm_b != tuple(range(len(s.perm_b)))
                if ida:
                    a = a.permute(s.perm_a)
                if idb:
                    b = b.permute(s.perm_b)
                pa, pb = tuple(a.shape), tuple(b.shape)
                if s.batched:
                    a3, b3 = a.reshape(s.shape_a), b.reshape(s.shape_b)
                else:
                    a3, b3 = a.reshape(s.shape_a[1:]), b.reshape(s.shape_b[1:])
                out = torch.matmul(a3, b3)
                o3 = tuple(out.shape)
                out = out.reshape(s.out_shape)
                if s.out_perm is not None:
                    out = out.permute(s.out_perm)
                saved.append((ia, ib, sha, shb, pa, pb, a3, b3, o3, n + t))
                ops.append(out)
                ids.append(n + t)
            (out,) = ops
            if plan._final_perm is not None:
                out = out.permute(plan._final_perm)
            ctx.plan = plan
            ctx.saved = saved
            ctx.nin = n
            return out

        @staticmethod
        def backward(ctx, g):
            plan, saved, n = ctx.plan, ctx.saved, ctx.nin
            need = list(ctx.needs_input_grad[1:])
            # which nodes need a gradient: inputs as autograd says, a step if any operand does
            req = {k: need[k] for k in range(n)}
            for ia, ib, *_, oid in saved:
                req[oid] = req[ia] or req[ib]
            if plan._final_perm is not None:
                g = g.permute(_inv(plan._final_perm))
            grads = {saved[-1][-1] if saved else 0: g}
            for s, (ia, ib, sha, shb, pa, pb, a3, b3, o3, oid) in zip(
                reversed(plan._steps), reversed(saved)
            ):
                go = grads.pop(oid)
                if s.out_perm is not None:
                    go = go.permute(_inv(s.out_perm))
                go = go.reshape(o3)
                for which, idx, sh, p, perm, sq, sm in (
                    ("a", ia, sha, pa, s.perm_a, s.squeeze_a, s.sum_a),
                    ("b", ib, shb, pb, s.perm_b, s.squeeze_b, s.sum_b),
                ):
                    if not req[idx]:
                        continue
                    if which == "a":
                        gx = torch.matmul(go, b3.transpose(-1, -2))
                    else:
                        gx = torch.matmul(a3.transpose(-1, -2), go)
                    gx = gx.reshape(p)
                    if perm != tuple(range(len(perm))):
                        gx = gx.permute(_inv(perm))
                    if sq is not None:
                        gx = gx.reshape(sh)
                    elif sm:
                        for ax in sorted(sm):
                            gx = gx.unsqueeze(ax)
                        gx = gx.expand(sh)
                    if idx in grads:
                        grads[idx] = grads[idx] + gx
                    else:
                        grads[idx] = gx
            return (None,) + tuple(grads.get(k) for k in range(n))

    return PlanFunction


def plan_function(args):
    import torch

    from tedepr.backends.torch import CPLinear, TRLinear, TTLinear, TuckerLinear
    from tedepr.backends.torch import layers as tl

    fn = _plan_function()
    torch.manual_seed(0)
    for cls, kw in ((TTLinear, {"rank": 3}), (TRLinear, {"rank": 2}), (CPLinear, {"rank": 3}),
                    (TuckerLinear, {"rank": 2})):  # fmt: skip
        lay = cls(24, 10, in_modes=(4, 6), out_modes=(2, 5), **kw).double()
        for strategy in ("chain", "optimal"):
            plan = tl._PLANS[tl._plan_index(lay._plan_key(), 5, strategy)]
            x = torch.randn((5,) + lay.in_modes, dtype=torch.double, requires_grad=True)
            cores = [c.detach().clone().requires_grad_() for c in lay.cores]
            ok = torch.autograd.gradcheck(lambda *a, p=plan: fn.apply(p, *a), (x, *cores))
            same = torch.equal(
                fn.apply(plan, x, *cores), plan.execute((x, *cores), xp=tl.TORCH_OPS)
            )
            print(f"  {cls.__name__} {strategy}: gradcheck {ok}, forward identical {same}")
    orig = tl._TensorizedLinear._matmul

    def fused_matmul(self, x2):
        b = x2.shape[0]
        plan = self._plan(b, x2)
        if not torch.is_grad_enabled() or not eligible(plan):
            return orig(self, x2)
        y = fn.apply(plan, x2.reshape((b,) + self._in_modes), *self.cores)
        return y.reshape(b, self.out_features)

    _, pai, small, x, y = _torch_models(args.sparsity)
    fused = copy.deepcopy(small.model)
    for m in fused.modules():
        if isinstance(m, tl._TensorizedLinear):
            m._matmul = fused_matmul.__get__(m)

    def step_of(model):
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

        def step():
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

        return step

    fns = {
        "PaI": step_of(copy.deepcopy(pai)),
        "compact (autograd)": step_of(copy.deepcopy(small.model)),
        "compact (one Function per layer)": step_of(fused),
    }
    print(f"LeNet-300-100 training step at {args.sparsity:.1%}, batch 128:")
    _print(_times(fns, args.rounds // 2))


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "experiment", choices=["layer", "step-compile", "split", "jax-plans", "plan-function"]
    )
    ap.add_argument("--sparsity", type=float, default=0.99)
    ap.add_argument("--rounds", type=int, default=200)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    run = {
        "layer": layer,
        "step-compile": step_compile,
        "split": split,
        "jax-plans": jax_plans,
        "plan-function": plan_function,
    }
    run[args.experiment](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
