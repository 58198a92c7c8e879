"""Torch scores against the NumPy oracles (complex-step gradients, finite-difference HVPs), hand-computed
toys, and `compress` end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

import reference  # noqa: E402
import tedepr  # noqa: E402
from tedepr.backends.torch.compress import compress, dense_weight_count, score  # noqa: E402
from tedepr.backends.torch.scoring import TorchScoringProblem  # noqa: E402
from tedepr.pruning import Guards, count_kept  # noqa: E402

RTOL = 1e-6


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


# ----------------------------------------------------------------------------- hand-computed toy
def _toy():
    """y = c · (a x_1 + b x_2); loss = sum(y). With a=1, b=−1, c=3 and x=(1, 2):
    ∂L/∂a = c x_1 = 3, ∂L/∂b = c x_2 = 6, ∂L/∂c = a + 2b = −1."""
    model = torch.nn.Sequential(
        torch.nn.Linear(2, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
    ).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -1.0]]))
        model[1].weight.copy_(torch.tensor([[3.0]]))
    data = [(torch.tensor([[1.0, 2.0]], dtype=torch.float64), torch.tensor([0]))]
    return model, data


def _sum_loss(out, y):
    return out.sum()


def test_snip_and_magnitude_hand_computed():
    model, data = _toy()
    s = score(model, data, "snip", loss_fn=_sum_loss)
    np.testing.assert_allclose(s["0.weight"].numpy(), [[3.0, 6.0]])
    np.testing.assert_allclose(s["1.weight"].numpy(), [[3.0]])
    m = score(model, None, "magnitude")
    np.testing.assert_allclose(m["0.weight"].numpy(), [[1.0, 1.0]])
    np.testing.assert_allclose(m["1.weight"].numpy(), [[3.0]])
    # keeping 2 of 3 weights by SNIP: each layer keeps a path (its best entry), so b (6) and c (3)
    res = compress(model, data, sparsity=1 / 3, format=None, score="snip", loss_fn=_sum_loss)
    np.testing.assert_array_equal(res.masks["0.weight"].numpy(), [[False, True]])
    np.testing.assert_array_equal(res.masks["1.weight"].numpy(), [[True]])
    assert res.report.kept_weights == 2
    assert all(r.live for r in res.report.layers)
    # 1 of 3 would leave a layer dead: the guards refuse, naming what they need
    with pytest.raises(ValueError, match="guards need 2"):
        compress(model, data, sparsity=2 / 3, format=None, score="snip", loss_fn=_sum_loss)


# ----------------------------------------------------------------------------- dense MLP vs oracle
def _dense_mlp(seed=0, n_in=5, hidden=4, n_out=3):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(n_in, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, n_out)
    ).double()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((6, n_in))
    y = rng.integers(0, n_out, 6)
    return model, [(torch.tensor(x), torch.tensor(y))], x, y


def _ref_params(model):
    sd = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    return {
        "fc1.weight": sd["0.weight"].T,
        "fc1.bias": sd["0.bias"],
        "fc2.weight": sd["2.weight"].T,
        "fc2.bias": sd["2.bias"],
    }


def _ref_loss(x, y):
    return lambda p: reference.cross_entropy(reference.dense_mlp_forward(p, x), y)


def test_dense_gradients_and_scores_match_oracle():
    model, data, x, y = _dense_mlp()
    problem = TorchScoringProblem(model, data)
    ones = {n: torch.ones_like(w, dtype=torch.bool) for n, w in problem.weights().items()}
    g = problem.loss_gradient(ones)
    p = _ref_params(model)
    g_ref = reference.complex_step_grad(_ref_loss(x, y), p)
    assert _rel(g["0.weight"].numpy().T, g_ref["fc1.weight"]) < RTOL
    assert _rel(g["2.weight"].numpy().T, g_ref["fc2.weight"]) < RTOL
    snip = score(model, data, "snip")
    assert _rel(snip["0.weight"].numpy().T, np.abs(p["fc1.weight"] * g_ref["fc1.weight"])) < RTOL
    # GraSP: H g with g the full gradient, by central differences of complex-step gradients.
    # Only weights are perturbed (biases stay fixed), matching derivatives w.r.t. the weights.
    weights_only = {"fc1.weight": p["fc1.weight"], "fc2.weight": p["fc2.weight"]}

    def grad_w(q):
        full = dict(p, **q)
        gr = reference.complex_step_grad(_ref_loss(x, y), full)
        return {k: gr[k] for k in q}

    hg_ref = reference.central_difference_hvp(grad_w, weights_only, grad_w(weights_only))
    hg = problem.hessian_gradient_product(ones)
    assert _rel(hg["0.weight"].numpy().T, hg_ref["fc1.weight"]) < RTOL
    assert _rel(hg["2.weight"].numpy().T, hg_ref["fc2.weight"]) < RTOL
    grasp = score(model, data, "grasp")
    assert _rel(grasp["2.weight"].numpy().T, p["fc2.weight"] * hg_ref["fc2.weight"]) < RTOL


def test_synflow_matches_oracle():
    model, data, x, _ = _dense_mlp(seed=1)
    p = {k: np.abs(v) for k, v in _ref_params(model).items()}
    g_ref = reference.complex_step_grad(
        lambda q: reference.synflow_objective(reference.dense_mlp_forward, q, (1, x.shape[1])), p
    )
    s = score(model, None, "synflow", input_shape=(x.shape[1],))
    assert _rel(s["0.weight"].numpy().T, p["fc1.weight"] * g_ref["fc1.weight"]) < RTOL
    assert _rel(s["2.weight"].numpy().T, p["fc2.weight"] * g_ref["fc2.weight"]) < RTOL


# ----------------------------------------------------------------------------- TT MLP vs oracle
def test_tt_gradients_match_oracle():
    from tedepr.backends.torch import TTLinear

    torch.manual_seed(0)
    in_modes, out_modes = (2, 3), (2, 2)
    tt = TTLinear(6, 4, rank=2, in_modes=in_modes, out_modes=out_modes, dtype=torch.float64, seed=0)
    model = torch.nn.Sequential(tt, torch.nn.ReLU(), torch.nn.Linear(4, 3).double())
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((5, 6)), rng.integers(0, 3, 5)
    data = [(torch.tensor(x), torch.tensor(y))]
    sd = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    p = {f"fc1.cores.{k}": sd[f"0.core_{k}"] for k in range(2)}
    p.update({"fc1.bias": sd["0.bias"], "fc2.weight": sd["2.weight"].T, "fc2.bias": sd["2.bias"]})
    g_ref = reference.complex_step_grad(
        lambda q: reference.cross_entropy(reference.tt_mlp_forward(q, x, in_modes, out_modes), y), p
    )
    problem = TorchScoringProblem(model, data)
    ones = {n: torch.ones_like(w, dtype=torch.bool) for n, w in problem.weights().items()}
    g = problem.loss_gradient(ones)
    for k in range(2):
        assert _rel(g[f"0.core_{k}"].numpy(), g_ref[f"fc1.cores.{k}"]) < RTOL
    # masked gradient is w.r.t. the effective weights: a pruned entry still gets its sensitivity
    masks = dict(ones)
    masks["0.core_0"] = torch.zeros_like(masks["0.core_0"])
    masks["0.core_0"][0, 0, 0, 0] = True
    q = dict(p)
    q["fc1.cores.0"] = p["fc1.cores.0"] * masks["0.core_0"].numpy()
    g_ref_masked = reference.complex_step_grad(
        lambda r: reference.cross_entropy(reference.tt_mlp_forward(r, x, in_modes, out_modes), y), q
    )
    g_masked = problem.loss_gradient(masks)
    assert _rel(g_masked["0.core_1"].numpy(), g_ref_masked["fc1.cores.1"]) < RTOL
    assert _rel(g_masked["0.core_0"].numpy(), g_ref_masked["fc1.cores.0"]) < RTOL


# ----------------------------------------------------------------------------- compress end to end
def _lenet(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(784, 300),
        torch.nn.ReLU(),
        torch.nn.Linear(300, 100),
        torch.nn.ReLU(),
        torch.nn.Linear(100, 10),
    )


def _mnist_batch(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return [
        (
            torch.tensor(rng.random((n, 1, 28, 28)), dtype=torch.float32),
            torch.tensor(rng.integers(0, 10, n)),
        )
    ]


def test_compress_dense_baseline_and_low_rank_only():
    model = _lenet()
    res = compress(model, _mnist_batch(), sparsity=0.99, format=None, score="snip")
    assert res.report.kept_weights == round(0.01 * dense_weight_count(model))
    lr = compress(model, None, sparsity=0.99, format="tt", score=None)
    assert (
        lr.masks == {} and lr.report.kept_weights <= round(0.01 * dense_weight_count(model)) * 1.5
    )


def test_trainability_guards_keep_every_core_alive():
    res = compress(
        _lenet(), _mnist_batch(), sparsity=0.995, format="tt", score="trainability", rounds=3
    )
    from tedepr.backends.torch.scoring import structure_of
    from tedepr.pruning.connectivity import analyse, useful_entries

    structure = structure_of(res.model, res.masks)
    # every layer has a complete path, and every kept core entry lies on one (none is untrainable)
    assert all(v.live for v in analyse(res.masks, structure).values())
    assert all(r.live for r in res.report.layers)
    useful = useful_entries(res.masks, structure)
    for name, m in res.masks.items():
        if ".core_" in name:
            assert int(m.sum()) > 0
            np.testing.assert_array_equal(useful[name], m.numpy(), err_msg=name)
    assert res.report.kept_weights == round(0.005 * 266_200)


def test_guards_none_can_kill_a_layer_and_compress_names_it():
    from tedepr.compression import DeadLayerError
    from tedepr.pruning import Guards

    # magnitude at 99.9% with the classifier (module "5" of this Sequential) left dense empties it
    dense_classifier = {"min_params": 1024}
    with pytest.raises(DeadLayerError, match=r"weight\): 5;"):
        compress(
            _lenet(),
            None,
            sparsity=0.999,
            format="tt",
            score="magnitude",
            guards=Guards.none(),
            tensorize_options=dense_classifier,
        )
    res = compress(
        _lenet(),
        None,
        sparsity=0.999,
        format="tt",
        score="magnitude",
        tensorize_options=dense_classifier,
    )
    assert all(r.live for r in res.report.layers)
    assert res.report.kept_weights == 266


def test_compress_bad_input():
    model = _lenet()
    with pytest.raises(ValueError, match="sparsity"):
        compress(model, _mnist_batch(), sparsity=1.0)
    with pytest.raises(ValueError, match="needs data"):
        compress(model, None, sparsity=0.9, score="snip")
    with pytest.raises(ValueError, match="score must be one of"):
        compress(model, _mnist_batch(), sparsity=0.9, score="bogus")
    with pytest.raises(ValueError, match="guards need"):
        compress(
            model,
            _mnist_batch(),
            sparsity=0.9999,
            format="tt",
            score="snip",
            guards=Guards(min_density=0.5),
        )
    with pytest.raises(ValueError, match="no eligible layer"):
        compress(
            torch.nn.Sequential(torch.nn.ReLU()), None, sparsity=0.5, format="tt", score="magnitude"
        )
    with pytest.raises(TypeError, match="model"):
        compress(np.zeros(3), None, sparsity=0.5)


def test_nonfinite_scores_are_reported():
    model = _lenet()
    with torch.no_grad():
        model[1].weight[0, 0] = math.nan
    with pytest.raises(FloatingPointError, match="NaN or infinite"):
        compress(model, _mnist_batch(), sparsity=0.9, format=None, score="snip")


def test_compress_via_top_level_dispatch():
    res = tedepr.compress(
        _lenet(), _mnist_batch(), sparsity=0.99, format="tr", score="snip", backend="torch"
    )
    assert res.report.kept_weights == round(0.01 * dense_weight_count(_lenet()))
    s = tedepr.score(_lenet(), _mnist_batch(), method="magnitude", backend="torch")
    assert set(s) == {"1.weight", "3.weight", "5.weight"}
    assert count_kept(res.masks) == res.report.kept_weights
