"""The compress contract, once for both backends: every score keeps exactly the budget of the
whole model, pruned entries are stored as zeros, the caller's model is left alone, and rescaling
restores every tensorized layer's norm."""

from __future__ import annotations

import numpy as np
import pytest
from _backends import backend  # noqa: F401  (the fixture)

import tedepr


def _mnist_batch(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.random((n, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, n))]


# Every registered score on torch; on JAX the one score its suite always ran here — that JAX
# chooses torch's masks for every registered score is tests/test_cross_backend.py's job, and the
# budget arithmetic is the core's, shared by both.
BUDGET_CASES = [
    pytest.param("torch", m, marks=pytest.mark.torch) for m in tedepr.scores.available()
] + [pytest.param("jax", "snip", marks=pytest.mark.jax)]


@pytest.mark.parametrize("backend, method", BUDGET_CASES, indirect=["backend"])
def test_compress_keeps_exactly_the_budget(backend, method):
    model = backend.zoo("lenet300_100")
    dense = backend.dense_count(model)
    assert dense == 784 * 300 + 300 * 100 + 100 * 10
    data = _mnist_batch()
    res = backend.compress(
        model,
        data,
        sparsity=0.995,
        format="tt",
        score=method,
        rounds=3 if tedepr.scores.get(method).rounds > 1 else None,
    )
    keep = round(0.005 * dense)
    assert res.report.kept_weights == keep
    masks = backend.masks(res)
    assert sum(int(m.sum()) for m in masks.values()) == keep
    assert res.report.sparsity == pytest.approx(1 - keep / dense)
    stored = backend.stored_weights(res)
    for name, m in masks.items():
        assert np.all(stored[name][~m] == 0.0), f"{name} stores a pruned entry"
    # the caller's model is untouched and the compressed one runs
    assert backend.is_dense(model, "hidden.0")
    out = backend.run(res, data[0][0])
    assert out.shape == (64, 10) and np.isfinite(out).all()
    assert "whole model" in str(res.report)


def test_compress_small_model_budget_layers_and_errors(backend):
    model = backend.zoo("lenet300_100", num_classes=3, image_size=6, hidden=(16, 12))
    rng = np.random.default_rng(0)
    data = [(rng.standard_normal((16, 1, 6, 6)).astype(np.float32), rng.integers(0, 3, 16))]
    dense = backend.dense_count(model)
    assert dense == 36 * 16 + 16 * 12 + 12 * 3
    # a 12x3 classifier cannot fit 10% x oversample: it stays dense, with a warning
    with pytest.warns(UserWarning, match="leaves '?classifier'? dense"):
        res = backend.compress(
            model,
            data,
            sparsity=0.9,
            format="tt",
            score="snip",
            tensorize_options={"min_params": 0},
            # the exact-count selection itself: compaction (the default) would then drop the kept
            # entries an entry-wise score leaves on no complete path (tests/test_compact.py)
            compact=False,
        )
    keep = round(0.1 * dense)
    assert res.report.kept_weights == keep
    masks = backend.masks(res)
    assert sum(int(m.sum()) for m in masks.values()) == keep
    stored = backend.stored_weights(res)
    for name, m in masks.items():
        assert np.all(stored[name][~m] == 0.0)
    assert {r.name.replace("/", "."): r.format for r in res.report.layers} == {
        "hidden.0": "tt",
        "hidden.1": "tt",
        "classifier": "dense",
    }
    assert backend.run(res, data[0][0]).shape == (16, 3)
    base = backend.compress(model, data, sparsity=0.9, format=None, score="magnitude")
    assert base.report.kept_weights == keep
    with pytest.raises(ValueError, match="needs data"):
        backend.compress(model, None, sparsity=0.9, score="snip")


def test_rescale_restores_every_layers_norm(backend):
    model = backend.zoo("lenet300_100")
    data = _mnist_batch()
    kw = dict(sparsity=0.995, format="tt", rank=0.02)
    plain = backend.compress(model, data, score="snip", rescale=False, **kw)
    scaled = backend.compress(model, data, score="snip", rescale=True, **kw)
    # the same cores (same seed and ranks), unpruned; a low-rank-only model must fit its budget,
    # so ask for a sparsity that the unpruned cores meet
    ref = backend.compress(model, None, score=None, **{**kw, "sparsity": 0.5})
    full, pruned, restored = (backend.tensorized_norms(r) for r in (ref, plain, scaled))
    assert set(full) == set(restored) == {"hidden.0", "hidden.1"}
    for name in full:
        assert pruned[name] < 0.9 * full[name], name
        assert restored[name] == pytest.approx(full[name], rel=1e-5), name
    # a dense layer's kept entries are the same with and without rescaling
    a, b = backend.stored_weights(plain), backend.stored_weights(scaled)
    np.testing.assert_array_equal(a["classifier.weight"] != 0, b["classifier.weight"] != 0)
