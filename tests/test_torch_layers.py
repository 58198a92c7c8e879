"""PyTorch tensorized layers and tensorize(), checked against the NumPy reference and torch's own
layers."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

import reference as ref  # noqa: E402
from tedepr.backends.torch import (  # noqa: E402
    LINEAR_CLASSES,
    TensorizedGRU,
    TensorizedLayer,
    TensorizedLSTM,
    TensorizedMultiheadAttention,
    TensorizedTransformerEncoderLayer,
    TRConv2d,
    TTConv2d,
    TTLinear,
    TuckerConv2d,
    TuckerLinear,
    conv_class,
    linear_class,
    tensorize,
)

pytestmark = pytest.mark.torch

FORMATS = ("tt", "tr", "tucker", "cp")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny ops: on a shared 2-core box torch's intra-op threads cost far more than they save
    # (a 64x64 Tucker reconstruction: 118 ms with 2 threads, 0.7 ms with 1).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def rel(a, b) -> float:
    a = a.detach().cpu().double().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().cpu().double().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def ref_matrix(layer: TensorizedLayer) -> np.ndarray:
    """The layer's (N_in, N_out) matrix rebuilt by the NumPy reference from its cores."""
    f = layer.factorized()
    cores = [c.detach().cpu().double().numpy() for c in f.cores]
    if f.format == "tucker":
        it = iter(cores[1:])
        factors = [next(it) if r is not None else None for r in f.ranks]
        return ref.to_dense("tucker", (cores[0], factors), f.in_modes, f.out_modes)
    return ref.to_dense(f.format, cores, f.in_modes, f.out_modes)


def np64(t):
    return t.detach().cpu().double().numpy()


# ----------------------------------------------------------------------------- Linear
def test_linear_structure_and_repr():
    torch.manual_seed(0)
    layer = TTLinear(24, 30, rank=3, in_modes=(4, 3, 2), out_modes=(5, 3, 2))
    names = [n for n, _ in layer.named_parameters()]
    assert names == ["core_0", "core_1", "core_2", "bias"]
    assert [tuple(c.shape) for c in layer.cores] == [(1, 4, 5, 3), (3, 3, 3, 3), (3, 2, 2, 1)]
    assert layer.num_params == 60 + 81 + 12 and layer.dense_params == 720
    assert layer.kept_params == layer.num_params
    assert layer.ranks == (1, 3, 3, 1)
    text = repr(layer)
    for part in (
        "format='tt'",
        "in_modes=(4, 3, 2)",
        "ranks=(1, 3, 3, 1)",
        "kept=153/153",
        "compression=4.7x",
    ):
        assert part in text
    assert layer.weight.shape == (30, 24)
    assert rel(layer.weight.T, ref_matrix(layer)) <= 1e-5
    # Tucker defaults to Tucker-2 on the matrix (d=1): a (R, R) core, two factors.
    t = TuckerLinear(24, 30, rank=3)
    assert [tuple(c.shape) for c in t.cores] == [(3, 3), (24, 3), (30, 3)]


def test_linear_plans_are_cached_per_batch_size():
    layer = TTLinear(24, 30, rank=3)
    layer(torch.randn(4, 24))
    layer(torch.randn(4, 24))
    layer(torch.randn(2, 2, 24))
    layer(torch.randn(9, 24))
    assert sorted(layer._plans) == [4, 9]


def test_linear_empty_batch_and_bad_input():
    layer = TTLinear(24, 30, rank=3)
    y = layer(torch.randn(0, 24))
    assert y.shape == (0, 30)
    with pytest.raises(ValueError, match=r"\(\.\.\., 24\)"):
        layer(torch.randn(3, 25))


def _empirical_std(make, draws):
    total, count = 0.0, 0
    for seed in range(draws):
        w = make(seed).detach()
        total += float((w.double() ** 2).sum())
        count += w.numel()
    return math.sqrt(total / count)


def test_conv_exact_init_std():
    # fan_in = C_in/groups * kh * kw = 4 * 3 * 3
    expected = 1 / math.sqrt(3 * 36)
    got = _empirical_std(
        lambda s: TRConv2d(8, 8, 3, groups=2, rank=3, seed=s, dtype=torch.float64).kernel(), 400
    )
    assert abs(got / expected - 1) < 0.05, (got, expected)


def test_linear_init_reproducible_under_manual_seed():
    torch.manual_seed(7)
    a = TTLinear(24, 30, rank=3)
    torch.manual_seed(7)
    b = TTLinear(24, 30, rank=3)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("format", ["tt", "tucker"])
def test_linear_from_dense_full_rank(format):
    torch.manual_seed(4)
    dense = nn.Linear(24, 30, dtype=torch.float64)
    layer = linear_class(format).from_dense(dense, rank=None)
    assert layer.decomposition_error <= 1e-12
    x = torch.randn(5, 24, dtype=torch.float64)
    assert rel(layer(x), dense(x)) <= 1e-10
    assert torch.equal(layer.bias, dense.bias)


def test_linear_from_dense_tr_and_cp_report_their_error():
    torch.manual_seed(5)
    dense = nn.Linear(24, 30, dtype=torch.float64)
    for format, rank in (("tr", 2), ("cp", 3)):
        layer = linear_class(format).from_dense(dense, rank=rank)
        achieved = rel(layer.dense_weight().T, dense.weight)
        assert abs(layer.decomposition_error - achieved) <= 1e-8 * max(achieved, 1.0)
        assert 0 < layer.decomposition_error < 1


def test_linear_from_dense_keeps_dtype():
    dense = nn.Linear(24, 30)
    layer = TTLinear.from_dense(dense, rank=None)
    assert layer.core_0.dtype == torch.float32 and layer.bias.dtype == torch.float32
    x = torch.randn(3, 24)
    assert rel(layer(x), dense(x)) <= 1e-5


def test_from_dense_bad_arguments():
    # format, strategy and mode errors of both backends: tests/contract/test_contract_layers.py
    with pytest.raises(TypeError, match="nn.Linear"):
        TTLinear.from_dense(nn.Conv2d(2, 2, 1))


# ----------------------------------------------------------------------------- Conv2d


def test_conv_unbatched_and_structure():
    torch.manual_seed(22)
    layer = TTConv2d(4, 6, 3, padding=1, rank=2, dtype=torch.float64)
    x = torch.randn(4, 5, 5, dtype=torch.float64)
    assert rel(layer(x), layer(x[None])[0]) <= 1e-12
    assert layer.in_modes[-1] == 9 and layer.out_modes[-1] == 1
    assert layer.dense_params == 4 * 9 * 6
    assert layer.weight.shape == (6, 4, 3, 3)
    assert "kernel_size=(3, 3)" in repr(layer) and "format='tt'" in repr(layer)


def test_conv_auto_strategy_uses_flop_estimate():
    layer = TuckerConv2d(64, 64, 3, padding=1, rank=4)
    costs = layer.flop_estimates(1, 32, 32)
    assert costs["factorized"] < costs["reconstruct"]
    layer(torch.randn(1, 64, 32, 32))
    assert layer._choices[(1, 32, 32)] == "factorized"
    grouped = TuckerConv2d(64, 64, 3, padding=1, rank=4, groups=2)
    assert set(grouped.flop_estimates(1, 32, 32)) == {"reconstruct"}


@pytest.mark.parametrize("format", ["tt", "tucker"])
@pytest.mark.parametrize("groups", [1, 2])
def test_conv_from_dense_full_rank(format, groups):
    torch.manual_seed(23)
    dense = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=groups, dtype=torch.float64)
    layer = conv_class(format).from_dense(dense, rank=None)
    assert layer.decomposition_error <= 1e-12
    x = torch.randn(2, 4, 7, 7, dtype=torch.float64)
    assert rel(layer(x), dense(x)) <= 1e-10


def test_conv_from_dense_bad_arguments():
    # the constructor's errors of both backends: tests/contract/test_contract_layers.py
    with pytest.raises(ValueError, match="padding_mode.*'reflect'"):
        TTConv2d.from_dense(nn.Conv2d(4, 6, 3, padding=1, padding_mode="reflect"))
    with pytest.raises(ValueError, match="groups"):
        TTConv2d(4, 6, 3, groups=4)
    with pytest.raises(ValueError, match="needs groups=1"):
        TuckerConv2d(4, 6, 3, groups=2, strategy="factorized")
    with pytest.raises(ValueError, match="'factorized' exists for 'tucker' and 'cp'"):
        TTConv2d(4, 6, 3, strategy="factorized")
    with pytest.raises(ValueError, match="TT/TR convolutions only"):
        TuckerConv2d(4, 6, 3, d=2)
    with pytest.raises(ValueError, match=r"\(N, 4, H, W\)"):
        TTConv2d(4, 6, 3, rank=2)(torch.randn(1, 5, 8, 8))


# ----------------------------------------------------------------------------- LSTM / GRU
def _dense_rnn_like(layer, cls):
    """A torch RNN holding ``layer``'s reconstructed weights."""
    rnn = cls(
        layer.input_size,
        layer.hidden_size,
        layer.num_layers,
        bias=layer.bias,
        batch_first=layer.batch_first,
        dtype=torch.float64,
    )
    with torch.no_grad():
        for k in range(layer.num_layers):
            rnn.get_parameter(f"weight_ih_l{k}").copy_(
                getattr(layer, f"weight_ih_l{k}").dense_weight().T
            )
            hh = getattr(layer, f"weight_hh_l{k}")
            rnn.get_parameter(f"weight_hh_l{k}").copy_(
                hh.dense_weight().T if isinstance(hh, TensorizedLayer) else hh
            )
            if layer.bias:
                rnn.get_parameter(f"bias_ih_l{k}").copy_(getattr(layer, f"bias_ih_l{k}"))
                rnn.get_parameter(f"bias_hh_l{k}").copy_(getattr(layer, f"bias_hh_l{k}"))
    return rnn


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("tensorize_hidden", [False, True])
def test_lstm_matches_nn_lstm(format, tensorize_hidden):
    torch.manual_seed(30)
    layer = TensorizedLSTM(
        12,
        6,
        num_layers=2,
        format=format,
        rank=2,
        tensorize_hidden=tensorize_hidden,
        dtype=torch.float64,
    )
    dense = _dense_rnn_like(layer, nn.LSTM)
    x = torch.randn(5, 3, 12, dtype=torch.float64)
    hx = (torch.randn(2, 3, 6, dtype=torch.float64), torch.randn(2, 3, 6, dtype=torch.float64))
    for args in ((x,), (x, hx)):
        y, (h, c) = layer(*args)
        y_ref, (h_ref, c_ref) = dense(*args)
        assert y.shape == (5, 3, 6) and h.shape == (2, 3, 6) and c.shape == (2, 3, 6)
        assert rel(y, y_ref) <= 1e-10 and rel(h, h_ref) <= 1e-10 and rel(c, c_ref) <= 1e-10
    y, (h, c) = layer(x[:, 0])  # unbatched
    y_ref, (h_ref, c_ref) = dense(x[:, 0])
    assert y.shape == (5, 6) and h.shape == (2, 6)
    assert rel(y, y_ref) <= 1e-10 and rel(c, c_ref) <= 1e-10


def test_lstm_batch_first_float32_and_gradients():
    torch.manual_seed(31)
    layer = TensorizedLSTM(12, 6, batch_first=True, format="tt", rank=2)
    assert isinstance(layer.weight_ih_l0, TTLinear)
    assert layer.weight_ih_l0.out_features == 24 and layer.weight_hh_l0.shape == (24, 6)
    dense = nn.LSTM(12, 6, batch_first=True)
    with torch.no_grad():
        dense.weight_ih_l0.copy_(layer.weight_ih_l0.dense_weight().T)
        dense.weight_hh_l0.copy_(layer.weight_hh_l0)
        dense.bias_ih_l0.copy_(layer.bias_ih_l0)
        dense.bias_hh_l0.copy_(layer.bias_hh_l0)
    x = torch.randn(3, 5, 12)
    y, _ = layer(x)
    assert y.shape == (3, 5, 6)
    assert rel(y, dense(x)[0]) <= 1e-5
    y.pow(2).sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("format", ["tt", "cp"])
def test_gru_matches_nn_gru(format):
    torch.manual_seed(32)
    layer = TensorizedGRU(
        12,
        6,
        num_layers=2,
        format=format,
        rank=2,
        batch_first=True,
        tensorize_hidden=format == "cp",
        dtype=torch.float64,
    )
    dense = _dense_rnn_like(layer, nn.GRU)
    x = torch.randn(3, 5, 12, dtype=torch.float64)
    h0 = torch.randn(2, 3, 6, dtype=torch.float64)
    y, h = layer(x, h0)
    y_ref, h_ref = dense(x, h0)
    assert rel(y, y_ref) <= 1e-10 and rel(h, h_ref) <= 1e-10


def test_lstm_from_dense_full_rank_and_errors():
    torch.manual_seed(33)
    dense = nn.LSTM(12, 6, num_layers=2, dtype=torch.float64)
    layer = TensorizedLSTM.from_dense(dense, "tt", rank=None, tensorize_hidden=True)
    assert set(layer.decomposition_error) == {
        "weight_ih_l0",
        "weight_hh_l0",
        "weight_ih_l1",
        "weight_hh_l1",
    }
    assert max(layer.decomposition_error.values()) <= 1e-12
    x = torch.randn(4, 2, 12, dtype=torch.float64)
    assert rel(layer(x)[0], dense(x)[0]) <= 1e-10
    with pytest.raises(ValueError, match="unidirectional"):
        TensorizedLSTM.from_dense(nn.LSTM(12, 6, bidirectional=True))
    with pytest.raises(TypeError, match="PackedSequence"):
        packed = nn.utils.rnn.pack_padded_sequence(torch.randn(4, 2, 12), [4, 3])
        TensorizedLSTM(12, 6, rank=2)(packed)
    with pytest.raises(ValueError, match="format must be one of"):
        TensorizedLSTM(12, 6, format="ttt")


def test_lstm_default_init_matches_torch_std():
    # nn.LSTM draws U(-1/sqrt(H), 1/sqrt(H)): std 1/sqrt(3H), for the tensorized map too.
    expected = 1 / math.sqrt(3 * 16)
    got = _empirical_std(
        lambda s: TensorizedLSTM(
            16, 16, rank=4, seed=s, dtype=torch.float64
        ).weight_ih_l0.dense_weight(),
        200,
    )
    assert abs(got / expected - 1) < 0.05


# ----------------------------------------------------------------------------- attention
def _load_mha(layer: TensorizedMultiheadAttention, mha: nn.MultiheadAttention):
    with torch.no_grad():
        ws = [getattr(layer, n).dense_weight().T for n in ("q_proj", "k_proj", "v_proj")]
        if mha._qkv_same_embed_dim:
            mha.in_proj_weight.copy_(torch.cat(ws))
        else:
            mha.q_proj_weight.copy_(ws[0])
            mha.k_proj_weight.copy_(ws[1])
            mha.v_proj_weight.copy_(ws[2])
        mha.in_proj_bias.copy_(torch.cat([layer.q_proj.bias, layer.k_proj.bias, layer.v_proj.bias]))
        mha.out_proj.weight.copy_(layer.out_proj.dense_weight().T)
        mha.out_proj.bias.copy_(layer.out_proj.bias)


def _randomise_biases(module):
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias"):
                p.normal_()


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("batch_first", [False, True])
def test_mha_matches_nn_mha(format, batch_first):
    torch.manual_seed(40)
    e, h, n, tgt, src = 12, 3, 2, 4, 5
    layer = TensorizedMultiheadAttention(
        e, h, format=format, rank=2, batch_first=batch_first, dtype=torch.float64
    )
    _randomise_biases(layer)
    mha = nn.MultiheadAttention(e, h, batch_first=batch_first, dtype=torch.float64)
    _load_mha(layer, mha)

    def shape(length):
        return (n, length, e) if batch_first else (length, n, e)

    q = torch.randn(shape(tgt), dtype=torch.float64)
    kv = torch.randn(shape(src), dtype=torch.float64)
    bool_mask = torch.rand(tgt, src) < 0.3
    bool_mask[:, 0] = False  # no fully masked row
    float_mask = torch.randn(n * h, tgt, src, dtype=torch.float64)
    kpm = torch.zeros(n, src, dtype=torch.bool)
    kpm[1, -2:] = True
    cases = [
        dict(),
        dict(need_weights=False),
        dict(attn_mask=bool_mask),
        dict(attn_mask=float_mask, need_weights=False),
        dict(key_padding_mask=kpm, average_attn_weights=False),
        dict(key_padding_mask=kpm, attn_mask=bool_mask, need_weights=False),
    ]
    for kw in cases:
        out, w = layer(q, kv, kv, **kw)
        out_ref, w_ref = mha(q, kv, kv, **kw)
        assert out.shape == out_ref.shape
        assert rel(out, out_ref) <= 1e-10, kw
        if w_ref is None:
            assert w is None
        else:
            assert rel(w, w_ref) <= 1e-10, kw


def test_mha_kdim_vdim_causal_unbatched():
    torch.manual_seed(41)
    layer = TensorizedMultiheadAttention(
        12, 2, format="tt", rank=2, kdim=8, vdim=10, dtype=torch.float64
    )
    _randomise_biases(layer)
    mha = nn.MultiheadAttention(12, 2, kdim=8, vdim=10, dtype=torch.float64)
    _load_mha(layer, mha)
    q = torch.randn(4, 12, dtype=torch.float64)  # unbatched (L, E)
    k = torch.randn(4, 8, dtype=torch.float64)
    v = torch.randn(4, 10, dtype=torch.float64)
    causal = nn.Transformer.generate_square_subsequent_mask(4, dtype=torch.float64)
    for kw in (dict(), dict(attn_mask=causal, is_causal=True, need_weights=False)):
        out, w = layer(q, k, v, **kw)
        out_ref, w_ref = mha(q, k, v, **kw)
        assert rel(out, out_ref) <= 1e-10
    out_causal, _ = layer(q, k, v, is_causal=True, need_weights=False)
    assert rel(out_causal, out_ref) <= 1e-10
    with pytest.raises(ValueError, match="attn_mask must have shape"):
        layer(q, k, v, attn_mask=torch.zeros(3, 4, dtype=torch.bool))


def test_attention_float32_and_gradients():
    torch.manual_seed(45)
    layer = TensorizedTransformerEncoderLayer(
        12, 3, dim_feedforward=20, dropout=0.0, batch_first=True, format="cp", rank=3
    )
    _randomise_biases(layer)
    dense = nn.TransformerEncoderLayer(12, 3, dim_feedforward=20, dropout=0.0, batch_first=True)
    _load_mha(layer.self_attn, dense.self_attn)
    with torch.no_grad():
        for name in ("linear1", "linear2"):
            getattr(dense, name).weight.copy_(getattr(layer, name).dense_weight().T)
            getattr(dense, name).bias.copy_(getattr(layer, name).bias)
        for name in ("norm1", "norm2"):
            getattr(dense, name).load_state_dict(getattr(layer, name).state_dict())
    x = torch.randn(2, 5, 12)
    y = layer(x)
    assert y.dtype == torch.float32 and rel(y, dense(x)) <= 1e-5
    y.pow(2).sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_mha_from_dense_full_rank():
    torch.manual_seed(42)
    mha = nn.MultiheadAttention(12, 3, batch_first=True, dtype=torch.float64)
    _randomise_biases(mha)
    layer = TensorizedMultiheadAttention.from_dense(mha, "tt", rank=None)
    assert max(layer.decomposition_error.values()) <= 1e-12
    x = torch.randn(2, 5, 12, dtype=torch.float64)
    assert rel(layer(x, x, x)[0], mha(x, x, x)[0]) <= 1e-10


def test_mha_init_matches_torch_default_std():
    # Xavier-uniform on the packed (3E, E) input projection: std sqrt(2 / (4E)).
    e = 16
    got = _empirical_std(
        lambda s: TensorizedMultiheadAttention(
            e, 2, rank=4, seed=s, dtype=torch.float64
        ).q_proj.dense_weight(),
        200,
    )
    assert abs(got / math.sqrt(2 / (4 * e)) - 1) < 0.05


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_matches_nn(norm_first):
    torch.manual_seed(43)
    layer = TensorizedTransformerEncoderLayer(
        12,
        3,
        dim_feedforward=20,
        dropout=0.0,
        batch_first=True,
        norm_first=norm_first,
        format="tr",
        rank=2,
        dtype=torch.float64,
    )
    _randomise_biases(layer)
    dense = nn.TransformerEncoderLayer(
        12,
        3,
        dim_feedforward=20,
        dropout=0.0,
        batch_first=True,
        norm_first=norm_first,
        dtype=torch.float64,
    )
    _load_mha(layer.self_attn, dense.self_attn)
    with torch.no_grad():
        for name in ("linear1", "linear2"):
            getattr(dense, name).weight.copy_(getattr(layer, name).dense_weight().T)
            getattr(dense, name).bias.copy_(getattr(layer, name).bias)
        for name in ("norm1", "norm2"):
            getattr(dense, name).load_state_dict(getattr(layer, name).state_dict())
    x = torch.randn(2, 5, 12, dtype=torch.float64)
    kpm = torch.zeros(2, 5, dtype=torch.bool)
    kpm[0, -1] = True
    assert rel(layer(x), dense(x)) <= 1e-10
    assert rel(layer(x, src_key_padding_mask=kpm), dense(x, src_key_padding_mask=kpm)) <= 1e-10
    layer.eval()
    dense.eval()
    with torch.no_grad():  # torch's inference fast path on the dense side
        assert rel(layer(x, src_key_padding_mask=kpm), dense(x, src_key_padding_mask=kpm)) <= 1e-10


def test_encoder_layer_from_dense_full_rank():
    torch.manual_seed(44)
    dense = nn.TransformerEncoderLayer(12, 3, dim_feedforward=20, dropout=0.0, dtype=torch.float64)
    layer = TensorizedTransformerEncoderLayer.from_dense(dense, "tucker", rank=None)
    x = torch.randn(5, 2, 12, dtype=torch.float64)
    assert rel(layer(x), dense(x)) <= 1e-10
    assert layer.decomposition_error["linear1"] <= 1e-12


# ----------------------------------------------------------------------------- tensorize
class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.small = nn.Conv2d(16, 4, 1)  # 64 weights: below min_params
        self.fc1 = nn.Linear(4 * 8 * 8, 64)
        self.lstm = nn.LSTM(64, 32)
        self.attn = nn.MultiheadAttention(32, 4)
        self.head = nn.Linear(32, 10)  # 320 weights

    def forward(self, x):
        z = torch.relu(self.small(torch.relu(self.conv(x)))).flatten(1)
        z = torch.relu(self.fc1(z)).unsqueeze(0).expand(3, -1, -1)
        z, _ = self.lstm(z)
        z, _ = self.attn(z, z, z)
        return self.head(z[-1])


def test_tensorize_replaces_expected_layers_and_leaves_original():
    torch.manual_seed(50)
    model = _Net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    new = tensorize(model, "tt", rank=4, min_params=300)
    assert new is not model
    assert type(model.conv) is nn.Conv2d and type(model.attn) is nn.MultiheadAttention
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert isinstance(new.conv, TTConv2d)
    assert type(new.small) is nn.Conv2d
    assert isinstance(new.fc1, TTLinear)
    assert isinstance(new.lstm, TensorizedLSTM)
    assert isinstance(new.attn, TensorizedMultiheadAttention)
    assert isinstance(new.head, TTLinear)
    assert new(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_tensorize_include_exclude_overrides_layers():
    model = _Net()
    with pytest.warns(UserWarning, match="leaves small dense.*65 weights"):
        new = tensorize(
            model,
            "tt",
            rank=4,
            min_params=0,
            layers=("linear", "conv2d"),
            exclude=["head"],
            overrides={"conv": {"format": "tucker", "rank": 3}, "fc*": {"format": "cp", "seed": 1}},
        )
    assert isinstance(new.conv, TuckerConv2d) and new.conv.ranks == (3, None, 3)
    assert type(new.fc1).__name__ == "CPLinear"
    assert type(new.small) is nn.Conv2d  # a rank-4 TT of a 16x4 1x1 conv is not smaller
    assert type(new.head) is nn.Linear and type(new.lstm) is nn.LSTM
    assert type(new.attn) is nn.MultiheadAttention and type(new.attn.out_proj) is not TTLinear
    only = tensorize(model, "tr", rank=2, min_params=0, include="fc1")
    assert isinstance(only.fc1, LINEAR_CLASSES["tr"]) and type(only.conv) is nn.Conv2d


def test_tensorize_decompose_exact_low_rank_weights_reproduce_model():
    torch.manual_seed(51)
    model = nn.Sequential(nn.Linear(24, 30), nn.Tanh(), nn.Linear(30, 20)).double()
    with torch.no_grad():  # weights that are exactly TT rank 2, so rtol-truncated TT-SVD is exact
        for k in (0, 2):
            lin = model[k]
            low = TTLinear(lin.in_features, lin.out_features, rank=2, dtype=torch.float64)
            lin.weight.copy_(low.dense_weight().T)
    new = tensorize(
        model, "tt", rank=None, min_params=0, decompose=True, overrides={"*": {"rtol": 1e-12}}
    )
    assert all(isinstance(m, TTLinear) for m in (new[0], new[2]))
    assert max(new[0].ranks) == 2 and new[0].decomposition_error <= 1e-12
    x = torch.randn(4, 24, dtype=torch.float64)
    assert rel(new(x), model(x)) <= 1e-10


def test_tensorize_shared_module_stays_shared_and_training_mode_kept():
    shared = nn.Linear(32, 32)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    model.eval()
    new = tensorize(model, "tt", rank=2, min_params=0)
    assert new[0] is new[2] and isinstance(new[0], TTLinear)
    assert not new[0].training


def test_tensorize_root_module_and_transformer_encoder():
    root = tensorize(nn.Linear(32, 32), "cp", rank=2, min_params=0)
    assert type(root).__name__ == "CPLinear"
    enc = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True),
        num_layers=2,
        enable_nested_tensor=True,
    )
    new = tensorize(enc, "tt", rank=2, min_params=0)
    assert isinstance(new.layers[0].self_attn, TensorizedMultiheadAttention)
    assert isinstance(new.layers[1].linear2, TTLinear)
    new.eval()
    x = torch.randn(2, 5, 16)
    kpm = torch.zeros(2, 5, dtype=torch.bool)
    kpm[1, -2:] = True
    with torch.no_grad():
        assert new(x, src_key_padding_mask=kpm).shape == (2, 5, 16)


def test_tensorize_errors():
    with pytest.raises(ValueError, match="no eligible layer"):
        tensorize(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="no eligible layer.*min_params"):
        tensorize(nn.Linear(10, 10), min_params=1024)
    with pytest.raises(ValueError, match="format must be one of"):
        tensorize(_Net(), "block-tt")
    with pytest.raises(ValueError, match="layers must be"):
        tensorize(_Net(), layers=("dense",))
    with pytest.raises(TypeError, match="overrides"):
        tensorize(_Net(), overrides={"fc1": 3})
    with pytest.raises(TypeError, match="could not replace fc1"):
        tensorize(_Net(), overrides={"fc1": {"colour": "red"}})
    with pytest.warns(UserWarning, match="padding_mode"):
        with pytest.raises(ValueError, match="no eligible layer"):
            tensorize(nn.Conv2d(16, 16, 3, padding_mode="circular"), min_params=0)
