"""Planned chain contraction against the one-shot NumPy reference, on every array library.

The oracle for ``contract(x, f)`` is ``reference.einsum_reference`` (one ``np.einsum`` without path
optimisation) and ``reference.matmul_reference(x, reference.to_dense(...))``; gradients are checked
against the exact multilinear expansion through ``reference.to_dense`` (see `expected_grads`).
"""

from __future__ import annotations

import array_api_compat
import numpy as np
import pytest
from conftest import (
    DTYPES,
    assert_close,
    check_examples,
    draw_array,
    factorized_specs,
    lib_name,
    namespace,
    rounded,
    to_numpy,
    to_xp,
)
from hypothesis import given
from hypothesis import strategies as st

import reference
import tedepr
from tedepr.contraction import plan_contraction

STRATEGIES = ("chain", "optimal", "reconstruct", "auto")
leading = st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple)


def reference_outputs(spec, x, cores):
    """Both oracles for ``x @ W``: one-shot einsum, and matmul with the loop reconstruction."""
    ref_cores = spec.reference_cores(cores)
    by_einsum = reference.einsum_reference(x, spec.format, ref_cores, spec.in_modes, spec.out_modes)
    w = reference.to_dense(spec.format, ref_cores, spec.in_modes, spec.out_modes)
    by_matmul = reference.matmul_reference(x, w)
    return by_einsum, by_matmul


def error_scale(spec, x, cores):
    """The same contraction on ``|x|`` and ``|cores|``: the scale of the standard rounding-error
    bound of a sum of products, ``|fl(y) − y| ≤ c·u·(|x|·|cores|…)`` entry by entry.

    Measuring the error relative to ``max|y|`` instead fails on cancellation: a single output that
    sums nine terms of size ~1 to ~0.01 loses five digits in any float32 order (a drawn Tucker
    case, in_modes (1, 3, 3), out_modes (1,), gave 1.5e-5 > 1e-5). A wrong contraction is still
    O(1) off on this scale.
    """
    return reference.einsum_reference(
        np.abs(x),
        spec.format,
        spec.reference_cores([np.abs(c) for c in cores]),
        spec.in_modes,
        spec.out_modes,
    )


@st.composite
def contraction_cases(draw, **spec_options):
    spec = draw(factorized_specs(**spec_options))
    lead = draw(leading)
    x = draw_array(draw, lead + (spec.n_in,))
    return spec, x


def test_contract_matches_reference(xp):
    def check(case, dtype):
        spec, x = case
        f = spec.build(xp, dtype)
        xs = to_xp(xp, x, dtype)
        x64, cores64 = rounded(x, dtype), spec.rounded_cores(dtype)
        by_einsum, by_matmul = reference_outputs(spec, x64, cores64)
        scale = error_scale(spec, x64, cores64)
        for strategy in STRATEGIES:
            y = tedepr.contract(xs, f, strategy=strategy)
            assert_close(y, by_einsum, dtype, xp=xp, scale=scale)
            assert_close(y, by_matmul, dtype, xp=xp, scale=scale)
        # the inputs are not mutated
        np.testing.assert_array_equal(to_numpy(xs), np.asarray(x, dtype=dtype))
        for c, c0 in zip(f.cores, spec.cores):
            np.testing.assert_array_equal(to_numpy(c), np.asarray(c0, dtype=dtype))

    check_examples(xp, check, case=contraction_cases(), dtype=st.sampled_from(DTYPES))


@given(spec=factorized_specs(), batch=st.integers(1, 300))
def test_plans(spec, batch):
    f = spec.build(np, "float64")
    plans = {s: plan_contraction(f, batch, s) for s in ("chain", "optimal", "reconstruct")}
    auto = plan_contraction(f, batch, "auto")
    # "auto" is the cheapest under its documented cost model
    assert auto.cost == min(p.cost for p in plans.values())
    assert auto.strategy in plans
    # the chain absorbs one core per step; planning is cached (the same object comes back)
    assert plans["chain"].num_steps == len(f.cores)
    assert plan_contraction(f, batch, "chain") is plans["chain"]
    # the optimal path never costs more than the fixed chain
    assert plans["optimal"].flops <= plans["chain"].flops


def _device_for(xp):
    if lib_name(xp) == "array_api_strict":
        # a second device: every array the contraction creates must follow its input there
        return xp.Device("device1")
    return None


def test_zero_and_nondefault_device(xp):
    def check(spec, lead):
        device = _device_for(xp)
        f = spec.build(xp, "float64", device=device)
        x = np.random.default_rng(0).standard_normal(lead + (spec.n_in,))
        xs = to_xp(xp, x, "float64", device=device)
        expected = device if device is not None else array_api_compat.device(xs)
        by_einsum, _ = reference_outputs(spec, x, spec.cores)
        for strategy in STRATEGIES:
            assert_close(
                tedepr.contract(xs, f, strategy=strategy),
                by_einsum,
                "float64",
                xp=xp,
                device=expected,
            )

    lead = st.sampled_from([(0,), (2, 0), (0, 3), (2,), (1, 2)])
    check_examples(xp, check, spec=factorized_specs(max_modes=2), lead=lead)


# ----------------------------------------------------------------------------- gradients
def expected_grads(spec, x, g, cores):
    """Exact gradients of ``L = Σ g ⊙ (x @ W(cores))`` with respect to every core, in NumPy.

    ``∂L/∂W = x2ᵀ g2`` (leading dims flattened). Every format is linear in each core separately,
    so ``∂L/∂G_k[j] = ⟨∂L/∂W, W(G_k := e_j)⟩``, ``W`` from the reference's loop reconstruction.
    """
    dl_dw = x.reshape(-1, spec.n_in).T @ g.reshape(-1, spec.n_out)
    grads = []
    for k, core in enumerate(cores):
        grad = np.zeros_like(core)
        for idx in np.ndindex(core.shape):
            basis = np.zeros_like(core)
            basis[idx] = 1.0
            probe = list(cores)
            probe[k] = basis
            w = reference.to_dense(
                spec.format, spec.reference_cores(probe), spec.in_modes, spec.out_modes
            )
            grad[idx] = np.sum(dl_dw * w)
        grads.append(grad)
    return grads


@st.composite
def gradient_cases(draw):
    spec = draw(factorized_specs(max_modes=2, max_mode=3))
    lead = draw(leading)
    x = draw_array(draw, lead + (spec.n_in,))
    g = draw_array(draw, lead + (spec.n_out,))
    return spec, x, g


@pytest.mark.torch
def test_torch_autograd_matches_multilinear_gradient():
    torch = pytest.importorskip("torch")
    xp = namespace("torch")

    def check(case):
        spec, x, g = case
        expected = expected_grads(spec, x, g, spec.cores)
        expected_dx = (
            g.reshape(-1, spec.n_out)
            @ reference.to_dense(
                spec.format, spec.reference_cores(), spec.in_modes, spec.out_modes
            ).T
        )
        for strategy in STRATEGIES:
            cores = [torch.tensor(c, requires_grad=True) for c in spec.cores]
            xt = torch.tensor(x, requires_grad=True)
            y = tedepr.contract(xt, spec.build(xp, "float64", cores), strategy=strategy)
            torch.sum(torch.tensor(g) * y).backward()
            for c, e in zip(cores, expected):
                assert_close(c.grad, e, "float64", xp=xp)
            assert_close(xt.grad, expected_dx.reshape(x.shape), "float64", xp=xp)

    check_examples(xp, check, case=gradient_cases())


@pytest.mark.jax
def test_jax_jit_and_grad():
    jax = pytest.importorskip("jax")
    jnp = namespace("jax")

    def check(case, dtype):
        spec, x, g = case
        cores = [to_xp(jnp, c, dtype) for c in spec.cores]
        xj, gj = to_xp(jnp, x, dtype), to_xp(jnp, g, dtype)

        def forward(x, *cores):
            # the factorised matrix is rebuilt from traced cores inside the compiled function
            f = tedepr.from_cores(
                spec.format, cores, spec.in_modes, spec.out_modes, factored=spec.factored
            )
            return [tedepr.contract(x, f, strategy=s) for s in STRATEGIES]

        def loss(cores, strategy):
            f = tedepr.from_cores(
                spec.format, cores, spec.in_modes, spec.out_modes, factored=spec.factored
            )
            return jnp.sum(gj * tedepr.contract(xj, f, strategy=strategy))

        by_einsum, _ = reference_outputs(spec, rounded(x, dtype), spec.rounded_cores(dtype))
        for y in jax.jit(forward)(xj, *cores):
            assert_close(y, by_einsum, dtype, xp=jnp)
        if dtype == "float64":
            expected = expected_grads(spec, x, g, spec.cores)
            for strategy in ("chain", "reconstruct"):
                grads = jax.jit(jax.grad(loss), static_argnums=1)(cores, strategy)
                for got, e in zip(grads, expected):
                    assert_close(got, e, "float64", xp=jnp)

    check_examples(jnp, check, case=gradient_cases(), dtype=st.sampled_from(DTYPES))


# ----------------------------------------------------------------------------- planned einsum
@st.composite
def einsum_cases(draw):
    """A random tensor network: 1-4 operands over a few labels (some repeated within an operand: a
    trace or diagonal), with any subset of the labels kept, in any order (none: a scalar)."""
    n_labels = draw(st.integers(1, 5))
    sizes = draw(st.lists(st.integers(1, 3), min_size=n_labels, max_size=n_labels))
    label = st.integers(0, n_labels - 1)
    labels = draw(
        st.lists(st.lists(label, min_size=1, max_size=4).map(tuple), min_size=1, max_size=4)
    )
    present = sorted({c for lab in labels for c in lab})
    out = tuple(draw(st.permutations(present))[: draw(st.integers(0, len(present)))])
    operands = [draw_array(draw, tuple(sizes[c] for c in lab)) for lab in labels]
    return operands, labels, out


def test_planned_einsum_matches_numpy_einsum(xp):
    def check(case, dtype):
        operands, labels, out = case
        letters = "abcdefgh"
        eq = ",".join("".join(letters[c] for c in lab) for lab in labels) + "->"
        eq += "".join(letters[c] for c in out)
        inputs = [rounded(a, dtype) for a in operands]
        expected = np.einsum(eq, *inputs, optimize=False)
        got = tedepr.einsum([to_xp(xp, a, dtype) for a in operands], labels, out, xp=xp)
        # A drawn network may reduce everything to one scalar that cancels to near 0, below
        # float32's reach relative to itself; a sum's rounding error is bounded relative to its
        # terms' magnitudes (Higham, Accuracy and Stability, §4.2): float32 is measured by those.
        scale = None
        if dtype == "float32":
            scale = np.einsum(eq, *[np.abs(a) for a in inputs], optimize=False)
        assert_close(got, expected, dtype, xp=xp, scale=scale)

    check_examples(xp, check, case=einsum_cases(), dtype=st.sampled_from(DTYPES))
