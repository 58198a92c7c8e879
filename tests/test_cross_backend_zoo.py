"""Every zoo model compresses to the same counts and the same names in both backends: the same
call keeps the same number of weights, tensorizes the same layers with the same modes and ranks,
counts the same dense weights, and names its report rows, masks keys and `count_weights` layers
alike (up to the path separator and ``cores/k`` vs ``core_k``: `canonical_name`; no per-backend
mapping — a recurrent layer's maps are ``lstm.weight_ih_l0`` / ``lstm.weight_hh_l0`` in both).
(The ViT once kept 693 weights in torch and 664 in JAX: JAX tensorized each encoder
layer as one composite, so rank allocation never reached its feed-forward maps; now a JAX
`TransformerEncoderLayer` is a container whose sublayers are judged one by one, as torch's.)"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
pytestmark = [pytest.mark.torch, pytest.mark.jax]

import tedepr  # noqa: E402
from tedepr.backends import jax as tj  # noqa: E402
from tedepr.backends import torch as tt  # noqa: E402
from tedepr.pruning.problem import canonical_name  # noqa: E402

# the zoo as users get it where that is cheap; the convolutional nets on small images (their
# layer shapes, and so the counts, scale with the image only through the classifier)
ZOO = {
    "lenet300_100": {},
    "lenet5": {},
    "lstm": {},
    "vit": {},
    "resnet18": {"image_size": 16},
    "resnet20": {"image_size": 8},
    "resnet32": {"image_size": 8},
    "resnet56": {"image_size": 8},
    "vgg16": {"image_size": 32},
    "vgg19": {"image_size": 32},
}


def test_the_list_is_the_zoo():
    assert sorted(ZOO) == sorted(tt.available()) == sorted(tj.available())


def _summary(result, backend):
    rows = [
        (canonical_name(r.name), r.kind, r.format, r.total, r.dense, r.ranks, r.in_modes)
        for r in result.report.layers
    ]
    masks = sorted(map(canonical_name, result.masks))
    if backend == "jax":
        counts = tj.count_weights(result.model, result.params, result.masks)
    else:
        counts = tt.count_weights(result.model)
    layers = sorted((canonical_name(n), c["type"], c["dense"]) for n, c in counts["layers"].items())
    return result.report.kept_weights, sorted(rows, key=str), masks, layers


#: the JAX side compares the Model (its count_weights reads params and masks); the Flax
#: default's own parity with it: tests/test_flax_zoo.py
MODEL_KIND = {"torch": {}, "jax": {"flax": False}}

# the deep variants repeat resnet20's / vgg16's blocks: long compiles, same code paths
_SLOW = ("resnet18", "resnet32", "resnet56", "vgg19")


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in _SLOW else n for n in sorted(ZOO)],
)
def test_same_compress_call_same_counts(name):
    out = {}
    for backend, module in (("torch", tt), ("jax", tj)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # layers left dense: the same in both
            result = tedepr.compress(
                module.get(name, **MODEL_KIND[backend], **ZOO[name]),
                None,
                sparsity=0.99,
                format="tt",
                score="magnitude",
                backend=backend,
                # compaction drops the bond indices the kept entries leave dead, which depends on
                # each backend's own random draws (lenet5 kept 588 vs 615 weights with it)
                compact=False,
            )
        out[backend] = _summary(result, backend)
    assert out["torch"][0] == out["jax"][0]  # kept weights
    assert out["torch"][1] == out["jax"][1]  # report rows: names, kinds, formats, counts, ranks
    assert out["torch"][2] == out["jax"][2]  # masks keys
    assert out["torch"][3] == out["jax"][3]  # count_weights layers and their types
    kept, rows, masks, _ = out["torch"]
    dense = sum(r[4] for r in rows)
    assert kept == round(0.01 * dense)  # the budget of the whole model, in both
    assert any(r[2] == "tt" for r in rows)
    if name == "lstm":  # one name per recurrent map, the interchange names
        assert {r[0] for r in rows} == {"lstm.weight_ih_l0", "lstm.weight_hh_l0", "classifier"}
        assert "lstm.weight_hh_l0" in masks and "lstm.weight_ih_l0.core_0" in masks


@pytest.mark.parametrize("fmt", ["tt", None])
@pytest.mark.parametrize("name, kw", [("vit", {"image_size": 16}), ("lenet5", {})])
def test_report_rows_in_the_model_layer_order(name, kw, fmt):
    """Both reports list their rows in the model's layer order (torch's module order): the JAX
    ViT once listed ``linear1, linear2, self_attn/k_proj, ...`` (its params' sorted keys)."""
    rows = {}
    for backend, module in (("torch", tt), ("jax", tj)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            result = module.compress(
                module.get(name, **kw), None, 0.99, fmt, "magnitude", compact=False
            )
        rows[backend] = [canonical_name(r.name) for r in result.report.layers]
    if name == "vit" and fmt is None:
        # a dense torch attention holds one packed in_proj_weight (row ``layers.0.self_attn``),
        # the JAX one q/k/v maps of their own: the rows both have, in the same order
        torch_rows, jax_rows = rows["torch"], rows["jax"]
        rows = {
            "torch": [n for n in torch_rows if n in jax_rows],
            "jax": [n for n in jax_rows if n in torch_rows],
        }
        assert "layers.0.linear1" in rows["torch"] and len(rows["torch"]) >= 8
    assert rows["torch"] == rows["jax"]
    if name == "vit" and fmt == "tt":
        assert rows["torch"][:7] == [
            "patch_embed",
            "layers.0.self_attn.q_proj",
            "layers.0.self_attn.k_proj",
            "layers.0.self_attn.v_proj",
            "layers.0.self_attn.out_proj",
            "layers.0.linear1",
            "layers.0.linear2",
        ]
    assert rows["torch"][-1] == "classifier"


def test_vit_encoder_layers_are_containers_in_jax():
    """The JAX ViT's encoder layers keep their class; attention and both feed-forward maps are
    tensorized one by one and get ranks of their own, as torch's submodules."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = {
            b: tedepr.compress(
                m.get("vit", **MODEL_KIND[b]), None, 0.99, "tt", "magnitude", backend=b
            )
            for b, m in (("torch", tt), ("jax", tj))
        }
    enc = res["jax"].model.layers["layers/0"]
    assert type(enc) is tj.TransformerEncoderLayer
    subs = enc.sublayers()
    assert isinstance(subs["self_attn"], tj.TensorizedMultiheadAttention)
    assert isinstance(subs["linear1"], tj.TTLinear) and isinstance(subs["linear2"], tj.TTLinear)
    tmod = res["torch"].model.layers[0]
    assert subs["linear1"].ranks == tmod.linear1.ranks
    assert subs["linear1"].ranks != (1,) * len(subs["linear1"].ranks)  # the budget reached it
    # the compressed JAX model runs and its masks count the budget
    x = np.random.default_rng(0).random((2, 1, 28, 28)).astype(np.float32)
    out = res["jax"].model.apply(res["jax"].params, x, res["jax"].masks)
    assert out.shape == (2, 10) and np.isfinite(np.asarray(out)).all()
    counts = tj.count_weights(res["jax"].model, res["jax"].params, res["jax"].masks)
    assert counts["kept"] == res["jax"].report.kept_weights == res["torch"].report.kept_weights


def test_encoder_sublayers_follow_globs_kinds_and_min_params():
    model = tj.get("vit", flax=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        only_ffn = tj.tensorize(model, "tt", 2, layers=("linear",), include="layers/*/linear*")
        no_attn = tj.tensorize(model, "tt", 2, exclude="*/self_attn")
        per_layer = tj.tensorize(model, "tt", 2, overrides={"layers/1/linear2": {"rank": 3}})
    subs = only_ffn.layers["layers/0"].sublayers()
    assert isinstance(subs["self_attn"], tj.MultiheadAttention)
    assert isinstance(subs["linear1"], tj.TTLinear)
    assert only_ffn.layers["patch_embed"] == model.layers["patch_embed"]  # not included
    assert isinstance(no_attn.layers["layers/1"].sublayers()["self_attn"], tj.MultiheadAttention)
    assert isinstance(no_attn.layers["layers/1"].sublayers()["linear2"], tj.TTLinear)
    l2 = per_layer.layers["layers/1"].sublayers()["linear2"]
    assert set(l2.ranks[1:-1]) == {3}
    assert set(per_layer.layers["layers/0"].sublayers()["linear2"].ranks[1:-1]) == {2}
    # a changed sublayer makes the layer unequal (transfer_params then draws it afresh)
    assert per_layer.layers["layers/0"] != model.layers["layers/0"]
    params = tj.transfer_params(model, model.init(jax.random.key(0)), per_layer, jax.random.key(1))
    assert "cores" in params["layers/1"]["linear2"]
    with pytest.raises(ValueError, match="sublayers must be among"):
        model.layers["layers/0"].with_sublayers(linear3=None)


def _stacked(kind, tensorize_hidden):
    """A stacked recurrent layer (2 layers) in both backends, inside a one-layer model."""
    t_cls = {"lstm": tt.TensorizedLSTM, "gru": tt.TensorizedGRU}[kind]
    j_cls = {"lstm": tj.TensorizedLSTM, "gru": tj.TensorizedGRU}[kind]
    opts = {"format": "tt", "rank": 2, "tensorize_hidden": tensorize_hidden}
    tnet = torch.nn.Module()
    tnet.rnn = t_cls(8, 6, 2, **opts)
    jmodel = tj.Model({"rnn": j_cls(8, 6, 2, **opts)}, lambda call, x: call("rnn", x)[0], (5, 8))
    return tnet, jmodel, jmodel.init(jax.random.key(0))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("tensorize_hidden", [False, True])
def test_stacked_recurrent_layers_have_one_name_per_map(kind, tensorize_hidden):
    import importlib

    tnet, jmodel, params = _stacked(kind, tensorize_hidden)
    t_rows = importlib.import_module("tedepr.backends.torch.compress").ADAPTER.layers(tnet, None)
    j_ad = importlib.import_module("tedepr.backends.jax.compress").ADAPTER
    j_rows = j_ad.layers(jmodel, params)
    maps = [f"rnn.weight_{w}_l{k}" for k in (0, 1) for w in ("ih", "hh")]
    for rows in (t_rows, j_rows):
        assert sorted(canonical_name(r.name) for r in rows) == sorted(maps)
    assert sorted((canonical_name(r.name), r.kind) for r in t_rows) == sorted(
        (canonical_name(r.name), r.kind) for r in j_rows
    )
    t_keys = sorted(map(canonical_name, tt.prunable_weights(tnet)))
    j_keys = sorted(map(canonical_name, tj.prunable_weights(params)))
    assert t_keys == j_keys
    hh = "rnn.weight_hh_l1" if not tensorize_hidden else "rnn.weight_hh_l1.core_0"
    assert hh in t_keys and "rnn.weight_ih_l1.core_0" in t_keys
    t_counts = {canonical_name(n): c for n, c in tt.count_weights(tnet)["layers"].items()}
    j_counts = {canonical_name(n): c for n, c in tj.count_weights(jmodel, params)["layers"].items()}
    assert {n: (c["type"], c["dense"], c["params"]) for n, c in t_counts.items()} == {
        n: (c["type"], c["dense"], c["params"]) for n, c in j_counts.items()
    }


def test_older_recurrent_params_fail_with_the_renaming():
    _, jmodel, params = _stacked("lstm", False)
    layer = jmodel.layers["rnn"]
    old = dict(params["rnn"])
    old["ih"] = old.pop("weight_ih_l0")
    x = np.zeros((5, 2, 8), np.float32)
    with pytest.raises(ValueError, match=r"older recurrent keys \['ih'\].*'ih' -> 'weight_ih_l0'"):
        layer.apply(old, x)
    layer.apply(params["rnn"], x)  # the current keys run


@pytest.mark.parametrize("num_layers", [1, 2])
def test_flax_lstm_masks_equal_the_model_zoos_and_torchs(num_layers):
    """The Flax zoo's ``lstm`` (an ``nnx.RNN`` over an ``nnx.OptimizedLSTMCell``; two layers: a
    `StackedLSTM` of them), the `Model` zoo's and torch's ``nn.LSTM`` on the same weights: the
    same float64 logits, and `compress` prunes the same entries under the same names (two layers:
    ``lstm/weight_ih_l1`` ..., one stacked layer in all three). No dropout: SNIP's gradient would
    see each backend's own random dropout masks."""
    nnx = pytest.importorskip("flax.nnx")
    import jax.numpy as jnp

    from tedepr.backends.jax import interchange as jx
    from tedepr.backends.jax import nnx as tnnx
    from tedepr.backends.torch import interchange as tx

    kw = {"image_size": 8, "hidden_size": 8, "num_layers": num_layers}
    model = tj.get("lstm", flax=False, **kw)
    params = model.init(jax.random.key(3), jnp.float64)
    flax_model = tj.get("lstm", flax=True, rngs=3, dtype=jnp.float64, **kw)
    assert isinstance(flax_model.lstm, tnnx.StackedLSTM if num_layers == 2 else nnx.RNN)
    net = tt.get("lstm", **kw).double()
    assert net.lstm.num_layers == model.layers["lstm"].num_layers == num_layers
    tx.import_arrays(net, jx.export_arrays(model, params))
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((32, 1, 8, 8)), rng.integers(0, 10, 32)
    xt = torch.tensor(x)
    with torch.no_grad():
        ref = net(xt).numpy()
    np.testing.assert_allclose(np.asarray(model.apply(params, x)), ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(flax_model(x)), ref, rtol=1e-10, atol=1e-12)
    opts = {"sparsity": 0.9, "format": None, "score": "snip", "seed": 0}
    rm = tedepr.compress(model, (x, y), params=params, backend="jax", **opts)
    rf = tedepr.compress(flax_model, (x, y), backend="jax", **opts)
    rt = tedepr.compress(net, (xt, torch.tensor(y)), backend="torch", **opts)
    names = jx.torch_names(model)
    assert sorted(rm.masks) == sorted(rf.masks)
    assert sorted(names[k] for k in rm.masks) == sorted(rt.masks)
    maps = {f"lstm.weight_{w}_l{k}" for k in range(num_layers) for w in ("ih", "hh")}
    assert maps <= set(rt.masks) and "lstm.weight_ih_l2" not in rt.masks
    for k, m in rm.masks.items():
        np.testing.assert_array_equal(np.asarray(rf.masks[k]), np.asarray(m), err_msg=k)
        np.testing.assert_array_equal(np.asarray(m).T, rt.masks[names[k]].numpy(), err_msg=k)
    assert rm.report.kept_weights == rf.report.kept_weights == rt.report.kept_weights
    rows = [[canonical_name(r.name) for r in res.report.layers] for res in (rm, rf, rt)]
    assert rows[0] == rows[1] and sorted(rows[0]) == sorted(rows[2])


def test_two_layer_lstm_masks_equal_in_torch_and_the_model_zoo():
    """``lstm`` with ``num_layers=2`` (torch's one ``nn.LSTM`` holding ``weight_ih_l0``/``_l1``,
    the `Model` zoo's one stacked `LSTM` with the same names): the same logits and the same
    masks from `compress` on the same weights, the second layer's maps pruned too. (No dropout
    here: SNIP's gradient would see each backend's own random dropout masks.)"""
    import jax.numpy as jnp

    from tedepr.backends.jax import interchange as jx
    from tedepr.backends.torch import interchange as tx

    kw = {"image_size": 8, "hidden_size": 8, "num_layers": 2}
    model = tj.get("lstm", flax=False, **kw)
    params = model.init(jax.random.key(3), jnp.float64)
    assert {"weight_ih_l1", "weight_hh_l1"} <= set(params["lstm"])
    net = tt.get("lstm", **kw).double()
    assert net.lstm.num_layers == 2 and not model.layers["lstm"].stochastic
    tx.import_arrays(net, jx.export_arrays(model, params))
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((32, 1, 8, 8)), rng.integers(0, 10, 32)
    xt = torch.tensor(x)
    with torch.no_grad():
        ref = net.eval()(xt).numpy()
    np.testing.assert_allclose(np.asarray(model.apply(params, x)), ref, rtol=1e-10, atol=1e-12)
    # the top layer's state feeds the classifier: a one-layer model on the same first layer differs
    one = tj.get("lstm", flax=False, image_size=8, hidden_size=8)
    p1 = {"lstm": {k: v for k, v in params["lstm"].items() if k.endswith("_l0")}}
    p1["classifier"] = params["classifier"]
    assert not np.allclose(np.asarray(one.apply(p1, x)), ref)
    opts = {"sparsity": 0.9, "format": None, "score": "snip", "seed": 0}
    rm = tedepr.compress(model, (x, y), params=params, backend="jax", **opts)
    rt = tedepr.compress(net, (xt, torch.tensor(y)), backend="torch", **opts)
    names = jx.torch_names(model)
    assert sorted(names[k] for k in rm.masks) == sorted(rt.masks)
    assert {"lstm.weight_ih_l1", "lstm.weight_hh_l1"} <= set(rt.masks)
    for k, m in rm.masks.items():
        np.testing.assert_array_equal(np.asarray(m).T, rt.masks[names[k]].numpy(), err_msg=k)
    assert rm.report.kept_weights == rt.report.kept_weights
    assert sorted(canonical_name(r.name) for r in rm.report.layers) == sorted(
        canonical_name(r.name) for r in rt.report.layers
    )


@pytest.mark.parametrize("flax", [False, True])
def test_lstm_options_are_one_rule_in_every_zoo(flax):
    """``num_layers``/``dropout`` are checked by `tedepr.models.check_lstm` in every zoo: the
    same errors naming the argument; dropout between the stacked layers draws in training only
    in every zoo (the Flax one's ``nnx.Dropout`` follows ``model.train()`` / ``model.eval()``,
    and under the bridge the pipeline draws it exactly as for the `Model`)."""
    if flax:
        pytest.importorskip("flax")
        from tedepr.backends.jax import nnx as tnnx

        kw = {"image_size": 8, "hidden_size": 8, "num_layers": 2}
        model = tj.get("lstm", flax=False, dropout=0.25, **kw)
        params = model.init(jax.random.key(0))  # the Flax model's rngs=0 weights
        flax_model = tj.get("lstm", flax=True, dropout=0.25, **kw)
        assert flax_model.lstm.dropout.rate == 0.25
        x = np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32)
        y_eval = np.asarray(model.apply(params, x))
        y1, y2 = np.asarray(flax_model(x)), np.asarray(flax_model(x))  # fresh: training mode
        assert not np.allclose(y1, y2) and not np.allclose(y1, y_eval)
        flax_model.eval()
        y3 = np.asarray(flax_model(x))
        np.testing.assert_array_equal(np.asarray(flax_model(x)), y3)
        np.testing.assert_allclose(y3, y_eval, rtol=1e-5, atol=1e-6)  # flax's one bias: rounding
        flax_model.train()
        assert not np.allclose(np.asarray(flax_model(x)), y3)
        # the bridge: one stochastic stacked LSTM, dropped by the pipeline's key as the Model's
        bridge = tnnx.to_model(flax_model, (1, 8, 8))
        assert bridge.model.layers["lstm"] == model.layers["lstm"]
        assert bridge.model.layers["lstm"].stochastic
        key = jax.random.key(1)
        y_train = np.asarray(model.apply(params, x, train=True, key=key))
        assert not np.allclose(y_train, y_eval)
        got = bridge.model.apply(bridge.params, x, train=True, key=key)
        np.testing.assert_allclose(np.asarray(got), y_train, rtol=1e-5, atol=1e-6)
        one = tj.get("lstm", flax=True, image_size=8, hidden_size=8, num_layers=1, dropout=0.5)
        assert one.lstm.cell.hidden_features == 8  # one layer: the nnx.RNN, no dropout to draw
        np.testing.assert_array_equal(np.asarray(one(x)), np.asarray(one(x)))
    else:  # dropout between the stacked layers, training only, in both backends
        net = tt.get("lstm", image_size=8, hidden_size=8, num_layers=2, dropout=0.25)
        model = tj.get("lstm", flax=False, image_size=8, hidden_size=8, num_layers=2, dropout=0.25)
        assert net.lstm.dropout == 0.25 and model.layers["lstm"].stochastic
        params = model.init(jax.random.key(0))
        x = np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32)
        y_eval = np.asarray(model.apply(params, x))
        np.testing.assert_array_equal(np.asarray(model.apply(params, x)), y_eval)
        y_train = model.apply(params, x, train=True, key=jax.random.key(1))
        assert not np.allclose(np.asarray(y_train), y_eval)
        net.train()
        xt = torch.tensor(x)
        assert not torch.allclose(net(xt), net(xt))
        with torch.no_grad():
            net.eval()
            assert torch.equal(net(xt), net(xt))
    zoos = [lambda **kw: tt.get("lstm", **kw), lambda **kw: tj.get("lstm", flax=flax, **kw)]
    for get in zoos:
        with pytest.raises(ValueError, match="num_layers must be"):
            get(num_layers=0)
        with pytest.raises(TypeError, match="num_layers must be"):
            get(num_layers=1.5)
        with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\]; got 1.5"):
            get(num_layers=2, dropout=1.5)
        with pytest.raises(TypeError, match="dropout must be a number"):
            get(num_layers=2, dropout="0.1")


def test_dense_vit_report_rows_are_named_alike():
    """Dense PaI (``format=None``) on the ViT: torch's packed ``self_attn.in_proj_weight`` is
    reported as the ``q_proj``/``k_proj``/``v_proj`` rows the JAX `Model` holds apart
    (`tedepr.pipeline.layer_counts`), each counting its own third of the mask."""
    kw = {"image_size": 8, "dim": 8, "depth": 1, "heads": 2, "mlp_dim": 8}
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, 8)
    opts = {"sparsity": 0.5, "format": None, "score": "magnitude", "seed": 0}
    net = tt.get("vit", seed=0, **kw)
    rt = tedepr.compress(net, (torch.tensor(x), torch.tensor(y)), backend="torch", **opts)
    model = tj.get("vit", flax=False, **kw)
    rj = tedepr.compress(model, (x, y), params=model.init(jax.random.key(0)), backend="jax", **opts)
    names = [canonical_name(r.name) for r in rt.report.layers]
    assert sorted(names) == sorted(canonical_name(r.name) for r in rj.report.layers)
    rows = {canonical_name(r.name): r for r in rt.report.layers}
    packed = rt.masks["layers.0.self_attn.in_proj_weight"].numpy()
    for k, proj in enumerate(("q_proj", "k_proj", "v_proj")):
        row = rows[f"layers.0.self_attn.{proj}"]
        assert row.total == 64 and row.kept == int(packed[8 * k : 8 * (k + 1)].sum()) > 0
        assert row.live and row.paths == row.kept
    assert sum(r.kept for r in rt.report.layers) == rt.report.kept_weights
    # without masks too (the unpruned rows of the same model)
    unpruned = tedepr.compress(
        tt.get("vit", seed=0, **kw),
        (torch.tensor(x), torch.tensor(y)),
        backend="torch",
        **{**opts, "sparsity": 0.0},
    )
    q = {r.name: r for r in unpruned.report.layers}["layers.0.self_attn.q_proj"]
    assert q.kept == q.total == 64


def test_dense_vit_report_rows_have_the_same_kinds():
    """Dense PaI on the ViT: every row has the same (name, kind) in torch, the JAX `Model` and the
    Flax model — ``Linear`` for each dense map (torch's packed q/k/v thirds and its out_proj's
    ``NonDynamicallyQuantizableLinear``; JAX's `Dense` and its attention's internal q/k/v class)."""
    kw = {"image_size": 8, "dim": 8, "depth": 1, "heads": 2, "mlp_dim": 8}
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, 8)
    opts = {"sparsity": 0.5, "format": None, "score": "snip", "seed": 0}
    data = (torch.tensor(x), torch.tensor(y))
    reports = {"torch": tedepr.compress(tt.get("vit", seed=0, **kw), data, backend="torch", **opts)}
    model = tj.get("vit", flax=False, **kw)
    params = model.init(jax.random.key(0))
    reports["jax"] = tedepr.compress(model, (x, y), params=params, backend="jax", **opts)
    reports["flax"] = tedepr.compress(tj.get("vit", **kw), (x, y), backend="jax", **opts)
    rows = {
        b: [(canonical_name(r.name), r.kind) for r in res.report.layers]
        for b, res in reports.items()
    }
    assert rows["torch"] == rows["jax"] == rows["flax"]
    assert {kind for _, kind in rows["torch"]} == {"Linear"}
    assert len(rows["torch"]) == 8 and ("layers.0.self_attn.v_proj", "Linear") in rows["torch"]


def _counted_layers(counts) -> list[tuple[str, str]]:
    return sorted((canonical_name(n), c["type"]) for n, c in counts["layers"].items())


@pytest.mark.parametrize("fmt", [None, "tt"])
@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in _SLOW else n for n in sorted(ZOO)],
)
def test_count_weights_layers_are_the_report_rows(name, fmt):
    """`count_weights` names and types its layers as the report does, in both backends: the same
    ``(name, type)`` pairs for the same zoo model, dense and tensorized — every dense affine map is
    ``Linear`` (`tedepr.pipeline.LINEAR_KIND`; not JAX's ``Dense`` / ``_XavierPacked`` nor torch's
    ``NonDynamicallyQuantizableLinear``), and a dense torch attention's packed ``in_proj_weight``
    is the three layers ``q_proj``/``k_proj``/``v_proj`` the JAX one holds apart."""
    tmodel, jmodel = tt.get(name, seed=0, **ZOO[name]), tj.get(name, flax=False, **ZOO[name])
    if fmt is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # layers left dense: the same in both
            tmodel = tt.tensorize(tmodel, fmt, 2, min_params=0)
            jmodel = tj.tensorize(jmodel, fmt, 2, min_params=0)
    params = jmodel.init(jax.random.key(0))
    tc, jc = tt.count_weights(tmodel), tj.count_weights(jmodel, params)
    assert _counted_layers(tc) == _counted_layers(jc)
    # the report's rows: the same names and kinds, and the same counts
    for counts, report in (
        (tc, tt.build_report(tmodel, None, dense_weights=tc["dense"])),
        (jc, tj.build_report(jmodel, params, dense_weights=jc["dense"])),
    ):
        rows = {r.name: (r.kind, r.dense, r.total, r.kept) for r in report.layers}
        entries = {
            n: (c["type"], c["dense"], c["params"], c["kept"]) for n, c in counts["layers"].items()
        }
        assert entries == rows
    kinds = {kind for _, kind in _counted_layers(tc)}
    assert not kinds & {"Dense", "_XavierPacked", "NonDynamicallyQuantizableLinear"}
    if fmt is None and name in ("lenet300_100", "lenet5", "vit"):
        assert kinds == {"Linear"} if name != "lenet5" else kinds == {"Conv2d", "Linear"}
    if fmt is None and name == "vit":
        assert ("layers.0.self_attn.q_proj", "Linear") in _counted_layers(tc)
        assert "layers.0.self_attn" not in {canonical_name(n) for n in tc["layers"]}


def test_count_weights_splits_a_packed_in_proj_mask_by_projection():
    """A dense torch attention's q/k/v layers each count their own third of the packed mask."""
    kw = {"image_size": 8, "dim": 8, "depth": 1, "heads": 2, "mlp_dim": 8, "seed": 0}
    net = tt.get("vit", **kw)
    mask = torch.zeros(24, 8, dtype=torch.bool)
    mask[:3] = True  # q: 3 rows
    mask[8:9] = True  # k: 1 row
    tt.apply_masks(net, {"layers.0.self_attn.in_proj_weight": mask})
    layers = tt.count_weights(net)["layers"]
    kept = [layers[f"layers.0.self_attn.{p}"]["kept"] for p in ("q_proj", "k_proj", "v_proj")]
    assert kept == [24, 8, 0]
    assert all(layers[f"layers.0.self_attn.{p}"]["dense"] == 64 for p in ("q_proj", "k_proj"))
