"""Round-5 candidates (docs/method.md §10): per-layer targets of the rank allocator
(`allocate_ranks(shares=...)`), layers left to the coarse grain (`Trainability(coarse=...)`, the
``trainability-coarse-*`` scores) and the ``orth-draws`` / ``lowrank-orth-draws`` methods."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

import tedepr
from tedepr.budget import LayerShape, allocate_ranks
from tedepr.cli.methods import compress_options, expand_methods
from tedepr.pruning import scores as registry


def _layers():
    return [
        LayerShape("a", "tt", (4, 4), (4, 4), 256),
        LayerShape("b", "tt", (4, 2), (2, 4), 64),
        LayerShape("c", "tt", (2, 2), (2, 2), 16),
    ]


@pytest.mark.parametrize("budget", [60, 90, 150, 300])
def test_equal_shares_allocate_as_no_shares(budget):
    plain = allocate_ranks(_layers(), budget)
    for w in (0.5, 1.0, 3.0):
        assert allocate_ranks(_layers(), budget, shares={"a": w, "b": w, "c": w}) == plain


def _fraction(layer, ranks):
    return layer.params(ranks) / layer.dense


@pytest.mark.parametrize("budget", [60, 90, 150, 250])
def test_a_half_share_ends_near_half_the_fraction_of_the_others(budget):
    """The greedy's invariant: when it stops, no layer that could still grow holds a weighted
    fraction above another's by more than one growth step, and the total fits the budget."""
    layers = {s.name: s for s in _layers()}
    shares = {"a": 0.5}
    ranks = allocate_ranks(layers.values(), budget, shares=shares)
    total = sum(layers[n].params(r) for n, r in ranks.items())
    assert total <= budget
    # a layer of weight w is picked while used/(dense*w) is the smallest: before its last growth
    # its weighted fraction was at most every other layer's final weighted fraction
    for n, m in itertools.permutations(layers, 2):
        ln, rn = layers[n], ranks[n]
        if rn == ln.floor():
            continue
        prev = [
            tuple(x - (i == k) for i, x in enumerate(rn))
            for k in range(len(rn))
            if rn[k] > ln.floor()[k]
        ]
        before = min(_fraction(ln, p) for p in prev) / shares.get(n, 1.0)
        assert before <= _fraction(layers[m], ranks[m]) / shares.get(m, 1.0) + 1e-12
    # and the half share really holds less of its dense size than with equal shares
    plain = allocate_ranks(layers.values(), budget)
    assert _fraction(layers["a"], ranks["a"]) <= _fraction(layers["a"], plain["a"])


def test_share_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"shares\['a'\] must be a positive number"):
        allocate_ranks(_layers(), 100, shares={"a": 0})
    with pytest.raises(ValueError, match=r"shares\['b'\] must be a positive number"):
        allocate_ranks(_layers(), 100, shares={"b": True})
    with pytest.raises(TypeError, match="coarse must be a tuple of layer names"):
        registry.Trainability(coarse="hidden.0")


def _model(bt, torch):
    torch.manual_seed(0)
    return bt.models.LeNet300_100(num_classes=10, image_size=16, hidden=(64, 32)).double()


def _data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((32, 1, 16, 16)), rng.integers(0, 10, 32)


@pytest.mark.torch
@pytest.mark.parametrize("layer", ["hidden.0", "hidden.1", "classifier"])
def test_a_coarse_layer_is_allocated_its_share_and_pruned_not_at_all(layer):
    torch = pytest.importorskip("torch")
    import tedepr.backends.torch as bt

    score = f"trainability-coarse-{layer.replace('.', '')}"
    assert registry.get(score).coarse == (layer,)
    opts = dict(sparsity=0.98, format="tt", backend="torch", seed=3)
    base = tedepr.compress(_model(bt, torch), _data(), score="trainability", **opts)
    res = tedepr.compress(_model(bt, torch), _data(), score=score, **opts)
    keep = sum(r.kept for r in base.report.layers)
    assert sum(r.kept for r in res.report.layers) == keep  # same budget, met exactly
    rows = {r.name: r for r in res.report.layers}
    assert all(r.live for r in res.report.layers)
    # nothing of the coarse layer is pruned ...
    for n, m in res.masks.items():
        if n.startswith(layer + "."):
            assert bool(np.asarray(m).all()), n
    assert rows[layer].kept == rows[layer].total
    # the other layers are pruned (their cores were allocated the default split)
    assert any(rows[n].kept < rows[n].total for n in rows if n != layer)


@pytest.mark.torch
def test_an_unknown_coarse_layer_is_an_error_naming_it():
    torch = pytest.importorskip("torch")
    import tedepr.backends.torch as bt

    @dataclass(frozen=True)
    class _Bad(registry.Trainability):
        name: ClassVar[str] = "_test-coarse-bad"
        coarse: tuple[str, ...] = ("nope",)

    registry.register(_Bad)
    try:
        with pytest.raises(ValueError, match="no tensorized layer named 'nope'"):
            tedepr.compress(
                _model(bt, torch),
                _data(),
                sparsity=0.95,
                format="tt",
                score="_test-coarse-bad",
                backend="torch",
                seed=0,
            )
    finally:
        registry._REGISTRY.pop("_test-coarse-bad", None)


def test_round5_methods_are_registered_with_equal_treatment():
    names = expand_methods("orth-draws,lowrank-orth-draws,lowrank-draws", "tt")
    assert names == ["orth-draws", "lowrank-orth-draws", "lowrank-draws"]
    draws = {n: compress_options(n, "tt") for n in names}
    assert {o["probe_draws"] for o in draws.values()} == {3}
    assert draws["orth-draws"] == {
        **compress_options("tt+trainability-orth", "tt"),
        "probe_draws": 3,
    }
    assert draws["lowrank-orth-draws"] == {
        **compress_options("lowrank-orth", "tt"),
        "probe_draws": 3,
    }


@pytest.mark.torch
def test_lowrank_orth_draws_keeps_the_orthogonal_redraw_in_the_probe():
    """The probe used to compress split 1.0 with ``score=None``, which dropped the re-draw of
    ``trainability-orth``: ``lowrank-orth-draws`` then equalled ``lowrank-draws`` to the digit."""
    torch = pytest.importorskip("torch")
    import tedepr.backends.torch as bt

    x, y = _data()
    opts = dict(sparsity=0.98, backend="torch", seed=1, probe_data=(x, y), probe_epochs=1)
    with pytest.warns(UserWarning, match="nothing pruned"):
        res = tedepr.compress(
            _model(bt, torch), (x, y), **opts, **compress_options("lowrank-orth-draws", "tt")
        )
    low = tedepr.compress(
        _model(bt, torch), (x, y), **opts, **compress_options("lowrank-draws", "tt")
    )
    assert [(r.name, r.ranks) for r in res.report.layers] == [
        (r.name, r.ranks) for r in low.report.layers
    ]
    assert len(res.report.probe) == 3
    for n, w in bt.prunable_parameters(res.model).items():
        w = w.detach().numpy()
        left = w.reshape(-1, w.shape[-1])
        gram = left.T @ left if left.shape[0] >= left.shape[1] else left @ left.T
        np.testing.assert_allclose(gram, np.eye(len(gram)) * gram[0, 0], atol=1e-10, err_msg=n)


def test_coarse_layers_allocate_the_same_ranks_in_both_backends():
    """A coarse layer named in torch's spelling ('hidden.1') is found in JAX ('hidden/1') both by
    the rank shares and by the score: the two backends give the same ranks, totals and kept counts
    (JAX once ignored the share in the budget and allocated as without it)."""
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    rng = np.random.default_rng(0)
    data = rng.standard_normal((32, 1, 28, 28)).astype("float32"), rng.integers(0, 10, 32)
    rows = {}
    for backend in ("torch", "jax"):
        result = tedepr.compress(
            tedepr.models.get("lenet300_100", backend=backend),
            data,
            sparsity=0.995,
            format="tt",
            score="trainability-coarse-hidden1",
            backend=backend,
            seed=0,
            compact=False,
        )
        rows[backend] = [
            (r.name.replace("/", "."), r.kept, r.total, r.ranks) for r in result.report.layers
        ]
    assert rows["torch"] == rows["jax"]
    hidden1 = next(r for r in rows["torch"] if r[0] == "hidden.1")
    assert hidden1[1] == hidden1[2]  # the coarse layer keeps every entry
