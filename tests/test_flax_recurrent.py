"""Flax recurrent layers through the bridge: an ``nnx.RNN`` over an ``nnx.LSTMCell`` /
``nnx.OptimizedLSTMCell`` is the pipeline's `LSTM` (flax's one bias as ``bias_hh``, ``bias_ih = 0``;
the sum goes back), with ``nnx.RNN``'s options; `compress`, `fit` and `tensorize` run on a user's
model holding one, its masks equal torch's for the same weights and seed; what does not map
exactly (GRUCell, other cells and functions, Bidirectional, a bare cell) is refused."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

jax = pytest.importorskip("jax")
nnx = pytest.importorskip("flax.nnx")
pytestmark = pytest.mark.jax

import jax.numpy as jnp  # noqa: E402

import tedepr  # noqa: E402
import tedepr.backends.jax as tj  # noqa: E402
from tedepr.backends.jax import nnx as tnnx  # noqa: E402
from tedepr.pruning.problem import canonical_name  # noqa: E402

T, F, H, C = 6, 8, 5, 4  # steps, features, hidden units, classes


class SeqNet(nnx.Module):
    """The user's model: an LSTM over ``(B, T, F)`` (time first with ``time_major``), a Linear on
    the last hidden state (from the carry, or the last output)."""

    def __init__(self, rngs, cell=nnx.LSTMCell, dtype=jnp.float32, **rnn):
        self.rnn = nnx.RNN(cell(F, H, param_dtype=dtype, rngs=rngs), **rnn)
        self.head = nnx.Linear(H, C, param_dtype=dtype, rngs=rngs)
        self.carry = bool(rnn.get("return_carry"))
        self.time_major = bool(rnn.get("time_major"))

    def __call__(self, x):
        out = self.rnn(x)
        if self.carry:
            (_, h), _ = out
            return self.head(h)
        return self.head(out[-1] if self.time_major else out[:, -1])


def _random_biases(model, seed=0):
    """flax initialises the LSTM biases to zero: nonzero ones, so the mapping of the bias shows."""
    for k, (_, node) in enumerate(nnx.iter_graph(model)):
        if isinstance(node, nnx.Linear) and node.use_bias:
            b = node.bias[...]
            node.bias[...] = jax.random.normal(jax.random.key(seed + k), b.shape, b.dtype)
    return model


def _max_diff(a, b):
    return max(
        float(jnp.max(jnp.abs(u - v))) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


TOL = 2e-6  # float32 (the cells sum in another order than the pure layer)


# ------------------------------------------------------------------------------ the mapping
@pytest.mark.parametrize("cell", [nnx.LSTMCell, nnx.OptimizedLSTMCell])
def test_bridge_computes_the_flax_rnn(cell):
    x = jax.random.normal(jax.random.key(1), (3, T, F), jnp.float32)
    for rnn in ({}, {"time_major": True}, {"return_carry": True}, {"reverse": True}):
        model = _random_biases(SeqNet(nnx.Rngs(0), cell, **rnn))
        xi = jnp.swapaxes(x, 0, 1) if rnn.get("time_major") else x
        bridge = tnnx.to_model(model, xi.shape[1:])
        layer, p = bridge.model.layers["rnn"], bridge.params["rnn"]
        assert type(layer) is tj.LSTM and layer.batch_first is not rnn.get("time_major", False)
        # the packed torch-order layout: gate i's input kernel is the first H columns
        first = model.rnn.cell.ii.kernel if cell is nnx.LSTMCell else model.rnn.cell.dense_i.kernel
        np.testing.assert_array_equal(p["weight_ih_l0"][:, :H], first[...][:, :H])
        assert not np.any(np.asarray(p["bias_ih_l0"])) and np.any(np.asarray(p["bias_hh_l0"]))
        assert _max_diff(bridge.model.apply(bridge.params, xi), model(xi)) < TOL, rnn
        # and back: the user's nnx.RNN with its cell, the same arrays (the bias sum of 0 + b)
        back = bridge.rebuild(bridge.model, bridge.params)
        assert type(back.rnn) is nnx.RNN and type(back.rnn.cell) is cell
        for a, b in zip(
            jax.tree.leaves(nnx.state(back, nnx.Param)),
            jax.tree.leaves(nnx.state(model, nnx.Param)),
        ):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # nonzero bias_ih (after training both move) goes back as the sum: the same function
    p = dict(bridge.params["rnn"])
    p["bias_ih_l0"] = jnp.full_like(p["bias_ih_l0"], 0.25)
    p["bias_hh_l0"] = p["bias_hh_l0"] - 0.25
    moved = bridge.rebuild(bridge.model, {**bridge.params, "rnn": p})
    assert type(moved.rnn) is nnx.RNN
    assert _max_diff(moved(x), bridge.model.apply(bridge.params, x)) < TOL
    assert _max_diff(moved(x), model(x)) < TOL


def test_the_nnx_rnn_module_follows_nnx_rnn_call_options():
    """`tnnx.RNN` (what a tensorized or pruned nnx.RNN becomes) takes nnx.RNN's call: every
    override, seq_lengths with reverse, an initial carry (c, h), extra batch axes."""
    flax_rnn = _random_biases(SeqNet(nnx.Rngs(2))).rnn
    bridge = tnnx.to_model(SeqNet(nnx.Rngs(2)), (T, F))
    layer = bridge.model.layers["rnn"]
    params = tnnx._rnn(flax_rnn)[1]
    ours = tnnx.RNN.wrap(layer, params)
    assert ours.options == tnnx.RNNOptions()
    x = jax.random.normal(jax.random.key(3), (4, T, F), jnp.float32)
    carry = (
        jax.random.normal(jax.random.key(4), (4, H), jnp.float32),
        jax.random.normal(jax.random.key(5), (4, H), jnp.float32),
    )
    lengths = jnp.array([T, 2, 4, 1])
    calls = [
        {},
        {"return_carry": True},
        {"reverse": True, "keep_order": True},
        {"reverse": True, "seq_lengths": lengths},
        {"seq_lengths": lengths},
        {"initial_carry": carry, "return_carry": True},
    ]
    for kw in calls:
        assert _max_diff(ours(x, **kw), flax_rnn(x, **kw)) < TOL, kw
    xt = jnp.swapaxes(x, 0, 1)
    assert _max_diff(ours(xt, time_major=True), flax_rnn(xt, time_major=True)) < TOL
    x4 = jnp.reshape(jnp.concatenate([x, x]), (2, 4, T, F))  # two batch axes
    got, want = ours(x4, return_carry=True), flax_rnn(x4, return_carry=True)
    assert jax.tree.map(jnp.shape, got) == jax.tree.map(jnp.shape, want)
    assert _max_diff(got, want) < TOL
    np.testing.assert_allclose(ours(x[0]), flax_rnn(x[0]), atol=TOL)  # no batch axis
    assert _max_diff(nnx.jit(lambda m, v: m(v))(ours, x), flax_rnn(x)) < TOL
    with pytest.raises(ValueError, match="seq_lengths with return_carry=True is not supported"):
        ours(x, seq_lengths=lengths, return_carry=True)
    with pytest.raises(TypeError, match="layer must be a recurrent layer"):
        tnnx.RNN.wrap(tj.Dense(4, 4), tj.Dense(4, 4).init(jax.random.key(0)))
    two = tj.LSTM(F, H, 2)
    with pytest.raises(ValueError, match="num_layers must be 1"):
        tnnx.RNN.wrap(two, two.init(jax.random.key(0)))
    with pytest.raises(ValueError, match="options must be an RNNOptions with time_major=False"):
        tnnx.RNN.wrap(layer, params, options=tnnx.RNNOptions(time_major=True))


# ------------------------------------------------------------------------------ the pipeline
def _torch_twin(model):
    """The same network in torch: nn.LSTM (bias_ih 0, bias_hh flax's bias) + nn.Linear."""
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(F, H, batch_first=True)
            self.head = torch.nn.Linear(H, C)

        def forward(self, x):
            return self.head(self.rnn(x)[1][0][-1])

    net = Net().double()
    p = tnnx._rnn(model.rnn)[1]
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0"):
            getattr(net.rnn, name).copy_(torch.tensor(np.asarray(p[name]).T))
        for name in ("bias_ih_l0", "bias_hh_l0"):
            getattr(net.rnn, name).copy_(torch.tensor(np.asarray(p[name])))
        net.head.weight.copy_(torch.tensor(np.asarray(model.head.kernel[...]).T))
        net.head.bias.copy_(torch.tensor(np.asarray(model.head.bias[...])))
    return net


@pytest.mark.torch
@pytest.mark.parametrize("fmt", [None, "tt"])
def test_compress_fit_and_the_torch_masks(fmt):
    torch = pytest.importorskip("torch")
    from tedepr.backends import torch as tt
    from tedepr.backends.jax import interchange as jx
    from tedepr.backends.torch import interchange as tx

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((32, T, F)), rng.integers(0, C, 32)
    model = _random_biases(SeqNet(nnx.Rngs(0), dtype=jnp.float64))
    net = _torch_twin(model)
    sparsity = 0.8
    if fmt == "tt":  # tensorize both, then the torch cores into the NNX model: identical cores
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the small head stays dense in both
            model = tnnx.tensorize(model, "tt", rank=2, min_params=0)
            net = tt.tensorize(net, "tt", rank=2, min_params=0)
        assert isinstance(model.rnn, tnnx.RNN) and isinstance(model.rnn.layer, tj.TensorizedLSTM)
        bridge = tnnx.to_model(model, (T, F))
        params, _ = jx.import_arrays(bridge.model, tx.export_arrays(net), dtype=jnp.float64)
        model = bridge.rebuild(bridge.model, params)
        sparsity = 0.5
    xt = torch.tensor(x)
    np.testing.assert_allclose(
        np.asarray(model(jnp.asarray(x))), net(xt).detach().numpy(), rtol=1e-10, atol=1e-12
    )
    rj = tedepr.compress(model, (x, y), sparsity, format=None, backend="jax", seed=0)
    rt = tedepr.compress(net, (xt, torch.tensor(y)), sparsity, format=None, backend="torch", seed=0)
    names = jx.torch_names(rj.jax_model)
    assert sorted(names[k] for k in rj.masks) == sorted(rt.masks) and len(rt.masks) >= 3
    for k, mj in rj.masks.items():
        mj = np.asarray(mj)
        mt = rt.masks[names[k]].numpy()
        np.testing.assert_array_equal(mj.T if mj.shape != mt.shape else mj, mt, err_msg=k)
    assert rj.report.kept_weights == rt.report.kept_weights
    # the same rows (NNX walks attributes by name: head before rnn, without a layer_order hint)
    rows = [sorted(canonical_name(r.name) for r in res.report.layers) for res in (rj, rt)]
    assert rows[0] == rows[1]
    # pruned: the NNX RNN module around the pipeline's layer, with its masks
    assert isinstance(rj.model.rnn, tnnx.RNN) and rj.model.rnn.masks is not None
    np.testing.assert_allclose(
        np.asarray(rj.model(jnp.asarray(x))),
        np.asarray(rj.jax_model.apply(rj.params, jnp.asarray(x), rj.masks)),
        rtol=1e-12,
    )
    # a few steps of fit: the kept entries train, the pruned stay zero, the result is NNX
    done = tj.fit(rj.model, None, (x, y), epochs=3, batch_size=8, lr=0.1, progress=False, seed=0)
    assert done.history[-1]["train_loss"] < done.history[0]["train_loss"]
    trained = tnnx.to_model(done.model, (T, F))
    assert sorted(trained.masks) == sorted(rj.masks)
    w = trained.params["rnn"]["weight_hh_l0"]
    m = np.asarray(rj.masks["rnn/weight_hh_l0"])
    assert not np.any(np.asarray(w)[~m])
    assert np.any(np.asarray(w)[m] != np.asarray(rj.params["rnn"]["weight_hh_l0"])[m])
    np.testing.assert_allclose(
        np.asarray(done.model(jnp.asarray(x))),
        np.asarray(rj.jax_model.apply(done.params, jnp.asarray(x), rj.masks)),
        rtol=1e-10,
    )


def test_score_and_dense_fit_give_the_flax_rnn_back():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((16, T, F)).astype(np.float32), rng.integers(0, C, 16)
    model = SeqNet(nnx.Rngs(0), nnx.OptimizedLSTMCell, return_carry=True)
    scores = tj.score(model, (x, y), "snip")
    assert set(scores) == {"rnn/weight_ih_l0", "rnn/weight_hh_l0", "head/weight"}
    assert scores["rnn/weight_ih_l0"].shape == (F, 4 * H)
    done = tj.fit(model, None, (x, y), epochs=2, batch_size=8, lr=0.1, progress=False)
    # no masks, dense: the trained weights in the user's own nnx.RNN(OptimizedLSTMCell)
    assert type(done.model.rnn) is nnx.RNN and type(done.model.rnn.cell) is nnx.OptimizedLSTMCell
    bias = done.params["rnn"]["bias_ih_l0"] + done.params["rnn"]["bias_hh_l0"]
    np.testing.assert_array_equal(done.model.rnn.cell.dense_h.bias[...], bias)
    assert np.any(np.asarray(done.params["rnn"]["bias_ih_l0"]) != 0)  # both biases trained
    np.testing.assert_allclose(
        done.model(x), tnnx.to_model(model, (T, F)).model.apply(done.params, x), atol=TOL
    )


# ------------------------------------------------------------------------------ stacked layers
class StackNet(nnx.Module):
    """A user's model with two stacked LSTM layers and a Linear on the top layer's last state:
    a `tnnx.StackedLSTM` ``lstm``, or (``own=True``) the user's own ``nnx.List`` of two
    ``nnx.RNN`` s ``rnns``."""

    def __init__(self, rngs, own=False, dropout=0.0):
        if own:
            cells = (nnx.OptimizedLSTMCell(F, H, rngs=rngs), nnx.OptimizedLSTMCell(H, H, rngs=rngs))
            self.rnns = nnx.List([nnx.RNN(c) for c in cells])
        else:
            self.lstm = tnnx.StackedLSTM(F, H, 2, dropout, rngs=rngs)
        self.head = nnx.Linear(H, C, rngs=rngs)
        self.own = own

    def __call__(self, x):
        if self.own:
            for rnn in self.rnns:
                x = rnn(x)
            return self.head(x[:, -1])
        _, (h_n, _) = self.lstm(x)
        return self.head(h_n[-1])


class Holder(nnx.Module):
    def __init__(self, lstm):
        self.lstm = lstm

    def __call__(self, x):
        return self.lstm(x)[0]


def test_stacked_lstm_is_one_stacked_layer_with_torchs_names():
    """A `StackedLSTM` is routed as ONE stacked `LSTM` (``lstm/weight_ih_l0`` ... ``_l1``, as
    torch's ``nn.LSTM`` and the `Model` zoo name them); a stack of ``nnx.RNN`` s the user wrote
    stays two one-layer LSTMs named by their paths. Its call is torch's (state ``(L, B, H)``,
    ``(h, c)``), the same through the compressed `tnnx.LSTM`; time first too."""
    x = jax.random.normal(jax.random.key(1), (3, T, F), jnp.float32)
    y = jnp.asarray([0, 1, 2])
    model = _random_biases(StackNet(nnx.Rngs(0)))
    bridge = tnnx.to_model(model, (T, F))
    assert sorted(bridge.model.layers) == ["head", "lstm"]  # (NNX walks attributes sorted)
    assert bridge.model.layers["lstm"] == tj.LSTM(F, H, 2, batch_first=True)
    p = bridge.params["lstm"]
    assert sorted(p) == sorted(
        f"{w}_l{k}" for k in (0, 1) for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    )
    cell = model.lstm.layers[1].cell
    np.testing.assert_array_equal(p["weight_ih_l1"], cell.dense_i.kernel[...])
    np.testing.assert_array_equal(p["bias_hh_l1"], cell.dense_h.bias[...])
    assert not np.any(p["bias_ih_l1"])
    np.testing.assert_allclose(bridge.model.apply(bridge.params, x), model(x), atol=TOL)
    own = tnnx.to_model(StackNet(nnx.Rngs(0), own=True), (T, F))
    assert sorted(own.model.layers) == ["head", "rnns/0", "rnns/1"]
    assert all(own.model.layers[f"rnns/{k}"].num_layers == 1 for k in (0, 1))
    # torch's call: an initial (h_0, c_0) of (L, B, H) each, every layer's last state back
    state = tuple(jax.random.normal(jax.random.key(k), (2, 3, H), jnp.float32) for k in (2, 3))
    out, (h_n, c_n) = model.lstm(x, state)
    assert out.shape == (3, T, H) and h_n.shape == c_n.shape == (2, 3, H)
    (c0, h0), mid = model.lstm.layers[0](
        x, initial_carry=(state[1][0], state[0][0]), return_carry=True
    )
    (c1, h1), top = model.lstm.layers[1](
        mid, initial_carry=(state[1][1], state[0][1]), return_carry=True
    )
    assert _max_diff((out, h_n, c_n), (top, jnp.stack([h0, h1]), jnp.stack([c0, c1]))) == 0
    wrapped = tnnx.LSTM.wrap(bridge.model.layers["lstm"], p)  # the compressed form, unmasked
    assert _max_diff(wrapped(x, state), (out, (h_n, c_n))) < TOL
    one = tnnx.StackedLSTM(F, H, rngs=nnx.Rngs(0))  # one layer: still (1, B, H) states
    b1 = tnnx.to_model(Holder(one), (T, F))
    assert b1.model.layers["lstm"] == tj.LSTM(F, H, 1, batch_first=True)
    s1 = tuple(a[:1] for a in state)
    wrapped = tnnx.LSTM.wrap(b1.model.layers["lstm"], b1.params["lstm"])
    assert _max_diff(wrapped(x, s1), one(x, s1)) < TOL
    # time first: the same weights (same draws) on (T, B, F)
    tm = tnnx.StackedLSTM(F, H, 2, batch_first=False, rngs=nnx.Rngs(0))
    bm = tnnx.StackedLSTM(F, H, 2, rngs=nnx.Rngs(0))
    o_t, (h_t, _) = tm(jnp.swapaxes(x, 0, 1))
    o_b, (h_b, _) = bm(x)
    assert _max_diff((jnp.swapaxes(o_t, 0, 1), h_t), (o_b, h_b)) < TOL
    assert tnnx.to_model(Holder(tm), (T, F)).model.layers["lstm"].batch_first is False
    # compress: one stacked layer pruned, given back as a tnnx.LSTM (a dense fit: a StackedLSTM)
    r = tnnx.compress(model, (x, y), sparsity=0.5, format=None, score="magnitude")
    assert isinstance(r.model.lstm, tnnx.LSTM) and r.model.lstm.layer.num_layers == 2
    assert {"lstm/weight_ih_l1", "lstm/weight_hh_l1"} <= set(r.masks)
    np.testing.assert_allclose(r.model(x), r.jax_model.apply(r.params, x, r.masks), atol=TOL)
    done = tnnx.fit(model, train_data=(x, y), epochs=1, batch_size=3, progress=False)
    assert type(done.model.lstm) is tnnx.StackedLSTM
    tensorized = tnnx.tensorize(model, "tt", rank=2, min_params=64)
    assert isinstance(tensorized.lstm.layer, tj.TensorizedLSTM)


def test_stacked_lstm_refuses_bad_input():
    r = nnx.Rngs(0)
    with pytest.raises(TypeError, match="rngs must be an nnx.Rngs; got int"):
        tnnx.StackedLSTM(F, H, 2, rngs=0)
    with pytest.raises(ValueError, match="num_layers must be"):
        tnnx.StackedLSTM(F, H, 0, rngs=r)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\]"):
        tnnx.StackedLSTM(F, H, 2, 1.5, rngs=r)
    with pytest.raises(TypeError, match="batch_first must be a bool"):
        tnnx.StackedLSTM(F, H, 2, batch_first="yes", rngs=r)
    stack = tnnx.StackedLSTM(F, H, 2, rngs=r)
    with pytest.raises(
        ValueError, match=r"x must have shape \(B, T, input_size\) with input_size=8"
    ):
        stack(jnp.zeros((2, T, F + 1)))
    gru = tj.GRU(F, H, 2)
    with pytest.raises(TypeError, match="layer must be an LSTM or TensorizedLSTM"):
        tnnx.LSTM.wrap(gru, gru.init(jax.random.key(0)))
    # a layer that does not map: the whole stack is refused, naming the layer and the reason
    model = StackNet(r)
    model.lstm.layers[1] = nnx.RNN(nnx.GRUCell(H, H, rngs=r))
    with pytest.raises(
        ValueError,
        match=r"StackedLSTM at 'lstm' does not map: its layers/1 does "
        "not map: its nnx.GRUCell has no hidden bias",
    ):
        tnnx.to_model(model, (T, F))
    model = StackNet(r, dropout=0.5)
    model.lstm.dropout = nnx.Dropout(0.5, broadcast_dims=(1,), rngs=r)
    with pytest.raises(ValueError, match="its dropout is not a plain nnx.Dropout"):
        tnnx.to_model(model, (T, F))
    # a stack with a drawing dropout is routed whole: its random stream is no model state
    assert tnnx.to_model(StackNet(r, dropout=0.5), (T, F)).model.layers["lstm"].stochastic


# ------------------------------------------------------------------------------ refusals
class Loop(nnx.Module):
    """A cell stepped by the model's own loop (not inside an nnx.RNN)."""

    def __init__(self, rngs):
        self.cell = nnx.LSTMCell(F, H, rngs=rngs)
        self.head = nnx.Linear(H, C, rngs=rngs)

    def __call__(self, x):
        carry = self.cell.initialize_carry(x[:, 0].shape, nnx.Rngs(0))
        for t in range(x.shape[1]):
            carry, h = self.cell(carry, x[:, t])
        return self.head(h)


class Both(nnx.Module):
    def __init__(self, rngs):
        fwd, bwd = (nnx.RNN(nnx.LSTMCell(F, H, rngs=rngs)) for _ in range(2))
        self.bi = nnx.Bidirectional(fwd, bwd)
        self.head = nnx.Linear(2 * H, C, rngs=rngs)

    def __call__(self, x):
        return self.head(self.bi(x)[:, -1])


class WithLengths(SeqNet):
    def __init__(self, rngs):
        super().__init__(rngs)

    def __call__(self, x):
        (_, h), _ = self.rnn(x, seq_lengths=jnp.full((x.shape[0],), T), return_carry=True)
        return self.head(h)


def _with_cell(cell):
    model = SeqNet(nnx.Rngs(0))
    model.rnn = nnx.RNN(cell)
    return model


def test_what_does_not_map_is_refused_clearly():
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((4, T, F)).astype(np.float32), rng.integers(0, C, 4))
    r = nnx.Rngs(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # flax warns on carry_init in __init__
        init = nnx.LSTMCell(F, H, carry_init=nnx.initializers.ones_init(), rngs=r)
    cases = [
        (
            nnx.GRUCell(F, H, rngs=r),
            r"RNN at 'rnn' does not map: its nnx.GRUCell has no hidden bias.*b_hn",
        ),
        (nnx.SimpleCell(F, H, rngs=r), r"RNN at 'rnn' does not map: its cell is a SimpleCell"),
        (nnx.LSTMCell(F, H, gate_fn=jax.nn.hard_sigmoid, rngs=r), "gate_fn / activation_fn"),
        (nnx.LSTMCell(F, H, activation_fn=jax.nn.relu, rngs=r), "gate_fn / activation_fn"),
        (init, "a carry_init"),
    ]
    for cell, match in cases:
        with pytest.raises(ValueError, match=match):
            tj.compress(_with_cell(cell), data, 0.5, format=None, score="snip")
    with pytest.raises(ValueError, match=r"Bidirectional at 'bi' does not map"):
        tj.score(Both(r), data, "snip")
    with pytest.raises(ValueError, match=r"LSTMCell at 'cell' outside an nnx.RNN"):
        tj.fit(Loop(r), None, data, epochs=1, progress=False)
    # seq_lengths with return_carry at call time: refused inside the bridge's forward
    with pytest.raises(ValueError, match="'rnn': seq_lengths with return_carry=True"):
        tj.score(WithLengths(r), data, "snip")
    # tensorize leaves a recurrent module that does not map, with a warning, and its cell alone
    gru = _with_cell(nnx.GRUCell(F, H, rngs=r))
    gru.head = nnx.Linear(64, 64, rngs=r)  # large enough to be tensorized (no forward here)
    with pytest.warns(UserWarning, match="tensorize leaves RNN at 'rnn'.*GRUCell"):
        out = tnnx.tensorize(gru, "tt", rank=2, min_params=0)
    assert type(out.rnn) is nnx.RNN and type(out.rnn.cell.dense_i) is nnx.Linear
    assert isinstance(out.head, tnnx.TTLinear)
