"""Zoo parity of the recurrent layers: the JAX GRU / TensorizedGRU and the stacked LSTMs with dropout
compute what torch's ``nn.GRU`` / ``nn.LSTM`` and tedepr's torch layers compute, on copied weights."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
pytestmark = [pytest.mark.torch, pytest.mark.jax]

import jax.numpy as jnp  # noqa: E402
from torch import nn  # noqa: E402

from tedepr.backends import jax as tj  # noqa: E402
from tedepr.backends import torch as tt  # noqa: E402
from tedepr.backends.jax import interchange as jx  # noqa: E402
from tedepr.backends.torch import interchange as tx  # noqa: E402

T, B, F, H = 5, 3, 12, 6
TOL = {"rtol": 2e-5, "atol": 2e-6}


def _copy_dense(rnn: nn.RNNBase) -> dict:
    """JAX params of a dense LSTM/GRU from a torch one (the same keys: ``weight_ih_l{k}``, ...)."""
    out = {}
    for k in range(rnn.num_layers):
        s = f"_l{k}"
        out[f"weight_ih{s}"] = jnp.asarray(getattr(rnn, f"weight_ih_l{k}").detach().numpy().T)
        out[f"weight_hh{s}"] = jnp.asarray(getattr(rnn, f"weight_hh_l{k}").detach().numpy().T)
        if rnn.bias:
            for b in ("bias_ih", "bias_hh"):
                out[f"{b}{s}"] = jnp.asarray(getattr(rnn, f"{b}_l{k}").detach().numpy())
    return out


def _x(seed=0, batch_first=False):
    x = np.random.default_rng(seed).standard_normal((B, T, F) if batch_first else (T, B, F))
    return x.astype(np.float32)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_dense_layers_match_torch_on_copied_weights(kind, num_layers, bias):
    torch.manual_seed(num_layers)
    batch_first = num_layers == 2
    ref = (nn.LSTM if kind == "lstm" else nn.GRU)(
        F, H, num_layers=num_layers, bias=bias, batch_first=batch_first
    )
    layer = (tj.LSTM if kind == "lstm" else tj.GRU)(F, H, num_layers, bias, batch_first)
    params = _copy_dense(ref)
    assert jax.tree.structure(params) == jax.tree.structure(layer.init(jax.random.key(0)))
    x = _x(num_layers, batch_first)
    with torch.no_grad():
        y_ref, final_ref = ref(torch.from_numpy(x))
    y, final = jax.jit(layer.apply)(params, x)
    np.testing.assert_allclose(np.asarray(y), y_ref.numpy(), **TOL)
    h_ref = final_ref[0] if kind == "lstm" else final_ref
    h = final[0] if kind == "lstm" else final
    # one layer: (B, H) as the JAX layers always had; several: torch's (num_layers, B, H)
    want = h_ref[0].numpy() if num_layers == 1 else h_ref.numpy()
    np.testing.assert_allclose(np.asarray(h), want, **TOL)
    if kind == "lstm":
        c_want = final_ref[1][0].numpy() if num_layers == 1 else final_ref[1].numpy()
        np.testing.assert_allclose(np.asarray(final[1]), c_want, **TOL)


def test_gru_gate_order_is_r_z_n():
    # with only the n-gate's input weights nonzero, h_t = (1 - 1/2) * tanh(x W_in) + h_{t-1} / 2;
    # a layer with another gate order would put these weights on r or z instead
    layer = tj.GRU(2, 1, bias=False)
    w_ih = np.zeros((2, 3), np.float32)
    w_ih[:, 2] = (1.0, -2.0)
    params = {"weight_ih_l0": jnp.asarray(w_ih), "weight_hh_l0": jnp.zeros((1, 3), jnp.float32)}
    x = np.array([[[0.5, 0.25]], [[1.0, 0.0]]], np.float32)  # (T=2, B=1, 2)
    y, h = layer.apply(params, x)
    h1 = 0.5 * np.tanh(0.5 - 0.5)
    h2 = 0.5 * np.tanh(1.0) + 0.5 * h1
    np.testing.assert_allclose(np.asarray(y)[:, 0, 0], [h1, h2], rtol=1e-6, atol=1e-7)


class _TorchNet(nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        return self.rnn(x)


def _jax_model(rnn):
    return tj.Model({"rnn": rnn}, lambda call, x: call("rnn", x), (T, F), "rnn")


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("fmt", ["tt", "tr", "tucker", "cp"])
@pytest.mark.parametrize("tensorize_hidden", [False, True])
def test_tensorized_layers_match_torch_through_interchange(kind, fmt, tensorize_hidden):
    torch.manual_seed(1)
    kw = dict(format=fmt, rank=2, tensorize_hidden=tensorize_hidden)
    tcls = tt.TensorizedLSTM if kind == "lstm" else tt.TensorizedGRU
    jcls = tj.TensorizedLSTM if kind == "lstm" else tj.TensorizedGRU
    tnet = _TorchNet(tcls(F, H, 2, True, False, 0.0, seed=3, **kw)).eval()
    jmodel = _jax_model(jcls(F, H, 2, True, False, 0.0, **kw))
    params, masks = jx.import_arrays(jmodel, tx.export_arrays(tnet))
    assert not masks
    # the same names in both layouts: weight_ih_l1.core_k, weight_hh_l1(.core_k), ...
    assert set(jx.torch_names(jmodel).values()) == set(tx.export_arrays(tnet)["params"])
    x = _x(2)
    with torch.no_grad():
        y_ref, final_ref = tnet(torch.from_numpy(x))
    y, final = jmodel.apply(params, x)
    np.testing.assert_allclose(np.asarray(y), y_ref.numpy(), **TOL)
    h_ref = final_ref[0] if kind == "lstm" else final_ref
    h = final[0] if kind == "lstm" else final
    np.testing.assert_allclose(np.asarray(h), h_ref.numpy(), **TOL)
    # and back: the JAX arrays load into a fresh torch layer with equal outputs
    fresh = _TorchNet(tcls(F, H, 2, True, False, 0.0, seed=9, **kw)).eval()
    tx.import_arrays(fresh, jx.export_arrays(jmodel, params))
    with torch.no_grad():
        np.testing.assert_allclose(fresh(torch.from_numpy(x))[0].numpy(), y_ref.numpy(), **TOL)
    # the same weight counts
    jc, tc = tj.count_weights(jmodel, params), tt.count_weights(tnet)
    for key in ("dense", "params", "kept", "biases"):
        assert jc[key] == tc[key], key


@pytest.mark.parametrize("cls", [tj.LSTM, tj.GRU, tj.TensorizedLSTM, tj.TensorizedGRU])
def test_dropout_only_between_layers_and_only_when_training(cls):
    kw = {"rank": 2} if cls in (tj.TensorizedLSTM, tj.TensorizedGRU) else {}
    layer = cls(F, H, 2, True, False, 0.5, **kw)
    assert layer.stochastic
    params = layer.init(jax.random.key(0))
    x = _x(4)
    key = jax.random.key(7)

    def h_n(final):
        return np.asarray(final[0] if isinstance(final, tuple) else final)

    y_eval, f_eval = layer.apply(params, x)
    y_nokey, _ = layer.apply(params, x, train=True)  # no key: deterministic
    y_a, f_a = layer.apply(params, x, train=True, key=key)
    y_b, _ = layer.apply(params, x, train=True, key=key)
    y_c, _ = layer.apply(params, x, train=True, key=jax.random.key(8))
    np.testing.assert_array_equal(np.asarray(y_eval), np.asarray(y_nokey))
    np.testing.assert_array_equal(np.asarray(y_a), np.asarray(y_b))  # the key decides
    assert not np.allclose(np.asarray(y_a), np.asarray(y_eval))
    assert not np.allclose(np.asarray(y_a), np.asarray(y_c))
    # layer 0's own outputs are not dropped (its final state is the same); layer 1 sees dropout
    np.testing.assert_allclose(h_n(f_a)[0], h_n(f_eval)[0], rtol=1e-6, atol=1e-7)
    assert not np.allclose(h_n(f_a)[1], h_n(f_eval)[1])
    # one layer, or dropout 0: nothing to drop even when training
    for single in (cls(F, H, 1, True, False, 0.5, **kw), cls(F, H, 2, True, False, 0.0, **kw)):
        assert not single.stochastic
        p = single.init(jax.random.key(1))
        np.testing.assert_array_equal(
            np.asarray(single.apply(p, x, train=True, key=key)[0]),
            np.asarray(single.apply(p, x)[0]),
        )


def test_dropout_reaches_layers_through_model_apply_with_a_key():
    model = _jax_model(tj.LSTM(F, H, 2, dropout=0.5))
    params = model.init(jax.random.key(0))
    x = _x(5)
    eval_out = np.asarray(model.apply(params, x)[0])
    np.testing.assert_array_equal(np.asarray(model.apply(params, x, train=True)[0]), eval_out)
    trained = np.asarray(model.apply(params, x, train=True, key=jax.random.key(1))[0])
    assert not np.allclose(trained, eval_out)
    np.testing.assert_array_equal(
        np.asarray(model.apply(params, x, train=False, key=jax.random.key(1))[0]), eval_out
    )


def test_dropout_one_zeroes_the_next_layers_input():
    layer = tj.GRU(F, H, 2, dropout=1.0)
    params = layer.init(jax.random.key(0))
    x = _x(6)
    y, _ = layer.apply(params, x, train=True, key=jax.random.key(0))
    # layer 1 on an all-zero input
    top = tj.GRU(H, H)
    p1 = {k.replace("_l1", "_l0"): v for k, v in params.items() if k.endswith("_l1")}
    y_zero, _ = top.apply(p1, np.zeros((T, B, H), np.float32))
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_zero), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "bad, exc, match",
    [
        ({"num_layers": 0}, ValueError, "num_layers"),
        ({"num_layers": 1.5}, TypeError, "num_layers"),
        ({"dropout": 1.5}, ValueError, "dropout"),
        ({"dropout": "0.1"}, TypeError, "dropout"),
    ],
)
def test_bad_recurrent_arguments_are_named(bad, exc, match):
    for cls in (tj.LSTM, tj.GRU, tj.TensorizedGRU):
        with pytest.raises(exc, match=match):
            cls(F, H, **bad)


def test_jax_tensorize_handles_gru_and_stacked_lstm_as_torch_does():
    dense = tj.Model(
        {
            "lstm": tj.LSTM(F, 16, 2, dropout=0.25),
            "gru": tj.GRU(16, 16, 2, True, False, 0.1),
            "head": tj.Dense(16, 4),
        },
        lambda call, x: call("head", call("gru", call("lstm", x)[0])[0][-1]),
        (T, F),
        "stack",
    )
    # default kinds: "gru" is not among them (as torch's tensorize)
    new = tj.tensorize(dense, "tt", rank=2, min_params=0)
    assert isinstance(new.layers["lstm"], tj.TensorizedLSTM)
    assert isinstance(new.layers["gru"], tj.GRU)
    assert (new.layers["lstm"].num_layers, new.layers["lstm"].dropout) == (2, 0.25)
    both = tj.tensorize(dense, "tt", rank=2, min_params=0, layers=("lstm", "gru"))
    g = both.layers["gru"]
    assert isinstance(g, tj.TensorizedGRU) and (g.num_layers, g.dropout) == (2, 0.1)
    assert isinstance(both.layers["head"], tj.Dense)  # "linear" not asked for
    params = both.init(jax.random.key(0))
    assert both.apply(params, _x(0)).shape == (B, 4)
    with pytest.raises(ValueError, match="layers"):
        tj.tensorize(dense, layers=("rnn",))
    # torch on the same architecture replaces the same kinds
    tnet = nn.ModuleDict({"lstm": nn.LSTM(F, 16, 2, dropout=0.25), "gru": nn.GRU(16, 16, 2)})
    tnew = tt.tensorize(tnet, "tt", rank=2, min_params=0, layers=("lstm", "gru"))
    assert isinstance(tnew["lstm"], tt.TensorizedLSTM) and isinstance(tnew["gru"], tt.TensorizedGRU)
    assert tnew["lstm"].num_layers == both.layers["lstm"].num_layers == 2


def test_fit_trains_with_dropout_between_layers_deterministically():
    def model(dropout):
        return tj.Model(
            {"lstm": tj.LSTM(F, H, 2, batch_first=True, dropout=dropout), "head": tj.Dense(H, 3)},
            lambda call, x: call("head", call("lstm", x)[1][0][-1]),
            (T, F),
            "stacked",
        )

    rng = np.random.default_rng(0)
    data = (rng.standard_normal((16, T, F)).astype(np.float32), rng.integers(0, 3, 16))
    params = model(0.5).init(jax.random.key(0))
    kw = dict(epochs=1, lr=0.1, batch_size=8, progress=False, seed=3)
    a = tj.fit(model(0.5), params, data, **kw).params
    b = tj.fit(model(0.5), params, data, **kw).params
    plain = tj.fit(model(0.0), params, data, **kw).params
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(
            np.asarray(x), np.asarray(y)
        )  # the key is (seed, epoch, batch)
    assert any(
        not np.allclose(np.asarray(x), np.asarray(y))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(plain), strict=True)
    ), "fit trained without dropout"
    # evaluation is deterministic: no dropout outside training
    assert tj.evaluate(model(0.5), a, data) == tj.evaluate(model(0.5), a, data)
    assert tj.evaluate(model(0.5), a, data) == tj.evaluate(model(0.0), a, data)
