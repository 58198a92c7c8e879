"""Round-4 fine-grain candidates (docs/method.md §10): mode-slice units of the structured selection
(`select_bonds(modes=...)`, the ``trainability-inmodes`` / ``trainability-modes`` scores) and the
mask-aware re-initialisation of the kept entries (`mask_aware_init`, ``trainability-reinit``),
checked against the brute-force path enumeration of `reference` and end to end in both backends."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference
import tedepr
from tedepr.formats import from_cores
from tedepr.pruning.connectivity import analyse
from tedepr.pruning.problem import CoreInfo
from tedepr.pruning.rescale import mask_aware_init, path_counts
from tedepr.pruning.structured import select_bonds


def _chain_structure(d, fmt="tt", layer="l"):
    return {f"{layer}.core_{k}": CoreInfo(layer, fmt, k, (1, 2), (0, 3)) for k in range(d)}


@st.composite
def chains(draw, ring=None):
    ring = draw(st.booleans()) if ring is None else ring
    d = draw(st.integers(2, 3))
    r0 = draw(st.integers(1, 2)) if ring else 1
    ranks = [r0, *[draw(st.integers(1, 3)) for _ in range(d - 1)], r0]
    modes = [(draw(st.integers(1, 3)), draw(st.integers(1, 3))) for _ in range(d)]
    seed = draw(st.integers(0, 2**16))
    shapes = [(ranks[k], n, m, ranks[k + 1]) for k, (n, m) in enumerate(modes)]
    return ring, shapes, seed


def _factorized(ring, cores):
    return from_cores(
        "tr" if ring else "tt",
        [np.asarray(c, dtype=np.float64) for c in cores],
        tuple(c.shape[1] for c in cores),
        tuple(c.shape[2] for c in cores),
    )


# ----------------------------------------------------------------------------- mode-slice units
@settings(max_examples=40, deadline=None)
@given(chains(ring=False), st.sampled_from(["in", "out", "inout"]), st.floats(0.05, 0.95))
def test_mode_slice_selection_is_exact_and_live_and_keeps_a_slice_of_every_mode(case, modes, frac):
    _, shapes, seed = case
    rng = np.random.default_rng(seed)
    scores = {f"l.core_{k}": rng.random(s) for k, s in enumerate(shapes)}
    scores["head.weight"] = rng.random((3, 2))
    structure = {**_chain_structure(len(shapes)), "head.weight": CoreInfo("head", "dense")}
    total = sum(s.size for s in scores.values())
    keep = max(len(shapes) + 1, round(frac * total))
    out = select_bonds(scores, keep, structure, modes=modes)
    assert sum(int(m.sum()) for m in out.values()) == keep
    assert all(v.live for v in analyse(out, structure).values())
    masks = [out[f"l.core_{k}"] for k in range(len(shapes))]
    assert reference.path_count(masks) > 0
    for m in masks:  # never the last index of a mode: every input / output block keeps a slice
        assert m.any(axis=(0, 2, 3)).sum() >= 1 and m.any(axis=(0, 1, 3)).sum() >= 1


def test_a_useless_input_block_goes_as_a_whole_slice():
    # input index 0 of core 0 carries ~0 sensitivity (a blank band of pixels): with modes="in" its
    # whole slice (1·1·2·2 = 4 entries) goes, and no bond index; with modes="none" it cannot
    s0 = np.ones((1, 3, 2, 2))
    s0[:, 0] = 1e-3
    s1 = np.ones((2, 2, 2, 1))
    scores = {"l.core_0": s0, "l.core_1": s1}
    structure = _chain_structure(2)
    out = select_bonds(scores, 12 + 8 - 4, structure, modes="in")
    assert not out["l.core_0"][:, 0].any() and out["l.core_0"][:, 1:].all()
    assert out["l.core_1"].all()
    plain = select_bonds(scores, 12 + 8 - 4, structure)
    assert plain["l.core_0"][:, 0].any()  # bond units only: the band keeps entries
    # the output side of the same core is never cut with modes="in"
    t0 = np.ones((1, 2, 3, 2))
    t0[:, :, 0] = 1e-3
    only_in = select_bonds({"l.core_0": t0, "l.core_1": s1}, 16, structure, modes="in")
    assert only_in["l.core_0"].any(axis=(0, 1, 3)).all()
    with_out = select_bonds({"l.core_0": t0, "l.core_1": s1}, 16, structure, modes="out")
    assert not with_out["l.core_0"][:, :, 0].any()


def test_quiet_modes_remove_only_the_slices_below_the_threshold():
    # core 0's input slice 0 is quiet (0.1 of the core mean or less), slice 1 is not (0.8): with
    # quiet=0.5 only slice 0 is a unit, so the budget beyond it comes off bond indices, never slice 1
    s0 = np.ones((1, 3, 2, 2))
    s0[:, 0] = 0.1
    s0[:, 1] = 0.8
    s1 = np.ones((2, 2, 2, 1))
    structure = _chain_structure(2)
    scores = {"l.core_0": s0, "l.core_1": s1}
    out = select_bonds(scores, 20 - 4, structure, modes="in", quiet=0.5)
    assert not out["l.core_0"][:, 0].any() and out["l.core_0"][:, 1:].all()
    free = select_bonds(scores, 20 - 8, structure, modes="in")  # every slice a unit
    assert not free["l.core_0"][:, 1].any()  # slice 1 (0.8 < 1) goes next
    quiet = select_bonds(scores, 20 - 8, structure, modes="in", quiet=0.5)
    assert quiet["l.core_0"][:, 1].any()  # not quiet: it keeps entries
    assert sum(int(m.sum()) for m in quiet.values()) == 12
    assert all(v.live for v in analyse(quiet, structure).values())
    for bad in (0, 1.5, True, "0.5"):
        with pytest.raises(ValueError, match="quiet must be None or a float in"):
            select_bonds(scores, 12, structure, modes="in", quiet=bad)
        with pytest.raises(ValueError, match="quiet must be None or a float in"):
            tedepr.pruning.scores.get("trainability", quiet=bad)
    assert tedepr.pruning.scores.get("trainability-quietmodes").quiet == 0.5


def test_mode_option_errors_name_the_argument():
    s = {"l.core_0": np.ones((1, 2, 2, 1)), "l.core_1": np.ones((1, 2, 2, 1))}
    with pytest.raises(ValueError, match="modes must be one of 'none', 'in', 'out', 'inout'"):
        select_bonds(s, 4, _chain_structure(2), modes="rows")
    with pytest.raises(ValueError, match="modes must be one of"):
        tedepr.pruning.scores.get("trainability", modes="all")
    with pytest.raises(ValueError, match="reinit must be one of 'none', 'gaussian', 'orthogonal'"):
        tedepr.pruning.scores.get("trainability", reinit=True)
    with pytest.raises(ValueError, match="kind must be one of"):
        mask_aware_init([np.ones((2, 2))], [np.ones((2, 2), bool)], None, np.random.default_rng(0),
                        kind="haar")  # fmt: skip
    assert tedepr.pruning.scores.get("trainability-inmodes").modes == "in"
    assert tedepr.pruning.scores.get("trainability-modes").modes == "inout"
    assert tedepr.pruning.scores.get("trainability-reinit").reinit == "gaussian"
    assert tedepr.pruning.scores.get("trainability-orth").reinit == "orthogonal"
    assert tedepr.pruning.scores.get("trainability").modes == "none"
    assert tedepr.pruning.scores.get("trainability").reinit == "none"


# ----------------------------------------------------------------------------- path counts
@settings(max_examples=40, deadline=None)
@given(chains(), st.floats(0.2, 0.9))
def test_path_counts_match_the_brute_force_enumeration(case, density):
    ring, shapes, seed = case
    rng = np.random.default_rng(seed)
    masks = [rng.random(s) < density for s in shapes]
    f = _factorized(ring, [rng.standard_normal(s) for s in shapes])
    np.testing.assert_array_equal(path_counts(masks, f), reference.entry_path_counts(masks, ring))


# ----------------------------------------------------------------------------- mask-aware init
def _drawn_stds(weights, masks, factorized, seed, layouts=None):
    """The per-array std `mask_aware_init` used, read off its output against the same normals."""
    out = mask_aware_init(weights, masks, factorized, np.random.default_rng(seed), layouts)
    rng = np.random.default_rng(seed)
    stds = []
    for w, m, o, perm in zip(weights, masks, out, layouts or [None] * len(weights), strict=True):
        shape = w.shape if perm is None else tuple(w.shape[perm.index(i)] for i in range(w.ndim))
        z = rng.standard_normal(shape)
        z = z if perm is None else np.transpose(z, perm)
        assert not o[~m].any()  # pruned entries are exactly zero
        ratio = o[m] / z[m]
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-12)  # one std per array
        stds.append(float(ratio[0]))
    return out, stds


def _box_mask(shapes, rng):
    """A mask made of whole bond indices and mode slices (each axis keeps a random subset)."""
    d = len(shapes)
    ranks = [shapes[0][0]] + [s[3] for s in shapes]
    bonds = (
        [np.ones(1, bool)]
        + [rng.permutation(np.arange(r) < rng.integers(1, r + 1)) for r in ranks[1:-1]]
        + [np.ones(1, bool)]
    )
    masks = []
    for k, (_, n, m, _) in enumerate(shapes):
        ins = rng.permutation(np.arange(n) < rng.integers(1, n + 1))
        outs = rng.permutation(np.arange(m) < rng.integers(1, m + 1))
        masks.append(np.einsum("a,i,j,b->aijb", bonds[k], ins, outs, bonds[k + 1]) > 0)
    assert len(masks) == d
    return masks


@settings(max_examples=30, deadline=None)
@given(chains(ring=False))
def test_mask_aware_init_gives_every_live_entry_the_target_variance_on_box_masks(case):
    _, shapes, seed = case
    rng = np.random.default_rng(seed)
    cores = [rng.standard_normal(s) * rng.uniform(0.2, 2.0) for s in shapes]
    masks = _box_mask(shapes, rng)
    f = _factorized(False, cores)
    target = float(np.mean(reference.tt_to_dense(cores) ** 2))  # σ² of the unpruned init
    out, stds = _drawn_stds(cores, masks, f, seed)
    paths = reference.entry_path_counts(masks)
    live = paths > 0
    assert np.unique(paths[live]).size == 1  # a box: every live entry has the same paths
    # distinct paths are products of independent zero-mean entries: Var(W_ij) = ∏ s_k² · P_ij
    variance = np.prod(np.square(stds)) * paths[live]
    np.testing.assert_allclose(variance, target, rtol=1e-10)
    # the per-core stds keep the init's ratios between cores
    rms = [np.sqrt(np.mean(c**2)) for c in cores]
    np.testing.assert_allclose(np.array(stds) / rms, stds[0] / rms[0], rtol=1e-10)
    assert not reference.tt_to_dense(out)[~live].any()


@settings(max_examples=20, deadline=None)
@given(chains(), st.floats(0.3, 0.9))
def test_mask_aware_init_is_exact_on_average_over_the_live_entries_of_any_mask(case, density):
    ring, shapes, seed = case
    rng = np.random.default_rng(seed)
    cores = [rng.standard_normal(s) for s in shapes]
    masks = [rng.random(s) < density for s in shapes]
    paths = reference.entry_path_counts(masks, ring)
    if not (paths > 0).any():
        return
    to_dense = reference.tr_to_dense if ring else reference.tt_to_dense
    target = float(np.mean(to_dense(cores) ** 2))
    _, stds = _drawn_stds(cores, masks, _factorized(ring, cores), seed)
    mean_variance = np.prod(np.square(stds)) * paths[paths > 0].mean()
    np.testing.assert_allclose(mean_variance, target, rtol=1e-10)


def test_mask_aware_init_monte_carlo_and_dense_layout():
    rng = np.random.default_rng(0)
    shapes = [(1, 4, 3, 3), (3, 4, 3, 1)]
    cores = [rng.standard_normal(s) * 0.3 for s in shapes]
    masks = [np.ones(s, bool) for s in shapes]
    masks[0][..., 2] = False  # bond index 2 gone on both sides
    masks[1][2] = False
    masks[0][:, 0] = False  # input block 0 of core 0 gone
    f = _factorized(False, cores)
    target = float(np.mean(reference.tt_to_dense(cores) ** 2))
    draws = [
        reference.tt_to_dense(mask_aware_init(cores, masks, f, np.random.default_rng(s)))
        for s in range(3000)
    ]
    live = reference.entry_path_counts(masks) > 0
    empirical = np.mean([np.mean(w[live] ** 2) for w in draws])
    assert abs(empirical / target - 1.0) < 0.05
    # a dense weight stored (in, out) (layout (1, 0)): drawn in its canonical (out, in) layout
    w = rng.standard_normal((5, 3))
    m = rng.random((5, 3)) < 0.5
    (o,), (std,) = _drawn_stds([w], [m], None, 7, [(1, 0)])
    assert std == pytest.approx(np.sqrt(np.mean(w**2)), rel=1e-12)


def test_orthogonal_reinit_draws_an_orthogonal_kept_block_at_the_target_variance():
    rng = np.random.default_rng(1)
    shapes = [(1, 4, 3, 4), (4, 4, 3, 1)]
    cores = [rng.standard_normal(s) * 0.5 for s in shapes]
    masks = [np.ones(s, bool) for s in shapes]
    masks[0][..., 3] = False  # bond index 3 gone on both sides
    masks[1][3] = False
    masks[0][:, 1] = False  # input block 1 of core 0 gone
    f = _factorized(False, cores)
    out = mask_aware_init(cores, masks, f, np.random.default_rng(5), kind="orthogonal")
    for o, m in zip(out, masks, strict=True):
        assert not o[~m].any()
    block = out[0][:, [0, 2, 3]][..., :3].reshape(-1, 3)  # (1·3·3, 3): tall, orthogonal columns
    gram = block.T @ block
    np.testing.assert_allclose(gram, np.eye(3) * gram[0, 0], atol=1e-12)
    block = out[1][:3].reshape(-1, 1)  # (3·4·3, 1): one column
    assert np.linalg.norm(block) > 0
    # the variance over the live entries, in expectation over the draw, is the target
    target = float(np.mean(reference.tt_to_dense(cores) ** 2))
    live = reference.entry_path_counts(masks) > 0
    draws = [
        reference.tt_to_dense(
            mask_aware_init(cores, masks, f, np.random.default_rng(s), kind="orthogonal")
        )
        for s in range(3000)
    ]
    empirical = np.mean([np.mean(w[live] ** 2) for w in draws])
    assert abs(empirical / target - 1.0) < 0.05


# ----------------------------------------------------------------------------- end to end
@pytest.mark.torch
@pytest.mark.jax
@pytest.mark.parametrize(
    "method",
    [
        "trainability-inmodes",
        "trainability-modes",
        "trainability-quietmodes",
        "trainability-reinit",
        "trainability-orth",
        "trainability-isometry",
        "trainability-isometry-exact",
        "trainability-isometry-orth",
        "trainability-lookahead",
        "trainability-ntk",
        "trainability-ntk-orth",
    ],
)
def test_candidates_end_to_end_give_the_same_result_in_both_backends(method):
    """The whole pipeline on the same tensorized MLP in torch and JAX: same masks, same (re-drawn
    or rescaled) weights, the budget held exactly, every layer live."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("jax")
    import jax.numpy as jnp

    import tedepr.backends.jax as bj
    import tedepr.backends.torch as bt
    from tedepr.backends.jax import interchange as jx
    from tedepr.backends.torch import interchange as tx
    from tedepr.pruning.problem import canonical_name

    torch.manual_seed(0)
    kw = dict(num_classes=4, image_size=4, hidden=(8,))
    tmodel = bt.tensorize(bt.models.LeNet300_100(**kw).double(), "tt", rank=3, min_params=0)
    jmodel = bj.tensorize(bj.models.lenet300_100(**kw), "tt", rank=3, min_params=0)
    params, _ = jx.import_arrays(jmodel, tx.export_arrays(tmodel), dtype=jnp.float64)
    rng = np.random.default_rng(0)
    data = rng.standard_normal((16, 1, 4, 4)), rng.integers(0, 4, 16)
    before = {n: p.detach().clone() for n, p in bt.prunable_parameters(tmodel).items()}
    # compact=False: the masks and values are compared entry by entry with the cores given
    opts = dict(sparsity=0.9, format=None, score=method, seed=3, compact=False)
    rt = tedepr.compress(tmodel, data, backend="torch", **opts)
    rj = tedepr.compress(jmodel, data, backend="jax", params=params, **opts)
    keep = round(0.1 * rt.report.dense_weights)
    assert rt.report.kept_weights == rj.report.kept_weights == keep
    assert all(r.live for r in rt.report.layers) and all(r.live for r in rj.report.layers)
    structure = bj.JaxScoringProblem(rj.model, rj.params).structure()
    tweights = bt.prunable_parameters(rt.model)
    jweights = bj.prunable_leaves(rj.params)
    changed = 0
    for n, m in rj.masks.items():
        t = canonical_name(n)
        layout = structure[n].layout or tuple(range(np.ndim(m)))
        np.testing.assert_array_equal(np.transpose(np.asarray(m), layout), rt.masks[t].numpy())
        tw = (tweights[t] * rt.masks[t]).detach().numpy()
        np.testing.assert_allclose(np.transpose(np.asarray(jweights[n]), layout), tw, rtol=1e-10)
        kept = rt.masks[t].numpy()
        ratio = tw[kept] / before[t].numpy()[kept]
        changed += not np.allclose(ratio, ratio[0])  # a rescale multiplies by one factor
    if method.endswith(("-reinit", "-orth")):
        assert changed > 0  # re-drawn, not rescaled
    else:
        assert changed == 0


@pytest.mark.torch
def test_lowrank_orth_control_prunes_nothing_and_redraws_the_low_rank_network():
    """``lowrank-orth`` (`tedepr run`): the low-rank network alone (oversample 1: the ranks of
    ``lowrank``), nothing pruned, every core re-drawn with orthogonal left unfoldings."""
    torch = pytest.importorskip("torch")
    import tedepr.backends.torch as bt
    from tedepr.cli.methods import compress_options

    def model():
        torch.manual_seed(0)
        return bt.models.LeNet300_100(num_classes=4, image_size=8, hidden=(16,)).double()

    rng = np.random.default_rng(0)
    data = rng.standard_normal((16, 1, 8, 8)), rng.integers(0, 4, 16)
    opts = dict(sparsity=0.9, backend="torch", seed=1)
    low = tedepr.compress(model(), data, **opts, **compress_options("lowrank", "tt"))
    with pytest.warns(UserWarning, match="nothing pruned"):
        ctrl = tedepr.compress(model(), data, **opts, **compress_options("lowrank-orth", "tt"))
    assert ctrl.masks == {}
    assert [(r.name, r.ranks, r.kept) for r in ctrl.report.layers] == [
        (r.name, r.ranks, r.kept) for r in low.report.layers
    ]
    lw, cw = bt.prunable_parameters(low.model), bt.prunable_parameters(ctrl.model)
    for n, w in cw.items():
        w = w.detach().numpy()
        assert not np.allclose(w, lw[n].detach().numpy())  # re-drawn
        left = w.reshape(-1, w.shape[-1])
        gram = left.T @ left if left.shape[0] >= left.shape[1] else left @ left.T
        np.testing.assert_allclose(gram, np.eye(len(gram)) * gram[0, 0], atol=1e-10)


# ----------------------------------------------------------------------------- Round 8 candidates
def _tt_problem(seed=0):
    torch = pytest.importorskip("torch")
    import tedepr.backends.torch as bt

    torch.manual_seed(seed)
    model = bt.tensorize(
        bt.models.LeNet300_100(num_classes=4, image_size=4, hidden=(8,)).double(),
        "tt",
        rank=3,
        min_params=0,
    )
    rng = np.random.default_rng(seed)
    data = (
        torch.as_tensor(rng.standard_normal((16, 1, 4, 4))),
        torch.as_tensor(rng.integers(0, 4, 16)),
    )
    return bt.TorchScoringProblem(model, data, input_shape=(1, 4, 4))


@pytest.mark.torch
def test_lookahead_candidate_ranks_bond_units_by_the_prospr_saliency():
    """``trainability-lookahead`` = `select_bonds` over ProsPr's look-ahead saliency (same steps
    and lr), not over the saliency at init; its masks are `select_bonds`' of those scores."""
    from tedepr.pruning import scores as registry

    problem = _tt_problem()
    rng = np.random.default_rng(0)
    cand = registry.get("trainability-lookahead", steps=2, lr=0.05)
    got = cand.importance(problem, None, rng)
    want = registry.get("prospr", steps=2, lr=0.05).importance(problem, None, rng)
    at_init = registry.get("trainability").importance(problem, None, rng)
    assert got.keys() == want.keys()
    for n in got:
        np.testing.assert_array_equal(got[n].numpy(), want[n].numpy())
    assert any(not np.allclose(got[n].numpy(), at_init[n].numpy()) for n in got)
    total = sum(v.numel() for v in got.values())
    keep = total // 5
    masks = registry.prune(problem, cand, keep)
    expect = select_bonds(got, keep, problem.structure())
    assert sum(int(m.sum()) for m in masks.values()) == keep
    for n in masks:
        np.testing.assert_array_equal(masks[n].numpy(), expect[n].numpy())


@pytest.mark.torch
def test_ntk_candidate_averages_independent_ntksap_draws():
    """``trainability-ntk``'s importance is the mean of ``draws`` NTK-SAP saliencies, each drawn
    from the same generator in turn (one draw = NTK-SAP's own one-shot saliency)."""
    from tedepr.pruning import scores as registry

    problem = _tt_problem(1)
    ntk = registry.get("ntksap", eps=0.02, samples=7)
    one = registry.get("trainability-ntk", draws=1, eps=0.02, samples=7)
    three = registry.get("trainability-ntk", draws=3, eps=0.02, samples=7)
    a = one.importance(problem, None, np.random.default_rng(5))
    b = ntk.importance(problem, None, np.random.default_rng(5))
    for n in a:
        np.testing.assert_allclose(a[n].numpy(), b[n].numpy(), rtol=1e-12)
    rng = np.random.default_rng(9)
    draws = [ntk.importance(problem, None, rng) for _ in range(3)]
    got = three.importance(problem, None, np.random.default_rng(9))
    for n in got:
        mean = sum(d[n].numpy() for d in draws) / 3
        np.testing.assert_allclose(got[n].numpy(), mean, rtol=1e-12)
    assert not three.needs_data


def test_round8_candidate_option_errors_name_the_argument():
    from tedepr.pruning import scores as registry

    with pytest.raises(ValueError, match="steps"):
        registry.get("trainability-lookahead", steps=-1)
    with pytest.raises(ValueError, match="lr"):
        registry.get("trainability-lookahead", lr=0.0)
    with pytest.raises(ValueError, match="draws"):
        registry.get("trainability-ntk", draws=0)
    with pytest.raises(ValueError, match="eps"):
        registry.get("trainability-ntk", eps=-1.0)
