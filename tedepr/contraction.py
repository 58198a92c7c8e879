"""Planning and executing the multi-step chain contraction ``y = x @ W`` for a factorised ``W``.

Planning happens in Python on shapes only: opt_einsum finds a pairwise order
(``contract_path(..., shapes=True)``) and tedepr turns each pairwise step into a fixed recipe of
``permute_dims`` / ``reshape`` / ``matmul`` / ``sum`` calls, all of them array-API standard. Plans are
cached by (network, shapes, dtype, strategy), so a layer's forward pass never plans. Executing a plan only
calls the namespace of the arrays, so the same code runs on NumPy, PyTorch (autograd), JAX (``jax.jit``)
and array_api_strict.

Strategies:

* ``"chain"`` — the sequential multi-step chain: the input absorbs one core after another, in the
  format's natural order (TT: G_1, G_2, ...; Tucker: in-factors, core, out-factors; CP: factor by factor).
* ``"optimal"`` — opt_einsum's optimal (or dynamic-programming for many cores) path over input and cores.
* ``"reconstruct"`` — build the dense ``W`` from the cores (planned the same way), then one matmul.
* ``"auto"`` — the strategy with the lowest cost ``flops + step_overhead * steps`` (ties go to the
  smaller largest intermediate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import array_api_compat
import opt_einsum

from .formats import Factorized
from .namespace import check_namespace, get_namespace, is_array

__all__ = [
    "STRATEGIES",
    "ContractionPlan",
    "plan_contraction",
    "contract",
    "reconstruct",
    "plan_reconstruction",
    "einsum",
]

STRATEGIES = ("auto", "chain", "optimal", "reconstruct")
# Extra cost per pairwise step, in FLOP-equivalents: a kernel launch and its permutes cost about as much
# as a small matmul. Used only by strategy="auto".
STEP_OVERHEAD_FLOPS = 2.0e4
# Cost of moving one element (a permute copy or writing an intermediate), in FLOP-equivalents: GEMM
# runs at tens of FLOPs per nanosecond while a strided copy moves about one element per nanosecond.
# Calibrated on CPU with benchmarks/strategies.py (docs/method.md §5).
MEMORY_FLOPS_PER_ELEMENT = 20.0


@dataclass(frozen=True)
class _Step:
    """One pairwise contraction, fully resolved to standard array-API calls."""

    i: int
    j: int
    sum_a: tuple[int, ...]  # axes of a summed away before the product (labels only in a)
    sum_b: tuple[int, ...]
    perm_a: tuple[int, ...]  # to (batch, free_a, contracted)
    perm_b: tuple[int, ...]  # to (batch, contracted, free_b)
    shape_a: tuple[int, int, int]
    shape_b: tuple[int, int, int]
    batched: bool
    out_shape: tuple[int, ...]  # (batch dims, free_a dims, free_b dims)
    out_perm: tuple[int, ...] | None  # to the step's output label order
    moved: int = 0  # elements copied by the permutes plus the elements written
    # when every axis summed away has size 1 (a TT's boundary bond): the shape without them, so the
    # "sum" is a free reshape instead of a reduction kernel (and an autograd node)
    squeeze_a: tuple[int, ...] | None = None
    squeeze_b: tuple[int, ...] | None = None


@dataclass(frozen=True)
class _Diagonal:
    """The diagonal of two equal axes of one operand, whose label repeats (a one-core ring's trace)."""

    operand: int
    perm: tuple[int, ...]  # the two axes last
    shape: tuple[int, ...]  # the two axes merged into one of size * size
    size: int


@dataclass(frozen=True)
class ContractionPlan:
    """A planned contraction of several operands into one.

    Attributes: ``equation`` (einsum form), ``strategy``, ``path`` (opt_einsum pairwise path),
    ``flops`` (opt_einsum's FLOP count), ``largest_intermediate`` (elements), ``steps``.
    For ``"reconstruct"``, ``flops`` includes building the dense matrix and the final matmul.
    """

    equation: str
    strategy: str
    path: tuple[tuple[int, int], ...]
    flops: int
    largest_intermediate: int
    _steps: tuple[_Step, ...] = field(repr=False)
    _final_perm: tuple[int, ...] | None = field(repr=False)
    # strategy "reconstruct": the plan that builds W, and the matmul shape
    _reconstruct: ContractionPlan | None = field(default=None, repr=False)
    # taken before the pairwise steps; a single operand is then summed over ``_sum_axes``
    _diagonals: tuple[_Diagonal, ...] = field(default=(), repr=False)
    _sum_axes: tuple[int, ...] = field(default=(), repr=False)
    #: elements copied by permutes plus elements of every intermediate written
    memory: int = 0

    @property
    def num_steps(self) -> int:
        # "reconstruct" adds its final matmul to the steps that build W
        return len(self._steps) + (self._reconstruct.num_steps + 1 if self._reconstruct else 0)

    @property
    def cost(self) -> float:
        """The cost model of ``strategy="auto"``: FLOPs, plus memory traffic and a fixed overhead per
        step, in FLOP-equivalents."""
        return (
            self.flops
            + MEMORY_FLOPS_PER_ELEMENT * self.memory
            + STEP_OVERHEAD_FLOPS * self.num_steps
        )

    def execute(self, operands, xp=None):
        """Run the plan on ``operands`` (input first, then cores, as planned)."""
        xp = get_namespace(*operands, xp=xp)
        if self._reconstruct is not None:
            x, cores = operands[0], operands[1:]
            w = self._reconstruct.execute(cores, xp=xp)
            x2 = xp.reshape(x, (x.shape[0], -1))
            return xp.matmul(x2, xp.reshape(w, (x2.shape[1], -1)))
        ops = list(operands)
        for d in self._diagonals:
            a = xp.reshape(xp.permute_dims(ops[d.operand], d.perm), d.shape)
            ops[d.operand] = a[..., :: d.size + 1]
        if self._sum_axes:
            ops[0] = xp.sum(ops[0], axis=self._sum_axes)
        for s in self._steps:
            a, b = ops[s.i], ops[s.j]
            for k in sorted((s.i, s.j), reverse=True):
                del ops[k]
            ops.append(_pairwise(xp, a, b, s))
        (out,) = ops
        if self._final_perm is not None:
            out = xp.permute_dims(out, self._final_perm)
        return out


def _pairwise(xp, a, b, s: _Step):
    if s.squeeze_a is not None:
        a = xp.reshape(a, s.squeeze_a)
    elif s.sum_a:
        a = xp.sum(a, axis=s.sum_a)
    if s.squeeze_b is not None:
        b = xp.reshape(b, s.squeeze_b)
    elif s.sum_b:
        b = xp.sum(b, axis=s.sum_b)
    if s.perm_a != tuple(range(len(s.perm_a))):
        a = xp.permute_dims(a, s.perm_a)
    if s.perm_b != tuple(range(len(s.perm_b))):
        b = xp.permute_dims(b, s.perm_b)
    if s.batched:
        out = xp.matmul(xp.reshape(a, s.shape_a), xp.reshape(b, s.shape_b))
    else:
        out = xp.matmul(xp.reshape(a, s.shape_a[1:]), xp.reshape(b, s.shape_b[1:]))
    out = xp.reshape(out, s.out_shape)
    if s.out_perm is not None:
        out = xp.permute_dims(out, s.out_perm)
    return out


def _resolve_step(i, j, la, lb, lout, sizes) -> _Step:
    sa, sb, so = set(la), set(lb), set(lout)
    sum_a = tuple(k for k, c in enumerate(la) if c not in sb and c not in so)
    sum_b = tuple(k for k, c in enumerate(lb) if c not in sa and c not in so)

    def squeeze(labels, summed):
        if not summed or any(sizes[labels[k]] != 1 for k in summed):
            return None
        return tuple(sizes[c] for k, c in enumerate(labels) if k not in summed)

    squeeze_a, squeeze_b = squeeze(la, sum_a), squeeze(lb, sum_b)
    la = [c for c in la if c in sb or c in so]
    lb = [c for c in lb if c in sa or c in so]
    batch = [c for c in la if c in sb and c in so]
    contracted = [c for c in la if c in sb and c not in so]
    free_a = [c for c in la if c not in sb]
    free_b = [c for c in lb if c not in sa]
    perm_a = tuple(la.index(c) for c in batch + free_a + contracted)
    perm_b = tuple(lb.index(c) for c in batch + contracted + free_b)

    def size(labels):
        return math.prod(sizes[c] for c in labels)

    inter = batch + free_a + free_b
    out_perm = tuple(inter.index(c) for c in lout)
    n_a, n_b, n_out = size(la), size(lb), size(inter)
    identity = tuple(range(len(perm_a))), tuple(range(len(perm_b))), tuple(range(len(out_perm)))
    moved = (
        n_out * (1 + (out_perm != identity[2]))
        + n_a * (perm_a != identity[0])
        + n_b * (perm_b != identity[1])
    )
    return _Step(
        i=i,
        j=j,
        sum_a=sum_a,
        sum_b=sum_b,
        perm_a=perm_a,
        perm_b=perm_b,
        shape_a=(size(batch), size(free_a), size(contracted)),
        shape_b=(size(batch), size(contracted), size(free_b)),
        batched=bool(batch),
        out_shape=tuple(sizes[c] for c in inter),
        out_perm=None if out_perm == tuple(range(len(out_perm))) else out_perm,
        moved=moved,
        squeeze_a=squeeze_a,
        squeeze_b=squeeze_b,
    )


def _chain_path(order: tuple[int, ...], n_operands: int) -> list[tuple[int, int]]:
    """An opt_einsum path contracting operand ``order[0]`` with ``order[1]``, then each next one."""
    remaining = list(range(n_operands))
    path, current = [], order[0]
    for nxt in order[1:]:
        i, j = sorted((remaining.index(current), remaining.index(nxt)))
        path.append((i, j))
        del remaining[j], remaining[i]
        remaining.append(("tmp", len(path)))
        current = remaining[-1]
    return path


@lru_cache(maxsize=4096)
def _plan(
    labels: tuple[tuple[int, ...], ...],
    out: tuple[int, ...],
    shapes: tuple[tuple[int, ...], ...],
    optimize,
    strategy: str,
    sort_outputs: bool = False,
) -> ContractionPlan:
    """The plan of one contraction; ``sort_outputs`` orders every intermediate's axes as in ``out``
    (bond axes last), so the result needs no final permute: each step permutes its own, smaller,
    output instead of one strided copy of the whole result with many small axes at the end."""
    sizes: dict[int, int] = {}
    for lab, shp in zip(labels, shapes):
        for c, n in zip(lab, shp):
            if sizes.setdefault(c, n) != n:
                raise ValueError(f"index {c} has inconsistent sizes {sizes[c]} and {n}")
    sym = {c: opt_einsum.get_symbol(k) for k, c in enumerate(sorted(sizes))}

    def equation(labels):
        terms = ("".join(sym[c] for c in lab) for lab in labels)
        return ",".join(terms) + "->" + "".join(sym[c] for c in out)

    eq = equation(labels)
    labels, diagonals = _take_diagonals(labels, sizes)
    if len(labels) == 1:
        (lab,) = labels
        sum_axes = tuple(k for k, c in enumerate(lab) if c not in out)
        kept = [c for c in lab if c in out]
        perm = tuple(kept.index(c) for c in out)
        return ContractionPlan(
            eq,
            strategy,
            (),
            0,
            math.prod(shapes[0]),
            (),
            None if perm == tuple(range(len(perm))) else perm,
            _diagonals=diagonals,
            _sum_axes=sum_axes,
        )
    shapes = tuple(tuple(sizes[c] for c in lab) for lab in labels)
    path, info = opt_einsum.contract_path(equation(labels), *shapes, shapes=True, optimize=optimize)
    steps = []
    current = list(labels)
    for i, j in path:
        la, lb = current[i], current[j]
        rest = [lab for k, lab in enumerate(current) if k not in (i, j)]
        needed = set(out).union(*map(set, rest)) if rest else set(out)
        lout = tuple(dict.fromkeys(c for c in la + lb if c in needed))
        if sort_outputs:
            rank = {c: k for k, c in enumerate(out)}
            lout = tuple(sorted(lout, key=lambda c: rank.get(c, len(rank))))
        steps.append(_resolve_step(i, j, la, lb, lout, sizes))
        current = rest + [lout]
    (final,) = current
    final_perm = tuple(final.index(c) for c in out)
    return ContractionPlan(
        equation=eq,
        strategy=strategy,
        path=tuple(tuple(p) for p in path),
        flops=int(info.opt_cost),
        largest_intermediate=int(info.largest_intermediate),
        _steps=tuple(steps),
        _final_perm=None if final_perm == tuple(range(len(final_perm))) else final_perm,
        _diagonals=diagonals,
        memory=sum(st.moved for st in steps)
        + (math.prod(sizes[c] for c in out) if final_perm != tuple(range(len(final_perm))) else 0),
    )


def _take_diagonals(labels, sizes):
    """Labels after taking the diagonal of every label repeated within one operand, and the recipes.

    A tensor ring of one core is ``trace(G[:, i, j, :])``: its core carries the ring bond twice. The
    pairwise steps need distinct labels per operand, so the diagonal is taken first (by a strided
    slice of the two merged axes, which every array-API library supports).
    """
    out, diagonals = [], []
    for k, lab in enumerate(labels):
        lab = tuple(lab)
        while len(set(lab)) < len(lab):
            c = next(c for c in lab if lab.count(c) > 1)
            i = lab.index(c)
            j = lab.index(c, i + 1)
            keep = tuple(a for a in range(len(lab)) if a not in (i, j))
            diagonals.append(
                _Diagonal(
                    operand=k,
                    perm=keep + (i, j),
                    shape=tuple(sizes[lab[a]] for a in keep) + (sizes[c] * sizes[c],),
                    size=sizes[c],
                )
            )
            lab = tuple(lab[a] for a in keep) + (c,)
        out.append(lab)
    return tuple(out), tuple(diagonals)


def _core_shapes(f: Factorized) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(int(n) for n in c.shape) for c in f.cores)


def _network_key(f: Factorized):
    net = f.network()
    return net.operands, net.in_labels + net.out_labels, net.chain


@lru_cache(maxsize=4096)
def _plan_reconstruction(operands, dense_labels, shapes) -> ContractionPlan:
    optimize = "optimal" if len(operands) <= 6 else "dp"
    return _plan(operands, dense_labels, shapes, optimize, "reconstruct", sort_outputs=True)


def plan_reconstruction(f: Factorized) -> ContractionPlan:
    """The plan that builds the dense weight tensor ``(n_1..n_p, m_1..m_q)`` from ``f.cores``."""
    operands, dense, _ = _network_key(f)
    return _plan_reconstruction(operands, dense, _core_shapes(f))


def _input_last(path) -> bool:
    """Whether an opt_einsum ``path`` leaves operand 0 (the input) alone until its last step."""
    pos = 0
    for i, j in path[:-1]:
        if pos in (i, j):
            return False
        pos -= (i < pos) + (j < pos)
    return len(path) > 1


@lru_cache(maxsize=4096)
def _plan_for(operands, dense_labels, chain, in_modes, out_modes, shapes, batch, strategy):
    net_in = dense_labels[: len(in_modes)]
    net_out = dense_labels[len(in_modes) :]
    b = max(max(lab) for lab in operands) + 1  # label of the batch axis
    labels = ((b,) + net_in,) + operands
    out = (b,) + net_out
    all_shapes = ((batch,) + in_modes,) + shapes
    if strategy == "chain":
        return _plan(
            labels,
            out,
            all_shapes,
            tuple(_chain_path((0,) + tuple(1 + c for c in chain), len(labels))),
            "chain",
        )
    if strategy == "optimal":
        plan = _plan(labels, out, all_shapes, "optimal" if len(labels) <= 6 else "dp", "optimal")
        if not _input_last(plan.path):
            return plan
        # The optimal path builds W and multiplies last: that is "reconstruct", whose W comes out
        # in (in, out) order; the generic steps would interleave the modes and pay a strided
        # copy of all of W (measured 2x slower fwd+bwd for TT 784->300 at batch 128).
    if strategy in ("optimal", "reconstruct"):
        rec = _plan_reconstruction(operands, dense_labels, shapes)
        n_in, n_out = math.prod(in_modes), math.prod(out_modes)
        return ContractionPlan(
            equation=rec.equation,
            strategy=strategy,
            path=rec.path,
            flops=rec.flops + 2 * batch * n_in * n_out,
            largest_intermediate=max(rec.largest_intermediate, n_in * n_out, batch * n_out),
            _steps=(),
            _final_perm=None,
            _reconstruct=rec,
            memory=rec.memory + batch * n_out,
        )
    candidates = [
        _plan_for(operands, dense_labels, chain, in_modes, out_modes, shapes, batch, s)
        for s in ("chain", "optimal", "reconstruct")
    ]
    return min(candidates, key=lambda p: (p.cost, p.largest_intermediate))


def plan_contraction(f: Factorized, batch: int = 1, strategy: str = "auto") -> ContractionPlan:
    """Plan ``x @ W`` for ``batch`` rows of ``x`` (cached: repeated calls cost a dictionary lookup).

    Parameters
    ----------
    f : Factorized
        The factorised matrix (only its shapes are used).
    batch : int
        Number of rows of ``x`` after flattening its leading dimensions.
    strategy : {"auto", "chain", "optimal", "reconstruct"}
    """
    if not isinstance(f, Factorized):
        raise TypeError(f"f must be a tedepr Factorized matrix; got {type(f).__name__}")
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise ValueError(
            f"strategy must be one of {', '.join(map(repr, STRATEGIES))}; got {strategy!r}"
        )
    if isinstance(batch, bool) or not isinstance(batch, int):
        raise TypeError(f"batch must be a non-negative int; got {type(batch).__name__}")
    if batch < 0:
        raise ValueError(f"batch must be a non-negative int; got {batch!r}")
    operands, dense, chain = _network_key(f)
    return _plan_for(
        operands, dense, chain, f.in_modes, f.out_modes, _core_shapes(f), max(batch, 1), strategy
    )


def reconstruct(f: Factorized):
    """The dense matrix ``(N_in, N_out)`` of ``f``, in the cores' array library."""
    xp = get_namespace(*f.cores)
    w = plan_reconstruction(f).execute(f.cores, xp=xp)
    return xp.reshape(w, (f.in_features, f.out_features))


def contract(x: Any, f: Factorized, *, strategy: str = "auto", xp: Any = None):
    """``x @ f.to_dense()`` without forming the dense matrix unless the plan says it is cheaper.

    Parameters
    ----------
    x : array, shape ``(..., N_in)``
        Any leading batch dimensions; same array library as ``f.cores``.
    f : Factorized
    strategy : {"auto", "chain", "optimal", "reconstruct"}
    xp : namespace, optional
        Skip namespace inference.

    Returns
    -------
    array, shape ``(..., N_out)``
    """
    if not isinstance(f, Factorized):
        raise TypeError(f"f must be a tedepr Factorized matrix; got {type(f).__name__}")
    if not is_array(x):
        raise TypeError(
            f"x must be an array (NumPy, torch, JAX or any array-API library); got "
            f"{type(x).__name__}"
        )
    check_namespace(xp)
    try:
        xp = get_namespace(x, *f.cores, xp=xp)
    except TypeError as exc:
        raise TypeError(f"x and f.cores must come from the same array library: {exc}") from None
    shape = tuple(x.shape)
    if not shape or shape[-1] != f.in_features:
        raise ValueError(
            f"x must have shape (..., {f.in_features}) to multiply a {f.shape[0]}x{f.shape[1]} "
            f"{f.format.upper()} matrix; got shape {shape}"
        )
    lead = shape[:-1]
    batch = math.prod(lead)
    if batch == 0:
        return xp.zeros(lead + (f.out_features,), dtype=x.dtype, device=array_api_compat.device(x))
    plan = plan_contraction(f, batch, strategy)
    x2 = xp.reshape(x, (max(batch, 1),) + f.in_modes)
    y = plan.execute((x2,) + tuple(f.cores), xp=xp)
    return xp.reshape(y, lead + (f.out_features,))


def einsum(operands, labels, out_labels, *, xp: Any = None):
    """A planned einsum over integer index labels, executed with array-API calls only.

    ``labels[k]`` labels the axes of ``operands[k]``; ``out_labels`` the result's. Used by the
    decompositions (mode products, MTTKRP); the plan is cached like every other.
    """
    xp = get_namespace(*operands, xp=xp)
    labels = tuple(tuple(lab) for lab in labels)
    shapes = tuple(tuple(int(n) for n in op.shape) for op in operands)
    optimize = "optimal" if len(operands) <= 6 else "dp"
    return _plan(labels, tuple(out_labels), shapes, optimize, "optimal").execute(
        list(operands), xp=xp
    )
