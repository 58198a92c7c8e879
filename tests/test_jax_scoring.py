"""JaxScoringProblem against derivative oracles on tiny networks (complex step, central
differences), its structure, the same scores as the torch backend, and compress end to end."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

from conftest import REPO, run_script  # noqa: E402

import reference  # noqa: E402
from tedepr.backends.jax import (  # noqa: E402
    CPLinear,
    Dense,
    JaxScoringProblem,
    Model,
    TTLinear,
    TuckerLinear,
    compress,
    get,
    score,
)
from tedepr.pruning import ScoringProblem, prune  # noqa: E402

pytestmark = pytest.mark.jax


def _mlp(fc1):
    """x (B, 4) -> relu(fc1) -> fc2 (5 -> 3): the reference's tiny MLP, with any first layer."""
    return Model(
        {"fc1": fc1, "fc2": Dense(5, 3)},
        lambda call, x: call("fc2", jax.nn.relu(call("fc1", x))),
        (4,),
        "mlp",
    )


def _batch(seed=0, n=6):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4)), rng.integers(0, 3, n)


def _dense_setup():
    model = _mlp(Dense(4, 5))
    rng = np.random.default_rng(1)
    params = {
        "fc1": {"weight": rng.standard_normal((4, 5)), "bias": rng.standard_normal(5)},
        "fc2": {"weight": rng.standard_normal((5, 3)), "bias": rng.standard_normal(3)},
    }
    return model, jax.tree.map(jnp.asarray, params), params


def _ref_names(flat):
    return {k.replace("/", "."): v for k, v in flat.items()}


def _masks(weights, seed=5):
    rng = np.random.default_rng(seed)
    return {n: rng.random(w.shape) < 0.7 for n, w in weights.items()}


def _rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_dense_mlp_gradient_and_hvp_match_the_oracles():
    model, params, raw = _dense_setup()
    x, y = _batch()
    problem = JaxScoringProblem(model, params, (x, y))
    assert isinstance(problem, ScoringProblem) and problem.has_data
    weights = problem.weights()
    assert list(weights) == ["fc1/weight", "fc2/weight"]
    masks = _masks(weights)
    eff = {n: np.asarray(w) * masks[n] for n, w in weights.items()}  # w = θ ⊙ m
    biases = {"fc1.bias": raw["fc1"]["bias"], "fc2.bias": raw["fc2"]["bias"]}

    def loss(w):
        return reference.cross_entropy(reference.dense_mlp_forward({**w, **biases}, x), y)

    def grad(w):
        return reference.complex_step_grad(loss, w)

    expected = grad(_ref_names(eff))
    got = problem.loss_gradient(masks)
    for n in weights:
        assert got[n].dtype == jnp.float64
        assert _rel(got[n], expected[n.replace("/", ".")]) <= 1e-10
    # GraSP's H g at the same point, g = ∂L/∂w
    hg = problem.hessian_gradient_product(masks)
    expected_hg = reference.central_difference_hvp(grad, _ref_names(eff), expected)
    for n in weights:
        assert _rel(hg[n], expected_hg[n.replace("/", ".")]) <= 1e-6


def test_gradients_average_over_batches():
    model, params, _ = _dense_setup()
    batches = [_batch(0), _batch(1), _batch(2)]
    problem = JaxScoringProblem(model, params, batches, num_batches=2)
    ones = {n: np.ones(w.shape, bool) for n, w in problem.weights().items()}
    both = problem.loss_gradient(ones)
    single = [JaxScoringProblem(model, params, b).loss_gradient(ones) for b in batches[:2]]
    for n in both:
        np.testing.assert_allclose(both[n], (single[0][n] + single[1][n]) / 2, rtol=1e-12)


def test_jax_namespace_gives_the_same_arrays_on_device():
    model, params, _ = _dense_setup()
    data = _batch(5)
    on_host = JaxScoringProblem(model, params, data)
    on_device = JaxScoringProblem(model, params, data, namespace="jax")
    assert on_host.xp.__name__.endswith("numpy") and on_device.xp is jnp
    ones = {n: np.ones(w.shape, bool) for n, w in on_host.weights().items()}
    for a, b in (
        (on_host.weights(), on_device.weights()),
        (on_host.hessian_gradient_product(ones), on_device.hessian_gradient_product(ones)),
    ):
        for n in a:
            assert isinstance(a[n], np.ndarray) and isinstance(b[n], jax.Array)
            np.testing.assert_array_equal(a[n], np.asarray(b[n]))
    assert np.array_equal(
        np.asarray(prune(on_device, "snip", 9)["fc1/weight"]),
        prune(on_host, "snip", 9)["fc1/weight"],
    )
    with pytest.raises(ValueError, match="namespace"):
        JaxScoringProblem(model, params, data, namespace="torch")


def test_tt_mlp_gradient_matches_complex_step():
    fc1 = TTLinear(4, 5, (1, 2, 1), (2, 2), (5, 1), bias=True)
    model = _mlp(fc1)
    rng = np.random.default_rng(2)
    raw = {
        "fc1": {
            "cores": tuple(rng.standard_normal(s) for s in fc1.core_shapes),
            "bias": rng.standard_normal(5),
        },
        "fc2": {"weight": rng.standard_normal((5, 3)), "bias": rng.standard_normal(3)},
    }
    params = jax.tree.map(jnp.asarray, raw)
    x, y = _batch(3)
    problem = JaxScoringProblem(model, params, (x, y))
    assert list(problem.weights()) == ["fc1/cores/0", "fc1/cores/1", "fc2/weight"]
    masks = _masks(problem.weights(), seed=6)
    eff = {n: np.asarray(w) * masks[n] for n, w in problem.weights().items()}
    biases = {"fc1.bias": raw["fc1"]["bias"], "fc2.bias": raw["fc2"]["bias"]}

    def loss(w):
        out = reference.tt_mlp_forward({**w, **biases}, x, (2, 2), (5, 1))
        return reference.cross_entropy(out, y)

    expected = reference.complex_step_grad(loss, _ref_names(eff))
    got = problem.loss_gradient(masks)
    for n in got:
        assert _rel(got[n], expected[n.replace("/", ".")]) <= 1e-10


def test_synflow_gradient_matches_complex_step():
    model, params, raw = _dense_setup()
    problem = JaxScoringProblem(model, params)  # data-free
    assert not problem.has_data
    masks = _masks(problem.weights(), seed=7)
    abs_biases = {"fc1.bias": np.abs(raw["fc1"]["bias"]), "fc2.bias": np.abs(raw["fc2"]["bias"])}

    def objective(w):
        return reference.synflow_objective(reference.dense_mlp_forward, {**w, **abs_biases}, (1, 4))

    eff = {n: np.abs(np.asarray(w)) * masks[n] for n, w in problem.weights().items()}
    expected = reference.complex_step_grad(objective, _ref_names(eff))
    got = problem.synflow_gradient(masks)
    for n in got:
        assert got[n].dtype == jnp.float64
        assert _rel(got[n], expected[n.replace("/", ".")]) <= 1e-10
    with pytest.raises(ValueError, match="data"):
        problem.loss_gradient(masks)


_X64_SCRIPT = textwrap.dedent("""
    import sys
    import jax, jax.numpy as jnp, numpy as np
    sys.path.insert(0, sys.argv[1])
    from tedepr.backends.jax import Dense, JaxScoringProblem, Model
    assert not jax.config.read("jax_enable_x64")
    model = Model({"fc": Dense(3, 2)}, lambda call, x: call("fc", x), (3,))
    params = model.init(jax.random.key(0))
    problem = JaxScoringProblem(model, params)
    g = problem.synflow_gradient({"fc/weight": np.ones((3, 2), bool)})
    assert g["fc/weight"].dtype == np.float64, g["fc/weight"].dtype
    assert not jax.config.read("jax_enable_x64")          # the caller's configuration is untouched
    assert jnp.ones(2).dtype == jnp.float32
    print("ok")
""")


def test_synflow_runs_in_float64_without_touching_the_global_flag(tmp_path):
    script = tmp_path / "x64.py"
    script.write_text(_X64_SCRIPT)
    proc = run_script(script, REPO, timeout=300)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stdout + proc.stderr


def test_structure_describes_every_core():
    model = Model(
        {
            "tt": TTLinear(12, 20, 2),
            "tucker": TuckerLinear(12, 20, 2, (3, 4), (4, 5)),
            "cp": CPLinear(12, 20, 2),
            "dense": Dense(20, 3),
        },
        lambda call, x: call("dense", call("cp", call("tucker", x) + call("tt", x))),
        (12,),
    )
    problem = JaxScoringProblem(model, model.init(jax.random.key(0)))
    info = problem.structure()
    assert list(info) == list(problem.weights())
    for path, ci in info.items():
        layer = path.split("/")[0]
        assert ci.layer == layer and ci.format == ("dense" if layer == "dense" else layer)
        if layer == "tt":
            assert (ci.slice_axes, ci.bond_axes) == ((1, 2), (0, 3))
        elif layer == "tucker" and ci.index == 0:
            assert ci.slice_axes == () and ci.bond_axes == (0, 1, 2, 3)
        elif layer in ("tucker", "cp"):
            assert (ci.slice_axes, ci.bond_axes) == ((0,), (1,))
        else:
            assert ci.slice_axes == ()


def test_same_scores_and_masks_as_the_torch_backend():
    torch = pytest.importorskip("torch")
    from tedepr.backends.torch.scoring import TorchScoringProblem

    model, params, raw = _dense_setup()
    x, y = _batch(4, 8)
    net = torch.nn.Sequential()
    net.add_module("fc1", torch.nn.Linear(4, 5))
    net.add_module("relu", torch.nn.ReLU())
    net.add_module("fc2", torch.nn.Linear(5, 3))
    net = net.double()
    with torch.no_grad():
        for name in ("fc1", "fc2"):
            getattr(net, name).weight.copy_(torch.tensor(raw[name]["weight"].T))
            getattr(net, name).bias.copy_(torch.tensor(raw[name]["bias"]))
    ours = JaxScoringProblem(model, params, (x, y))
    theirs = TorchScoringProblem(net, (x, y))
    for method in ("snip", "grasp", "synflow"):
        m_ours = prune(ours, method, 12, rounds=2 if method == "synflow" else None)
        m_theirs = prune(theirs, method, 12, rounds=2 if method == "synflow" else None)
        for name in ("fc1", "fc2"):
            assert np.array_equal(
                np.asarray(m_ours[f"{name}/weight"]), m_theirs[f"{name}.weight"].numpy().T
            ), method
    s_ours = score(model, (x, y), "snip", params=params)
    g = theirs.loss_gradient(
        {n: torch.ones_like(w, dtype=torch.bool) for n, w in theirs.weights().items()}
    )
    for name in ("fc1", "fc2"):
        expected = np.abs(raw[name]["weight"] * g[f"{name}.weight"].numpy().T)
        assert _rel(s_ours[f"{name}/weight"], expected) <= 1e-10


def test_compress_without_format_returns_the_callers_model():
    # budget, masks, layers and errors of both backends: tests/contract/test_contract_compress.py;
    # a JAX model is immutable structure, so the dense baseline shares it (torch copies its module)
    model = get("lenet300_100", flax=False, num_classes=3, image_size=6, hidden=(16, 12))
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((16, 1, 6, 6)).astype(np.float32), rng.integers(0, 3, 16))
    base = compress(model, data, sparsity=0.9, format=None, score="magnitude")
    assert base.model is model
    assert base.report.kept_weights == round(0.1 * model.dense_weight_count())
