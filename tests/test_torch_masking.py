"""Pruning masks on tensorized cores and dense weights: exact zeros through training, saving,
counting."""

from __future__ import annotations

import functools
import io

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
from torch.nn.utils import parametrize  # noqa: E402

from tedepr.backends.torch import (  # noqa: E402
    TensorizedLSTM,
    TTConv2d,
    TTLinear,
    TuckerLinear,
    apply_masks,
    count_weights,
    get_masks,
    load_masked_state_dict,
    prunable_parameters,
    remove_masks,
)

pytestmark = pytest.mark.torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny ops on a shared 2-core box: intra-op threads cost more than they save.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Mixed(nn.Module):
    """One of every kind of layer masking must know about."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.conv = nn.Conv2d(2, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.ttconv = TTConv2d(4, 6, 3, rank=2)
        self.lstm = nn.LSTM(8, 6, num_layers=2)
        self.tlstm = TensorizedLSTM(8, 6, rank=2)
        self.attn = nn.MultiheadAttention(8, 2)
        self.ln = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 4)
        self.tt = TTLinear(24, 30, rank=3)
        self.pos = nn.Parameter(torch.zeros(5, 8))


EXPECTED_NAMES = [
    "emb.weight",
    "conv.weight",
    "ttconv.core_0",
    "ttconv.core_1",
    "ttconv.core_2",
    "lstm.weight_ih_l0",
    "lstm.weight_hh_l0",
    "lstm.weight_ih_l1",
    "lstm.weight_hh_l1",
    "tlstm.weight_hh_l0",
    "tlstm.weight_ih_l0.core_0",
    "tlstm.weight_ih_l0.core_1",
    "tlstm.weight_ih_l0.core_2",
    "attn.in_proj_weight",
    "attn.out_proj.weight",
    "fc.weight",
    "tt.core_0",
    "tt.core_1",
    "tt.core_2",
]


def random_masks(params, keep=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(p.shape, generator=g) < keep for n, p in params.items()}


def test_prunable_parameters_names_and_order():
    torch.manual_seed(0)
    model = Mixed()
    params = prunable_parameters(model)
    assert list(params) == EXPECTED_NAMES
    named = dict(model.named_parameters())
    assert [n for n in named if n in params] == EXPECTED_NAMES  # named_parameters order
    assert all(params[n] is named[n] for n in params)
    # masking changes neither the names, nor their order, nor the parameter objects
    apply_masks(model, random_masks(params))
    after = prunable_parameters(model)
    assert list(after) == EXPECTED_NAMES
    assert all(after[n] is params[n] for n in params)


def test_masked_forward_uses_masked_weights():
    torch.manual_seed(1)
    model = Mixed()
    masks = random_masks(prunable_parameters(model), seed=1)
    x = torch.randn(3, 24)
    apply_masks(model, masks)
    y = model.tt(x)
    w = model.tt.dense_weight()
    from tedepr import from_cores

    manual = from_cores(
        "tt",
        [model.tt.parametrizations[f"core_{k}"].original * masks[f"tt.core_{k}"] for k in range(3)],
        model.tt.in_modes,
        model.tt.out_modes,
    )
    assert torch.allclose(w, manual.to_dense(), rtol=0, atol=1e-6)
    assert torch.allclose(y, x @ manual.to_dense() + model.tt.bias, atol=1e-5)
    # dense weights: nn.LSTM re-reads its (parametrized) weights, nn.MultiheadAttention too
    seq = torch.randn(4, 2, 8)
    for name, ref_module in (
        ("lstm", nn.LSTM(8, 6, num_layers=2)),
        ("attn", nn.MultiheadAttention(8, 2)),
    ):
        masked = getattr(model, name)
        ref_module.load_state_dict(
            {
                n: functools.reduce(getattr, n.split("."), masked)
                for n, _ in ref_module.named_parameters()
            }
        )
        for n, p in ref_module.named_parameters():
            full = f"{name}.{n}"
            if full in masks:
                assert torch.all(p[~masks[full]] == 0) and p.ne(0).any(), full
        args = (seq,) if name == "lstm" else (seq, seq, seq)
        assert torch.equal(masked(*args)[0], ref_module(*args)[0]), name
    assert model.ttconv(torch.randn(1, 4, 5, 5)).shape == (1, 6, 3, 3)
    assert model.tt.kept_params == sum(int(masks[f"tt.core_{k}"].sum()) for k in range(3))
    assert f"kept={model.tt.kept_params}/{model.tt.num_params}" in repr(model.tt)


def _net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(
        TTLinear(24, 30, rank=3),
        nn.ReLU(),
        TuckerLinear(30, 16, rank=4),
        nn.ReLU(),
        nn.Linear(16, 5),
    )


OPTIMIZERS = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-2, nesterov=True),
    "adam": lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=1e-2),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
}


@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_pruned_entries_stay_exactly_zero_through_training(opt):
    model = _net(2)
    params = prunable_parameters(model)
    masks = random_masks(params, keep=0.4, seed=2)
    optimizer = OPTIMIZERS[opt](model.parameters())  # made before masking: same parameter objects
    apply_masks(model, masks)
    x, target = torch.randn(32, 24), torch.randint(0, 5, (32,))
    for _ in range(20):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), target)
        loss.backward()
        for name, p in params.items():
            pruned = ~masks[name]
            assert torch.all(p.grad[pruned] == 0), name
        optimizer.step()
        for name, p in params.items():
            pruned = ~masks[name]
            assert torch.all(p[pruned] == 0), name
            for key, value in optimizer.state[p].items():
                if torch.is_tensor(value) and value.shape == p.shape:
                    assert torch.all(value[pruned] == 0), (name, key)
    # and the kept entries did train
    assert all(optimizer.state[p] for p in params.values())
    assert loss.item() < nn.functional.cross_entropy(_net(2)(x), target).item()


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.dec = nn.Linear(8, 10, bias=False)
        self.dec.weight = self.emb.weight

    def forward(self, tokens):
        return self.dec(torch.tanh(self.emb(tokens)))


def test_tied_weights_are_masked_everywhere():
    torch.manual_seed(9)
    model = Tied()
    params = prunable_parameters(model)
    assert list(params) == ["emb.weight"]
    masks = random_masks(params, keep=0.5, seed=9)
    apply_masks(model, masks)
    assert parametrize.is_parametrized(model.dec, "weight")
    assert model.dec.parametrizations.weight.original is params["emb.weight"]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    tokens = torch.randint(0, 10, (16,))
    for _ in range(10):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(tokens), tokens).backward()
        assert torch.all(params["emb.weight"].grad[~masks["emb.weight"]] == 0)
        optimizer.step()
    assert torch.all(params["emb.weight"][~masks["emb.weight"]] == 0)
    assert count_weights(model)["dense"] == 80
    fresh = Tied()
    result = load_masked_state_dict(fresh, model.state_dict())
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(fresh(tokens), model(tokens))
    tied = fresh.emb.parametrizations.weight.original
    assert fresh.dec.parametrizations.weight.original is tied  # still one parameter
    remove_masks(model)
    assert model.dec.weight is model.emb.weight is params["emb.weight"]


def test_reapplying_replaces_the_mask_and_inputs_are_not_aliased():
    model = _net(3)
    params = prunable_parameters(model)
    first = random_masks(params, keep=0.7, seed=3)
    second = random_masks(params, keep=0.3, seed=4)
    apply_masks(model, first)
    apply_masks(model, {"0.core_1": second["0.core_1"]})
    got = get_masks(model)
    assert list(got) == list(params)
    assert torch.equal(got["0.core_1"], second["0.core_1"])
    assert torch.equal(got["0.core_0"], first["0.core_0"])
    assert len(model[0].parametrizations["core_1"]) == 1
    # entries pruned by either mask are zero (re-masking does not regrow weights)
    assert torch.all(params["0.core_1"][~(first["0.core_1"] & second["0.core_1"])] == 0)
    second["0.core_1"].fill_(True)  # the caller's tensor is not held by the model
    assert not get_masks(model)["0.core_1"].all()
    got["4.weight"].fill_(False)  # get_masks returns copies
    assert get_masks(model)["4.weight"].any()


def test_remove_masks_leaves_plain_zeroed_parameters():
    model = _net(4)
    params = prunable_parameters(model)
    masks = random_masks(params, seed=5)
    apply_masks(model, masks)
    remove_masks(model)
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    assert get_masks(model) == {}
    after = prunable_parameters(model)
    for name, p in after.items():
        assert p is params[name]
        assert torch.all(p[~masks[name]] == 0)
    assert list(dict(model.named_parameters())) == list(dict(_net(4).named_parameters()))


def test_state_dict_round_trip_restores_masks():
    model = _net(5)
    masks = random_masks(prunable_parameters(model), keep=0.3, seed=6)
    apply_masks(model, masks)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    state = torch.load(io.BytesIO(buffer.getvalue()))
    assert (
        "0.parametrizations.core_0.0.mask" in state
        and state["0.parametrizations.core_0.0.mask"].dtype == torch.bool
    )
    x = torch.randn(6, 24)

    fresh = _net(99)  # different init, unmasked
    result = load_masked_state_dict(fresh, state)
    assert not result.missing_keys and not result.unexpected_keys
    assert all(torch.equal(get_masks(fresh)[n], m) for n, m in masks.items())
    assert torch.equal(fresh(x), model(x))

    by_hand = _net(98)  # the documented manual recipe
    apply_masks(
        by_hand,
        {n: torch.zeros_like(p, dtype=torch.bool) for n, p in prunable_parameters(by_hand).items()},
    )
    by_hand.load_state_dict(state)
    assert torch.equal(by_hand(x), model(x))

    with pytest.raises(RuntimeError):  # plain loading cannot place the masks
        _net(97).load_state_dict(state)


def test_count_weights():
    torch.manual_seed(6)
    model = nn.Sequential(
        TTLinear(24, 30, rank=3), nn.LayerNorm(30), nn.Linear(30, 5), nn.Conv2d(2, 3, 3, bias=False)
    )
    counts = count_weights(model)
    tt = model[0]
    assert counts["layers"] == {
        "0": {"type": "TTLinear", "dense": 720, "params": tt.num_params, "kept": tt.num_params},
        "2": {"type": "Linear", "dense": 150, "params": 150, "kept": 150},
        "3": {"type": "Conv2d", "dense": 54, "params": 54, "kept": 54},
    }
    assert counts["dense"] == 720 + 150 + 54
    assert counts["params"] == tt.num_params + 150 + 54
    assert counts["biases"] == 30 + 5 and counts["norm"] == 60 and counts["other"] == 0
    masks = random_masks(prunable_parameters(model), keep=0.25, seed=7)
    apply_masks(model, masks)
    masked = count_weights(model)
    assert masked["kept"] == sum(int(m.sum()) for m in masks.values())
    assert masked["layers"]["0"]["kept"] == tt.kept_params
    assert masked["dense"] == counts["dense"] and masked["params"] == counts["params"]
    assert masked["biases"] == 35 and masked["norm"] == 60
    mixed = count_weights(Mixed())
    assert mixed["other"] == 40  # the positional parameter
    assert mixed["layers"]["tlstm.weight_hh_l0"]["dense"] == 24 * 6  # dense hidden map: its own row
    assert mixed["layers"]["tlstm.weight_ih_l0"]["dense"] == 8 * 24


def test_mask_errors():
    model = _net(7)
    params = prunable_parameters(model)
    good = random_masks(params)
    with pytest.raises(ValueError, match="unknown parameter name '0.bias'"):
        apply_masks(model, {"0.bias": torch.ones(30, dtype=torch.bool)})
    with pytest.raises(ValueError, match="has shape"):
        apply_masks(model, {"0.core_0": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(TypeError, match="torch.bool"):
        apply_masks(model, {"0.core_0": good["0.core_0"].float()})
    with pytest.raises(TypeError, match="dict"):
        apply_masks(model, [good["0.core_0"]])
    # validation happens before any change
    with pytest.raises(ValueError, match="unknown"):
        apply_masks(model, {"0.core_0": good["0.core_0"], "nope": good["0.core_0"]})
    assert get_masks(model) == {}


@pytest.mark.slow  # a cold inductor build of forward + backward took 66 s on the 2-core CI box
def test_torch_compile_masked_tensorized_mlp():
    pytest.importorskip("torch._inductor")
    model = _net(8)
    apply_masks(model, random_masks(prunable_parameters(model), keep=0.5, seed=8))
    x = torch.randn(16, 24)
    expected = model(x)  # eager first: plans (cached per batch size) are made outside the graph
    compiled = torch.compile(model, fullgraph=True)  # one graph: masks and planned chains trace
    y = compiled(x)
    y.sum().backward()
    assert torch.allclose(y, expected, rtol=1e-5, atol=1e-6)
    for name, p in prunable_parameters(model).items():
        mask = get_masks(model)[name]
        assert torch.all(p.grad[~mask] == 0), name
