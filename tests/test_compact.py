"""Compaction (tedepr.pruning.compact, the backends' ``compact``): dead bond indices removed exactly.

Oracles: the NumPy reference reconstruction (reference/formats.py) of the masked cores before and
after; the uncompacted model's outputs and its training trajectory.
"""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tedepr
from reference import formats as ref
from tedepr.pruning.compact import plan_compaction, take_kept
from tedepr.pruning.connectivity import analyse, useful_entries
from tedepr.pruning.problem import CoreInfo


# ----------------------------------------------------------------------------- core helpers
def _structure(f, layer="L"):
    out = {}
    for k, c in enumerate(f.cores):
        if f.format in ("tt", "tr"):
            info = CoreInfo(layer, f.format, k, slice_axes=(1, 2), bond_axes=(0, 3))
        elif f.format == "tucker" and k == 0:
            info = CoreInfo(layer, f.format, k, bond_axes=tuple(range(np.ndim(c))))
        else:
            info = CoreInfo(layer, f.format, k, slice_axes=(0,), bond_axes=(1,))
        out[f"{layer}.core_{k}"] = info
    return out


def _dense(fmt, cores, in_modes, out_modes, factored=None):
    """The reference reconstruction ``(N_in, N_out)`` of a list of (masked) core arrays."""
    cores = [np.asarray(c, np.float64) for c in cores]
    if fmt == "tucker":
        core, factors = cores[0], iter(cores[1:])
        factored = factored or (True,) * core.ndim
        return ref.tucker_to_dense(
            core, [next(factors) if f else None for f in factored], in_modes, out_modes
        )
    return ref.to_dense(fmt, cores, in_modes, out_modes)


def _masked_and_compacted(f, masks, layer="L"):
    structure = _structure(f, layer)
    names = list(structure)
    plan = plan_compaction(masks, structure)
    masked = [np.where(masks[n], np.asarray(c), 0.0) for n, c in zip(names, f.cores)]
    c = plan[layer]
    small = [take_kept(a, c.keep[n]) for n, a in zip(names, masked)]
    return plan, names, masked, small


# ----------------------------------------------------------------------------- core: hand cases
def test_tt_dead_index_found_and_removed_exactly():
    f = tedepr.random_factorized("tt", 12, 12, rank=3, in_modes=(3, 4), out_modes=(4, 3), seed=1)
    names = ["L.core_0", "L.core_1"]
    masks = {n: np.ones(np.shape(c), bool) for n, c in zip(names, f.cores)}
    masks["L.core_0"][..., 1] = False  # bond 1 index 1: nothing reaches it from the left
    masks["L.core_1"][2] = False  # bond 1 index 2: leads nowhere (pruned on its right side)
    plan, _, masked, small = _masked_and_compacted(f, masks)
    c = plan["L"]
    assert c.changed and c.ranks_before == (1, 3, 1) and c.ranks_after == (1, 1, 1)
    np.testing.assert_array_equal(c.keep["L.core_0"][1][1], [0])
    np.testing.assert_array_equal(c.keep["L.core_1"][0][1], [0])
    # the kept entries of core 1 on index 1 and of core 0 on index 2 lie on no complete path
    assert c.dropped == int(masks["L.core_1"][1].sum() + masks["L.core_0"][..., 2].sum())
    assert [a.shape for a in small] == [(1, 3, 4, 1), (1, 4, 3, 1)]
    np.testing.assert_allclose(
        _dense("tt", small, (3, 4), (4, 3)), _dense("tt", masked, (3, 4), (4, 3)), rtol=1e-12
    )


def test_nothing_to_compact_is_unchanged():
    f = tedepr.random_factorized("tt", 12, 12, rank=3, in_modes=(3, 4), out_modes=(4, 3), seed=1)
    masks = {n: np.ones(np.shape(c), bool) for n, c in zip(_structure(f), f.cores)}
    plan = plan_compaction(masks, _structure(f))
    assert not plan["L"].changed and plan["L"].dropped == 0
    assert plan["L"].ranks_after == f.ranks


def test_tr_closing_bond_compacted():
    f = tedepr.random_factorized("tr", 12, 12, rank=3, in_modes=(3, 4), out_modes=(4, 3), seed=2)
    names = list(_structure(f))
    masks = {n: np.ones(np.shape(c), bool) for n, c in zip(names, f.cores)}
    masks[names[0]][0] = False  # closing index 0: no closed path through it
    masks[names[-1]][..., 0] = False
    plan, _, masked, small = _masked_and_compacted(f, masks)
    c = plan["L"]
    assert c.ranks_before == (3, 3, 3) and c.ranks_after == (2, 3, 2) and c.dropped == 0
    np.testing.assert_allclose(
        _dense("tr", small, (3, 4), (4, 3)), _dense("tr", masked, (3, 4), (4, 3)), rtol=1e-12
    )


def test_tucker_axes_follow_factored_modes():
    # a Tucker-2 conv core (R_in, kh*kw, R_out) whose spatial axis has the size of R_out: placing a
    # factor by size alone would put U_out on the spatial axis
    rng = np.random.default_rng(0)
    core, u_in, u_out = rng.normal(size=(3, 3, 3)), rng.normal(size=(4, 3)), rng.normal(size=(5, 3))
    structure = {
        "L.core_0": CoreInfo("L", "tucker", 0, bond_axes=(0, 1, 2)),
        "L.core_1": CoreInfo("L", "tucker", 1, slice_axes=(0,), bond_axes=(1,)),
        "L.core_2": CoreInfo("L", "tucker", 2, slice_axes=(0,), bond_axes=(1,)),
    }
    masks = {
        "L.core_0": np.ones((3, 3, 3), bool),
        "L.core_1": np.ones((4, 3), bool),
        "L.core_2": np.ones((5, 3), bool),
    }
    masks["L.core_2"][:, 1] = False  # U_out column 1 dead -> core axis 2 index 1 goes
    plan = plan_compaction(masks, structure, factored={"L": (True, False, True)})
    c = plan["L"]
    assert c.ranks_after == (3, None, 2)
    assert [a for a, _ in c.keep["L.core_0"]] == [0, 2]
    arrays = {"L.core_0": core, "L.core_1": u_in, "L.core_2": u_out}
    masked = [np.where(masks[n], arrays[n], 0.0) for n in structure]
    small = [take_kept(a, c.keep[n]) for n, a in zip(structure, masked)]
    full = ref.tucker_to_dense(masked[0], [masked[1], None, masked[2]], (4, 3), (5,))
    np.testing.assert_allclose(
        ref.tucker_to_dense(small[0], [small[1], None, small[2]], (4, 3), (5,)), full, rtol=1e-12
    )
    with pytest.raises(ValueError, match="factored"):
        plan_compaction(masks, structure, factored={"L": (True, True, True)})


def test_plan_compaction_bad_input():
    with pytest.raises(TypeError, match="masks"):
        plan_compaction([1, 2], {})
    with pytest.raises(TypeError, match="structure"):
        plan_compaction({}, [1])


# ----------------------------------------------------------------------------- core: property
@st.composite
def _pruned_networks(draw):
    fmt = draw(st.sampled_from(["tt", "tr", "cp", "tucker"]))
    d = draw(st.integers(2, 3))
    in_modes = tuple(draw(st.lists(st.integers(1, 3), min_size=d, max_size=d)))
    out_modes = tuple(draw(st.lists(st.integers(1, 3), min_size=d, max_size=d)))
    rank = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**16))
    density = draw(st.sampled_from([0.3, 0.5, 0.8]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rank capped by small modes
        f = tedepr.random_factorized(
            fmt,
            math.prod(in_modes),
            math.prod(out_modes),
            rank,
            in_modes=in_modes,
            out_modes=out_modes,
            seed=seed,
        )
    rng = np.random.default_rng(seed)
    masks = {n: rng.random(np.shape(c)) < density for n, c in zip(_structure(f), f.cores)}
    return f, masks


@given(_pruned_networks())
def test_compaction_is_exact_and_keeps_every_useful_entry(case):
    f, masks = case
    structure = _structure(f)
    if not analyse(masks, structure)["L"].live:
        assert plan_compaction(masks, structure) == {}  # a dead layer is never compacted
        return
    plan, names, masked, small = _masked_and_compacted(f, masks)
    c = plan["L"]
    ref_full = _dense(f.format, masked, f.in_modes, f.out_modes)
    np.testing.assert_allclose(
        _dense(f.format, small, f.in_modes, f.out_modes), ref_full, rtol=1e-10, atol=1e-12
    )
    useful = useful_entries(masks, structure)
    small_masks = {n: take_kept(masks[n], c.keep[n]) for n in names}
    # every entry on a complete path survives; what goes is exactly the kept entries on none
    # (TR with several closing indices may keep some useless ones on live indices)
    kept_before = sum(int(masks[n].sum()) for n in names)
    kept_after = sum(int(m.sum()) for m in small_masks.values())
    assert kept_before - kept_after == c.dropped
    assert kept_after >= sum(int(u.sum()) for u in useful.values())
    if f.format in ("tt", "cp", "tucker"):
        assert kept_after == sum(int(useful[n].sum()) for n in names)
    if f.format in ("tt", "tr"):
        assert c.ranks_after == analyse(masks, structure)["L"].ranks
    # a second compaction finds nothing left
    sf = tedepr.formats.from_cores(
        f.format,
        small,
        f.in_modes,
        f.out_modes,
        factored=(tuple(r is not None for r in f.ranks) if f.format == "tucker" else None),
    )
    again = plan_compaction(small_masks, _structure(sf))
    assert not again["L"].changed


# ----------------------------------------------------------------------------- torch
torch = pytest.importorskip("torch")
from tedepr.backends.torch import CompressionResult as TorchResult  # noqa: E402
from tedepr.backends.torch import (  # noqa: E402
    CPConv2d,
    CPLinear,
    TRConv2d,
    TRLinear,
    TTConv2d,
    TTLinear,
    TuckerConv2d,
    TuckerLinear,
    apply_masks,
    build_report,
    compact,
    finalize,
    get_masks,
)
from tedepr.backends.torch.compact import compaction_plan  # noqa: E402
from tedepr.backends.torch.masking import prunable_parameters  # noqa: E402
from tedepr.backends.torch.scoring import structure_of  # noqa: E402


def _lenet_data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g)


@pytest.fixture(scope="module")
def torch_lenet():
    x, y = _lenet_data()
    torch.manual_seed(0)
    dense = tedepr.models.get("lenet300_100", backend="torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = tedepr.compress(
            dense, (x[:32], y[:32]), sparsity=0.99, format="tt", backend="torch", compact=False
        )
    return r, x, y


def _layer_cores(module):
    return [c.detach().double().numpy() for c in module.cores]


def _check_layers_against_reference(model):
    for m in model.modules():
        if isinstance(m, (TTLinear, TRLinear, TuckerLinear, CPLinear)):
            w = _dense(m.format, _layer_cores(m), m.in_modes, m.out_modes, m._factored)
            np.testing.assert_allclose(
                m.dense_weight().detach().double().numpy(), w, rtol=1e-5, atol=1e-6
            )


def test_torch_compact_lenet_same_function_and_accounting(torch_lenet):
    r, x, _ = torch_lenet
    c = compact(r)
    assert c is not r and c.model is not r.model
    old = {row.name: row for row in r.report.layers}
    new = {row.name: row for row in c.report.layers}
    shrunk = [n for n in new if new[n].total < old[n].total]
    assert shrunk, "the trainability masks of this model leave dead bond indices"
    for n in new:
        assert new[n].kept == old[n].kept and new[n].dense == old[n].dense
        assert tuple(new[n].ranks) == tuple(old[n].connected_ranks)  # only connected ranks left
    assert c.report.kept_weights == r.report.kept_weights
    assert c.report.dense_weights == r.report.dense_weights
    assert c.report.sparsity == r.report.sparsity
    assert any("compacted" in note for note in c.report.notes)
    # masks: same kept count per array, attached to the model, sliced to the new shapes
    params = prunable_parameters(c.model)
    attached = get_masks(c.model)
    for n, m in c.masks.items():
        assert int(m.sum()) == int(r.masks[n].sum())
        assert m.shape == params[n].shape and torch.equal(attached[n], m)
        assert torch.all(params[n].detach()[~m] == 0)
    # the original is untouched
    for n, p in prunable_parameters(r.model).items():
        assert p.shape == r.masks[n].shape
    with torch.no_grad():
        x2 = torch.randn(7, 1, 28, 28)
        for inp in (x, x2):
            torch.testing.assert_close(c.model(inp), r.model(inp), rtol=1e-5, atol=1e-6)
    # the reference reconstruction of the compacted cores is the uncompacted layer's weight
    for n in shrunk:
        a, b = r.model.get_submodule(n), c.model.get_submodule(n)
        np.testing.assert_allclose(
            _dense("tt", _layer_cores(b), b.in_modes, b.out_modes),
            a.dense_weight().detach().double().numpy(),
            rtol=1e-5,
            atol=1e-7,
        )


def test_torch_compact_is_noop_when_nothing_to_do(torch_lenet):
    r, _, _ = torch_lenet
    c = compact(r)
    assert compact(c) is c
    x, y = _lenet_data()
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        low = tedepr.compress(
            tedepr.models.get("lenet300_100", backend="torch"),
            (x[:32], y[:32]),
            sparsity=0.99,
            format="tt",
            score=None,
            backend="torch",
        )
    assert compact(low) is low


def test_torch_compact_bad_input(torch_lenet):
    with pytest.raises(TypeError, match="result must be the CompressionResult"):
        compact(torch_lenet[0].model)
    with pytest.raises(TypeError, match="model must be"):
        compaction_plan("not a model")


def _kept_values(model, plan, masks):
    """Every prunable array's kept values, the compactable cores restricted to the kept indices
    of ``plan`` (so the uncompacted and the compacted model can be compared entry by entry)."""
    from tedepr.backends.torch.compact import _slice

    out = {}
    for n, p in prunable_parameters(model).items():
        layer = n.rpartition(".")[0]
        t, m = p.detach(), masks[n]
        if layer in plan and plan[layer].changed and t.shape != plan[layer].shape_after(n, t.shape):
            t, m = _slice(t, plan[layer].keep[n]), _slice(m, plan[layer].keep[n])
        out[n] = t[m]
    return out


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_torch_compact_trains_identically(torch_lenet, optimizer):
    r, x, y = torch_lenet
    plan = compaction_plan(r.model, r.masks)
    a, c = copy.deepcopy(r.model), copy.deepcopy(compact(r).model)
    new_masks = get_masks(c)
    opts = []
    for m in (a, c):
        if optimizer == "sgd":
            opts.append(torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4))
        else:
            opts.append(torch.optim.Adam(m.parameters(), lr=1e-3))
    for step in range(4):
        xb, yb = x[16 * step : 16 * step + 16], y[16 * step : 16 * step + 16]
        for m, opt in zip((a, c), opts):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(m(xb), yb).backward()
            opt.step()
    va, vc = _kept_values(a, plan, r.masks), _kept_values(c, {}, new_masks)
    moved = 0.0
    for n in va:
        torch.testing.assert_close(vc[n], va[n], rtol=1e-4, atol=1e-6)
        moved = max(moved, float((va[n] - _kept_values(r.model, plan, r.masks)[n]).abs().max()))
    assert moved > 1e-4  # the steps did train
    with torch.no_grad():
        torch.testing.assert_close(c(x), a(x), rtol=1e-4, atol=1e-5)


def test_torch_finalize_compacts_first(torch_lenet):
    r, x, _ = torch_lenet
    c = compact(r)
    f = finalize(r.model)
    for name, m in f.named_modules():
        if isinstance(m, TTLinear):
            assert m.ranks == c.model.get_submodule(name).ranks
    with torch.no_grad():
        torch.testing.assert_close(f(x), r.model(x), rtol=1e-5, atol=1e-6)
    folded = finalize(r.model, fold=True)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), r.model(x), rtol=1e-5, atol=1e-6)


def _kill_one_index(masks, module_name, module):
    """Prune every entry touching one bond index (both sides: no kept entry is lost)."""
    fmt = module.format
    n = lambda k: f"{module_name}.core_{k}"  # noqa: E731
    if fmt in ("tt", "tr"):
        masks[n(0)][..., 0] = False
        masks[n(1)][0] = False
    elif fmt == "cp":
        for k in range(len(module.cores)):
            masks[n(k)][:, 0] = False
    else:  # Tucker: the first factor's column 0 and the core's slice 0 on axis 0
        masks[n(0)][0] = False
        masks[n(1)][:, 0] = False


def _hand_result(model, seed=0, density=0.7):
    g = torch.Generator().manual_seed(seed)
    masks = {
        n: torch.rand(p.shape, generator=g) < density for n, p in prunable_parameters(model).items()
    }
    for name, m in model.named_modules():
        if hasattr(m, "_core_shapes"):
            _kill_one_index(masks, name, m)
    apply_masks(model, masks)
    report = build_report(
        model,
        masks,
        dense_weights=10**6,
        structure=structure_of(model, prunable_parameters(model)),
    )
    return TorchResult(model, report, masks)


@pytest.mark.parametrize("cls", [TTLinear, TRLinear, TuckerLinear, CPLinear])
def test_torch_compact_every_linear_format(cls):
    torch.manual_seed(1)
    kw = {"rank": 3} if cls is not CPLinear else {"rank": 4}
    model = torch.nn.Sequential(cls(24, 18, **kw), torch.nn.ReLU(), torch.nn.Linear(18, 5))
    r = _hand_result(model)
    c = compact(r)
    dropped = sum(v.dropped for v in compaction_plan(r.model, r.masks).values())
    assert c is not r
    before, after = r.model[0], c.model[0]
    assert after.num_params < before.num_params
    assert c.report.kept_weights == r.report.kept_weights - dropped
    x = torch.randn(9, 24)
    with torch.no_grad():
        torch.testing.assert_close(c.model(x), r.model(x), rtol=1e-5, atol=1e-6)
    w_ref = _dense(before.format, _layer_cores(before), before.in_modes, before.out_modes)
    w_new = _dense(after.format, _layer_cores(after), after.in_modes, after.out_modes)
    np.testing.assert_allclose(w_new, w_ref, rtol=1e-5, atol=1e-7)
    _check_layers_against_reference(c.model)


@pytest.mark.parametrize(
    "cls,kw",
    [(TTConv2d, {"rank": 3}), (TRConv2d, {"rank": 2}), (TuckerConv2d, {"rank": 3}), (CPConv2d, {})],
)
def test_torch_compact_conv_layers(cls, kw):
    torch.manual_seed(2)
    conv = cls(4, 6, 3, padding=1, **({"rank": 4} | kw))
    model = torch.nn.Sequential(conv, torch.nn.ReLU())
    r = _hand_result(model)
    c = compact(r)
    dropped = sum(v.dropped for v in compaction_plan(r.model, r.masks).values())
    assert c.model[0].num_params < r.model[0].num_params
    assert c.report.kept_weights == r.report.kept_weights - dropped
    x = torch.randn(2, 4, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(c.model(x), r.model(x), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(c.model[0].kernel(), r.model[0].kernel(), rtol=1e-5, atol=1e-6)
    # every forward strategy of the layer agrees after compaction
    for strategy in ("reconstruct", "unfold") + (
        ("factorized",) if conv.format in ("tucker", "cp") else ()
    ):
        c.model[0]._conv_strategy = strategy
        with torch.no_grad():
            torch.testing.assert_close(c.model(x), r.model(x), rtol=1e-4, atol=1e-5)


def test_torch_compact_reports_dropped_entries():
    torch.manual_seed(3)
    model = torch.nn.Sequential(TTLinear(24, 18, rank=3))
    masks = {
        n: torch.ones(p.shape, dtype=torch.bool) for n, p in prunable_parameters(model).items()
    }
    masks["0.core_0"][..., 0] = False  # one side only: core_1's entries on index 0 are stranded
    apply_masks(model, masks)
    report = build_report(
        model, masks, dense_weights=432, structure=structure_of(model, prunable_parameters(model))
    )
    r = TorchResult(model, report, masks)
    stranded = int(masks["0.core_1"][0].sum())
    c = compact(r)
    assert c.report.kept_weights == r.report.kept_weights - stranded
    assert any(f"{stranded} kept entries on no complete path" in n for n in c.report.notes)
    x = torch.randn(3, 24)
    with torch.no_grad():
        torch.testing.assert_close(c.model(x), r.model(x), rtol=1e-5, atol=1e-6)


def _torch_sgd_steps(model, x, y, steps=3):
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    for k in range(steps):
        xb, yb = x[16 * k : 16 * k + 16], y[16 * k : 16 * k + 16]
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()
    return model


def test_torch_compress_compacts_by_default(torch_lenet):
    r, x, y = torch_lenet  # compact=False
    torch.manual_seed(0)
    dense = tedepr.models.get("lenet300_100", backend="torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = tedepr.compress(dense, (x[:32], y[:32]), sparsity=0.99, format="tt", backend="torch")
    # the default is compact=True: the ranks are the connected ones of the uncompacted result
    old = {row.name: row for row in r.report.layers}
    new = {row.name: row for row in c.report.layers}
    assert any(new[n].total < old[n].total for n in new)
    for n in new:
        assert tuple(new[n].ranks) == tuple(old[n].connected_ranks)
        assert new[n].kept == old[n].kept  # no kept entry was dead here: the count is unchanged
    assert c.report.kept_weights == r.report.kept_weights
    assert any("compacted" in note for note in c.report.notes)
    assert not any("compacted" in note for note in r.report.notes)
    with torch.no_grad():
        torch.testing.assert_close(c.model(x), r.model(x), rtol=1e-5, atol=1e-6)
    # a few SGD steps from both: the same function afterwards
    a = _torch_sgd_steps(copy.deepcopy(r.model), x, y)
    b = _torch_sgd_steps(copy.deepcopy(c.model), x, y)
    with torch.no_grad():
        out_a, out_b = a(x), b(x)
        torch.testing.assert_close(out_b, out_a, rtol=1e-4, atol=1e-5)
        assert float((out_a - r.model(x)).abs().max()) > 1e-3  # the steps did train
    with pytest.raises(TypeError, match="compact must be True or False"):
        tedepr.compress(dense, (x[:32], y[:32]), format="tt", backend="torch", compact="yes")


# ----------------------------------------------------------------------------- jax
jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

from tedepr.backends import jax as tj  # noqa: E402
from tedepr.backends.jax.compact import compaction_plan as jax_plan  # noqa: E402
from tedepr.backends.jax.training import trainable_mask  # noqa: E402


@pytest.fixture(scope="module")
def jax_lenet():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 64).astype(np.int32)
    dense = tedepr.models.get("lenet300_100", backend="jax", flax=False)
    params = dense.init(jax.random.key(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = tedepr.compress(
            dense,
            (x[:32], y[:32]),
            sparsity=0.99,
            format="tt",
            backend="jax",
            params=params,
            compact=False,
        )
    return r, x, y


def test_jax_compact_lenet_same_function_and_accounting(jax_lenet):
    r, x, _ = jax_lenet
    c = tj.compact(r)
    assert c is not r
    old = {row.name: row for row in r.report.layers}
    new = {row.name: row for row in c.report.layers}
    assert any(new[n].total < old[n].total for n in new)
    for n in new:
        assert new[n].kept == old[n].kept
        assert tuple(new[n].ranks) == tuple(old[n].connected_ranks)
    assert c.report.kept_weights == r.report.kept_weights
    assert c.report.sparsity == r.report.sparsity
    for path, m in c.masks.items():
        assert int(np.sum(m)) == int(np.sum(r.masks[path]))
    np.testing.assert_allclose(np.asarray(c.apply(x)), np.asarray(r.apply(x)), rtol=1e-5, atol=1e-6)
    for name, layer in c.model.layers.items():
        if isinstance(layer, tj.TensorizedLinear):
            mc = c.masks
            cores = [
                np.where(np.asarray(mc[f"{name}/cores/{k}"]), np.asarray(a), 0.0)
                for k, a in enumerate(c.params[name]["cores"])
            ]
            np.testing.assert_allclose(
                np.asarray(
                    layer.weight(
                        c.params[name],
                        {"cores": tuple(mc[f"{name}/cores/{k}"] for k in range(len(cores)))},
                    )
                ),
                _dense(layer.format, cores, layer.in_modes, layer.out_modes),
                rtol=1e-5,
                atol=1e-6,
            )
    assert tj.compact(c) is c
    with pytest.raises(TypeError, match="result must be the CompressionResult"):
        tj.compact(r.model)
    with pytest.raises(TypeError, match="model must be"):
        jax_plan("x", r.masks)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_jax_compact_trains_identically(jax_lenet, optimizer):
    r, x, y = jax_lenet
    c = tj.compact(r)
    plan = jax_plan(r.model, r.masks)
    states = []
    for res in (r, c):
        trainable = trainable_mask(res.model, res.params)
        tx = tj.make_optimizer(optimizer, momentum=0.9, weight_decay=5e-4, decay_mask=trainable)
        step = jax.jit(tj.make_train_step(res.model, tx, trainable))
        masks = tj.normalize_masks(res.params, res.masks)
        p, o = res.params, tx.init(res.params)
        for k in range(3):
            xb, yb = jnp.asarray(x[16 * k : 16 * k + 16]), jnp.asarray(y[16 * k : 16 * k + 16])
            p, o, _, _ = step(p, o, masks, xb, yb, jnp.asarray(0.01, jnp.float32))
        states.append(p)
    pa, pc = states
    np.testing.assert_allclose(
        np.asarray(c.model.apply(pc, x, c.masks)),
        np.asarray(r.model.apply(pa, x, r.masks)),
        rtol=1e-4,
        atol=1e-5,
    )
    for name in plan:
        for k, (a, b) in enumerate(zip(pa[name]["cores"], pc[name]["cores"])):
            path = f"{name}/cores/{k}"
            a_small = np.asarray(a)
            for axis, idx in plan[name].keep[path]:
                a_small = np.take(a_small, idx, axis=axis)
            m = np.asarray(c.masks[path])
            np.testing.assert_allclose(np.asarray(b)[m], a_small[m], rtol=1e-4, atol=1e-6)
    moved = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        for a, b in zip(jax.tree.leaves(pa), jax.tree.leaves(r.params))
    )
    assert moved > 1e-4


def test_jax_compress_compacts_by_default(jax_lenet):
    r, x, y = jax_lenet  # compact=False
    dense = tedepr.models.get("lenet300_100", backend="jax", flax=False)
    params = dense.init(jax.random.key(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = tedepr.compress(
            dense, (x[:32], y[:32]), sparsity=0.99, format="tt", backend="jax", params=params
        )
    old = {row.name: row for row in r.report.layers}
    new = {row.name: row for row in c.report.layers}
    assert any(new[n].total < old[n].total for n in new)
    for n in new:
        assert tuple(new[n].ranks) == tuple(old[n].connected_ranks)
        assert new[n].kept == old[n].kept
    assert c.report.kept_weights == r.report.kept_weights
    assert any("compacted" in note for note in c.report.notes)
    np.testing.assert_allclose(np.asarray(c.apply(x)), np.asarray(r.apply(x)), rtol=1e-5, atol=1e-6)
    outs = []
    for res in (r, c):
        trainable = trainable_mask(res.model, res.params)
        tx = tj.make_optimizer("sgd", momentum=0.9, weight_decay=5e-4, decay_mask=trainable)
        step = jax.jit(tj.make_train_step(res.model, tx, trainable))
        masks = tj.normalize_masks(res.params, res.masks)
        p, o = res.params, tx.init(res.params)
        for k in range(3):
            xb, yb = jnp.asarray(x[16 * k : 16 * k + 16]), jnp.asarray(y[16 * k : 16 * k + 16])
            p, o, _, _ = step(p, o, masks, xb, yb, jnp.asarray(0.05, jnp.float32))
        outs.append(np.asarray(res.model.apply(p, x, res.masks)))
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-4, atol=1e-5)
    assert float(np.max(np.abs(outs[0] - np.asarray(r.apply(x))))) > 1e-3  # it trained
    with pytest.raises(TypeError, match="compact must be True or False"):
        tedepr.compress(dense, (x[:32], y[:32]), backend="jax", params=params, compact=1)


def test_jax_finalize_compacts_first(jax_lenet):
    r, x, _ = jax_lenet
    c = tj.compact(r)
    model, params = tj.finalize(r.model, r.params, r.masks)
    for name, layer in model.layers.items():
        if isinstance(layer, tj.TensorizedLinear):
            assert layer.ranks == c.model.layers[name].ranks
    np.testing.assert_allclose(
        np.asarray(model.apply(params, x)), np.asarray(r.apply(x)), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(
    "layer",
    [
        lambda: tj.TRLinear(24, 18, rank=3),
        lambda: tj.CPLinear(24, 18, rank=4),
        lambda: tj.TuckerLinear(24, 18, rank=3),
        lambda: tj.TTConv2d(4, 6, 3, padding=1, rank=3),
        lambda: tj.TuckerConv2d(4, 6, 3, padding=1, rank=3),
        lambda: tj.CPConv2d(4, 6, 3, padding=1, rank=4),
    ],
)
def test_jax_compact_other_formats(layer):
    layer = layer()
    conv = isinstance(layer, tj.TensorizedConv2d)
    model = tj.Model({"l": layer}, lambda call, x: call("l", x), (4, 7, 7) if conv else (24,))
    params = model.init(jax.random.key(1))
    rng = np.random.default_rng(1)
    masks = {p: rng.random(np.shape(a)) < 0.7 for p, a in tj.prunable_leaves(params).items()}
    fmt = layer.format
    if fmt in ("tt", "tr"):
        masks["l/cores/0"][..., 0] = False
        masks["l/cores/1"][0] = False
    elif fmt == "cp":
        for k in range(len(params["l"]["cores"])):
            masks[f"l/cores/{k}"][:, 0] = False
    else:
        masks["l/cores/0"][0] = False
        masks["l/cores/1"][:, 0] = False
    masks = {p: jnp.asarray(m) for p, m in masks.items()}
    params = tj.apply_masks(params, masks)
    report = tj.build_report(model, params, masks, dense_weights=10**6)
    r = tj.CompressionResult(model=model, params=params, masks=masks, report=report)
    c = tj.compact(r)
    dropped = sum(v.dropped for v in jax_plan(model, masks).values())
    assert c.model.layers["l"].num_weights < layer.num_weights
    assert c.report.kept_weights == r.report.kept_weights - dropped
    x = rng.standard_normal((3,) + model.input_shape).astype(np.float32)
    np.testing.assert_allclose(np.asarray(c.apply(x)), np.asarray(r.apply(x)), rtol=1e-5, atol=1e-5)


def test_compacted_model_saves_and_loads_in_both_backends(torch_lenet, tmp_path):
    r, x, _ = torch_lenet
    c = compact(r)
    path = tmp_path / "c.tedepr"
    tedepr.save(c, path)
    back = tedepr.load(path, backend="torch")
    with torch.no_grad():
        assert torch.equal(back.model(x), c.model(x))
    assert back.report.kept_weights == c.report.kept_weights
    for name, m in c.model.named_modules():
        if isinstance(m, TTLinear):
            assert back.model.get_submodule(name).ranks == m.ranks
    in_jax = tedepr.load(path, backend="jax")
    with torch.no_grad():
        np.testing.assert_allclose(
            np.asarray(in_jax.apply(x.numpy())), c.model(x).numpy(), rtol=1e-5, atol=1e-6
        )


def test_torch_compact_leaves_composite_layers_alone():
    from tedepr.backends.torch import TensorizedLSTM, tensorize

    torch.manual_seed(4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = tensorize(
            tedepr.models.get("lstm", backend="torch"), format="tt", rank=3, min_params=0
        )
    r = _hand_result(model, seed=4)
    lstm = next(m for m in model.modules() if isinstance(m, TensorizedLSTM))
    inner = {n: tuple(p.shape) for n, p in lstm.named_parameters()}
    c = compact(r)
    assert c is not r  # the classifier (a top-level TTLinear) shrinks
    lstm_c = next(m for m in c.model.modules() if isinstance(m, TensorizedLSTM))
    assert {n: tuple(p.shape) for n, p in lstm_c.named_parameters()} == inner
    x = torch.randn(3, 1, 28, 28)
    r.model.eval()
    c.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(c.model(x), r.model(x), rtol=1e-5, atol=1e-6)
