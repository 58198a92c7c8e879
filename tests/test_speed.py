"""The speed work of issue 9: cached float masks, plan caching, graph-break-free layers, autotune,
and the benchmark entry point. Correctness only; timings live in benchmarks (docs/performance.md)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from tedepr.backends.torch import TTLinear, apply_masks, get_masks  # noqa: E402

pytestmark = pytest.mark.torch


def _masked_linear(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 5))
    mask = torch.rand(5, 6) > 0.5
    apply_masks(model, {"0.weight": mask})
    return model, mask


def test_mask_factor_follows_in_place_mask_changes():
    model, mask = _masked_linear()
    original = model[0].parametrizations.weight.original
    assert torch.equal(model[0].weight, original * mask)
    # apply_masks again writes the new mask into the existing buffer (copy_)
    new = ~mask
    with torch.no_grad():
        original.copy_(torch.randn(5, 6))
    apply_masks(model, {"0.weight": new})
    assert torch.equal(model[0].weight, original * new)
    assert torch.equal(model[0].weight != 0, new & (original != 0))
    # load_state_dict writes the buffer in place too
    other, other_mask = _masked_linear(seed=1)
    model.load_state_dict(other.state_dict())
    assert torch.equal(get_masks(model)["0.weight"], other_mask)
    assert torch.equal(model[0].weight, other[0].weight)


def test_mask_factor_follows_dtype_and_buffer_replacement():
    model, mask = _masked_linear()
    w32 = model[0].weight
    model.double()
    w64 = model[0].weight
    assert w64.dtype == torch.float64
    assert torch.equal(w64.float(), w32)
    # a reassigned buffer (another tensor) is picked up
    p = model[0].parametrizations.weight[0]
    p.mask = torch.zeros_like(mask)
    assert torch.count_nonzero(model[0].weight) == 0


def test_mask_gradient_is_zero_on_pruned_entries():
    model, mask = _masked_linear()
    model(torch.randn(3, 6)).sum().backward()
    grad = model[0].parametrizations.weight.original.grad
    assert torch.all(grad[~mask] == 0)
    assert torch.any(grad[mask] != 0)


# ---------------------------------------------------------------------------- plans


def test_plan_made_once_per_batch_and_shared_by_equal_layers(monkeypatch):
    from tedepr.backends.torch import layers

    calls = []
    real = layers.plan_contraction

    def counting(f, batch, strategy):
        calls.append((batch, strategy))
        return real(f, batch, strategy)

    monkeypatch.setattr(layers, "plan_contraction", counting)
    monkeypatch.setattr(layers, "_PLANS", [])
    monkeypatch.setattr(layers, "_PLAN_INDEX", {})
    a = TTLinear(24, 10, rank=3, in_modes=(4, 6), out_modes=(2, 5))
    for _ in range(3):
        a(torch.randn(3, 24))
    a(torch.randn(2, 3, 24))  # 6 rows
    assert calls == [(3, "auto"), (6, "auto")]
    b = TTLinear(24, 10, rank=3, in_modes=(4, 6), out_modes=(2, 5))
    b(torch.randn(3, 24))
    assert len(calls) == 2  # same shapes: the shared plan, no planning


@pytest.mark.parametrize("strategy", ["auto", "chain", "optimal", "reconstruct", "autotune"])
def test_compile_fullgraph_no_graph_break(strategy):
    torch._dynamo.reset()
    torch.manual_seed(0)
    layer = TTLinear(24, 10, rank=3, in_modes=(4, 6), out_modes=(2, 5), strategy=strategy)
    apply_masks(layer, {"core_1": torch.rand(layer.core_1.shape) > 0.3})
    x = torch.randn(5, 24)
    explain = torch._dynamo.explain(layer)(x)
    assert explain.graph_break_count == 0, explain.break_reasons
    torch._dynamo.reset()
    compiled = torch.compile(layer, backend="eager", fullgraph=True)
    y = compiled(x)
    ref = x @ layer.dense_weight() + layer.bias
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    y.sum().backward()
    g = layer.parametrizations.core_1.original.grad
    assert g is not None and torch.all(g[~get_masks(layer)["core_1"]] == 0)


# ---------------------------------------------------------------------------- autotune


def test_autotune_times_once_per_bucket_and_matches_reference(monkeypatch):
    from tedepr.backends.torch import layers

    layers.clear_autotune()
    torch.manual_seed(0)
    layer = TTLinear(24, 10, rank=3, in_modes=(4, 6), out_modes=(2, 5), strategy="autotune")
    x = torch.randn(7, 24)
    y = layer(x)
    torch.testing.assert_close(y, x @ layer.dense_weight() + layer.bias, rtol=1e-5, atol=1e-5)
    assert set(layer.autotune_times) == set(layers.AUTOTUNE_CANDIDATES)
    (key,) = layers._TUNED
    assert key[1] == 8 and key[4] is True  # bucket of 7 rows; training (grad enabled)
    assert layers._TUNED[key] == min(layer.autotune_times, key=layer.autotune_times.get)

    def no_timing(self, batch, x2):
        raise AssertionError("timed again")

    monkeypatch.setattr(layers.TensorizedLayer, "_autotune", no_timing)
    other = TTLinear(24, 10, rank=3, in_modes=(4, 6), out_modes=(2, 5), strategy="autotune")
    other(torch.randn(5, 24))  # same bucket (8): the remembered winner, no timing
    with pytest.raises(AssertionError, match="timed again"):
        with torch.no_grad():  # inference is another key
            other(torch.randn(5, 24))
    layers.clear_autotune()
    assert not layers._TUNED


def test_bad_strategy_names_the_choices():
    with pytest.raises(ValueError, match="strategy must be one of.*'autotune'"):
        TTLinear(24, 10, rank=3, strategy="fastest")
    from tedepr.backends.torch.layers import batch_bucket

    assert [batch_bucket(b) for b in (1, 2, 3, 8, 9, 256)] == [1, 2, 4, 8, 16, 256]


def test_strategy_setter_replans_and_checks():
    torch.manual_seed(0)
    layer = TTLinear(24, 10, rank=3, in_modes=(4, 6), out_modes=(2, 5), strategy="chain")
    x = torch.randn(3, 24)
    y = layer(x)
    assert layer._plans[3].strategy == "chain"
    layer.strategy = "reconstruct"
    assert layer.strategy == "reconstruct" and not layer._plans  # re-planned on the next call
    torch.testing.assert_close(layer(x), y, rtol=1e-5, atol=1e-5)
    assert layer._plans[3].strategy == "reconstruct"
    with pytest.raises(ValueError, match="strategy must be one of"):
        layer.strategy = "fastest"
    assert layer.strategy == "reconstruct"


# ---------------------------------------------------------------------------- benchmarks


def test_bench_runs_a_suite_from_the_package(capsys):
    from tedepr import bench

    argv = ["layers", "--quick", "--sizes", "64", "--formats", "tt:2", "--batches", "2"]
    argv += ["--no-conv", "--no-tltorch", "--passes", "fwdbwd", "--budget", "0.01"]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("TT r2 64x64"))
    cells = row.split()
    # layer label (3), params, pass, batch, 6 times, 2 ratios, then the picks
    assert cells[4] == "fwdbwd" and cells[5] == "2"
    times = [float(c) for c in cells[6:12]]
    assert all(t > 0 for t in times)
    assert cells[-2].rstrip(",") in ("chain", "optimal", "reconstruct")


def test_bench_rejects_unknown_suites_and_options(capsys):
    from tedepr import bench
    from tedepr.benchmarks import suite

    assert bench.main(["nope"]) == 2
    assert "unknown suite 'nope'" in capsys.readouterr().err
    assert bench.main(["--sizes", "3"]) == 2
    assert "needs a suite name" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown benchmark suite 'x'"):
        suite("x")
    with pytest.raises(TypeError, match="suite name must be a str"):
        suite(3)


def test_timing_statistics():
    from tedepr.benchmarks._timing import summarize

    samples = [1.0, 1.1, 9.0, 1.2, 8.0]
    assert summarize(samples) == 1.2
    assert summarize(samples, "min") == 1.0
    assert summarize(samples, "p25") == 1.1
    with pytest.raises(ValueError, match="stat must be one of"):
        summarize(samples, "mean")


def test_importing_bench_imports_no_framework():
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    code = (
        "import sys, tedepr.bench, tedepr.benchmarks;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'jax')))"
    )
    env = dict(os.environ, PYTHONPATH=str(repo))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", ["TTConv2d", "TuckerConv2d"])
def test_conv_compiles_without_graph_break(name):
    import tedepr.backends.torch as tb

    torch._dynamo.reset()
    torch.manual_seed(0)
    layer = getattr(tb, name)(8, 6, 3, padding=1, rank=2)
    x = torch.randn(2, 8, 6, 6)
    explain = torch._dynamo.explain(layer)(x)
    assert explain.graph_break_count == 0, explain.break_reasons
    assert not layer._choices  # tracing wrote nothing into the eager cache
    torch._dynamo.reset()
    y = torch.compile(layer, backend="eager", fullgraph=True)(x)
    ref = torch.nn.functional.conv2d(x, layer.kernel(), layer.bias, padding=1)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)


def test_calibration_fit_recovers_known_constants():
    import numpy as np

    from tedepr.benchmarks.calibrate import _nnls, measure

    rng = np.random.default_rng(0)
    a = np.column_stack(
        [rng.uniform(1e5, 1e8, 60), rng.uniform(1e3, 1e6, 60), rng.integers(1, 6, 60)]
    )
    a = np.hstack([a, np.ones((60, 1))])
    true = np.array([1e-10, 4e-9, 3e-6, 2e-5])
    np.testing.assert_allclose(_nnls(a, a @ true), true, rtol=1e-6)
    # a negative coefficient is clipped to zero, not returned
    assert np.all(_nnls(a, a @ np.array([1e-10, -4e-9, 3e-6, 0.0])) >= 0)
    r = measure(quick=True)
    assert r["gemm_flops_per_s"] > 1e8 and r["copy_elements_per_s"] > 1e6
    assert r["MEMORY_FLOPS_PER_ELEMENT"] == r["gemm_flops_per_s"] / r["copy_elements_per_s"]


def test_shared_plan_table_is_bounded(monkeypatch):
    from tedepr.backends.torch import layers

    monkeypatch.setattr(layers, "_PLANS", [])
    monkeypatch.setattr(layers, "_PLAN_INDEX", {})
    monkeypatch.setattr(layers, "_MAX_SHARED_PLANS", 3)
    layer = TTLinear(24, 10, rank=3, in_modes=(4, 6), out_modes=(2, 5))
    x = torch.randn(7, 24)
    for b in range(1, 8):
        y = layer(x[:b])
        torch.testing.assert_close(y, x[:b] @ layer.dense_weight() + layer.bias)
    assert len(layers._PLANS) <= 3 and len(layers._PLAN_INDEX) <= 3
    assert set(layer._plans) == set(range(1, 8))  # the layer keeps its own plans


def test_training_bench_gemm_flops():
    from tedepr.backends.torch.layers import _PLANS, _plan_index
    from tedepr.benchmarks.training import _plan_flops, step_gemm_flops

    mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 10))
    # forward + weight gradient of both layers, input gradient of the second only
    assert step_gemm_flops(mlp, 4) == 2 * 4 * (784 * 300 * 2 + 300 * 10 * 3)
    layer = TTLinear(784, 300, rank=5, strategy="optimal")
    plan = _PLANS[_plan_index(layer._plan_key(), 8, "optimal")]
    fwd, bwd = _plan_flops(plan, [True] * 5)
    assert fwd == plan.flops  # opt_einsum's own count of the same path
    assert bwd == 2 * fwd  # one GEMM per operand and step
    first_fwd, first_bwd = _plan_flops(plan, [False] + [True] * 4)
    assert first_fwd == fwd and first_bwd < bwd  # the input needs no gradient
    assert step_gemm_flops(nn.Sequential(layer), 8) == first_fwd + first_bwd
    layer.strategy = "reconstruct"
    rec = _PLANS[_plan_index(layer._plan_key(), 8, "reconstruct")]._reconstruct
    build = sum(_plan_flops(rec, [True] * 4))
    assert step_gemm_flops(nn.Sequential(layer), 8) == build + 2 * (2 * 8 * 784 * 300)
    assert step_gemm_flops(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten()), 8) is None


def test_inference_bench_floor_counts_ops(capsys):
    from tedepr import bench

    argv = ["inference", "--quick", "--backends", "torch", "--batches", "1", "--budget", "0.05"]
    assert bench.main(argv + ["--floor"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("aten ops per call: "))
    counts = {
        k.rsplit(" ", 1)[0]: int(k.rsplit(" ", 1)[1])
        for k in line.removeprefix("aten ops per call: ").split(", ")
    }
    # folding gives exactly the dense model's ops; the structure floor runs the same modules
    assert counts["TEDEPR folded"] == counts["dense"] == counts["struct. floor"]
    assert counts["TEDEPR final"] > counts["dense"]  # the chain: several ops per layer
    header = next(ln for ln in out.splitlines() if ln.startswith("backend "))
    assert "struct. floor" in header and "empty op" in header and "1st GEMM" in header
