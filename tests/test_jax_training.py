"""JAX training: masks stay exactly zero through optax (params and moments), exact resume, the same
updates as the torch backend, and 2-device data parallelism equal to 1 device (in a subprocess)."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
optax = pytest.importorskip("optax")

from conftest import REPO, run_script  # noqa: E402

from tedepr.backends.jax import (  # noqa: E402
    Dense,
    Model,
    apply_masks,
    evaluate,
    fit,
    get,
    load_checkpoint,
    make_optimizer,
    make_train_step,
    normalize_masks,
    prunable_leaves,
    tensorize,
)
from tedepr.backends.jax.masking import path_string  # noqa: E402
from tedepr.backends.jax.training import trainable_mask  # noqa: E402

pytestmark = pytest.mark.jax


def _tiny_tt_mlp():
    """LeNet-300-100's shape at 4×4 pixels, hidden 8–6, 3 classes, with TT hidden layers."""
    model = get("lenet300_100", flax=False, num_classes=3, image_size=4, hidden=(8, 6))
    return tensorize(model, "tt", 2, min_params=0, exclude="classifier")


def _data(n=40, seed=0, classes=3):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1, 4, 4)).astype(np.float32), rng.integers(0, classes, n)


def _random_masks(params, density=0.5, seed=0):
    rng = np.random.default_rng(seed)
    return {
        path: rng.random(leaf.shape) < density for path, leaf in prunable_leaves(params).items()
    }


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "adamw"])
def test_pruned_entries_stay_exactly_zero_in_params_and_moments(optimizer):
    model = _tiny_tt_mlp()
    params = model.init(jax.random.key(0))
    flat = _random_masks(params)
    masks = normalize_masks(params, flat)
    trainable = trainable_mask(model, params)
    tx = make_optimizer(optimizer, momentum=0.9, weight_decay=5e-2, decay_mask=trainable)
    step = jax.jit(make_train_step(model, tx, trainable))
    params = apply_masks(params, flat)
    opt_state = tx.init(params)
    x, y = _data()
    for k in range(20):
        params, opt_state, loss, _ = step(
            params,
            opt_state,
            masks,
            x[k % 5 * 8 : (k % 5 + 1) * 8],
            y[k % 5 * 8 : (k % 5 + 1) * 8],
            jnp.asarray(0.05, jnp.float32),
        )
    assert np.isfinite(float(loss))
    weights = prunable_leaves(params)
    moments = {
        path_string(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(opt_state)[0]
    }
    for path, m in flat.items():
        value = np.asarray(weights[path])
        assert np.all(value[~m] == 0.0), f"{path}: a pruned entry moved"
        assert np.any(value[m] != 0.0)
        mine = [v for k, v in moments.items() if k.endswith("/" + path)]
        assert mine, f"{path}: the optimizer holds no moment for it"
        for state in mine:
            assert np.all(np.asarray(state)[~m] == 0.0), (
                f"{path}: optimizer moment nonzero at a pruned entry"
            )
    # the unpruned entries did train
    fresh = apply_masks(model.init(jax.random.key(0)), flat)
    assert any(
        not np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(fresh), strict=True)
    )


class _Interrupted(Exception):
    pass


class _InterruptOnSecondPass:
    """Eval data whose second pass raises: kills `fit` right after epoch 1's checkpoint."""

    def __init__(self, data):
        self.data, self.passes = data, 0

    def __iter__(self):
        def batches():
            self.passes += 1
            if self.passes > 1:
                raise _Interrupted("simulated interruption")
            yield self.data

        return batches()


@pytest.mark.slow  # a long training run (see the slow marker in pyproject.toml)
def test_resume_gives_identical_params(tmp_path):
    model = _tiny_tt_mlp()
    params = model.init(jax.random.key(1))
    masks = _random_masks(params, 0.7, seed=1)
    train, test = _data(40, 0), _data(16, 1)
    kw = dict(masks=masks, epochs=3, lr=0.05, optimizer="adam", batch_size=8, progress=False)
    full = fit(model, params, train, eval_data=[test], checkpoint_dir=tmp_path / "a", **kw)
    with pytest.raises(_Interrupted):
        fit(
            model,
            params,
            train,
            eval_data=_InterruptOnSecondPass(test),
            checkpoint_dir=tmp_path / "b",
            **kw,
        )
    ckpt = load_checkpoint(tmp_path / "b" / "last.npz")
    assert ckpt["meta"]["epoch"] == 1 and set(ckpt["masks"]) == set(masks)
    resumed = fit(
        model, params, train, eval_data=[test], checkpoint_dir=tmp_path / "b", resume=True, **kw
    )
    assert resumed.start_epoch == 1
    for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in full.history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in resumed.history]
    assert json.loads((tmp_path / "b" / "history.json").read_text())[-1]["epoch"] == 3
    with pytest.raises(ValueError, match="lr"):
        fit(model, params, train, checkpoint_dir=tmp_path / "b", resume=True, **{**kw, "lr": 0.1})
    loss, acc = evaluate(model, resumed.params, test, masks=masks)
    assert loss == pytest.approx(resumed.history[-1]["eval_loss"], rel=1e-6) and 0 <= acc <= 1


def test_same_updates_as_the_torch_backend():
    torch = pytest.importorskip("torch")
    from tedepr.backends.torch.training import fit as torch_fit
    from tedepr.backends.torch.training import make_loader

    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((20, 5)), rng.integers(0, 3, 20)
    model = Model(
        {"fc1": Dense(5, 7), "fc2": Dense(7, 3)},
        lambda call, z: call("fc2", jax.nn.relu(call("fc1", z))),
        (5,),
        "mlp",
    )
    params = model.init(jax.random.key(2), jnp.float64)
    net = torch.nn.Sequential(
        torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3)
    ).double()
    with torch.no_grad():
        for i, name in ((0, "fc1"), (2, "fc2")):
            net[i].weight.copy_(torch.tensor(np.asarray(params[name]["weight"]).T))
            net[i].bias.copy_(torch.tensor(np.asarray(params[name]["bias"])))
    for optimizer in ("sgd", "adamw"):
        kw = dict(
            epochs=2,
            lr=0.05,
            optimizer=optimizer,
            weight_decay=1e-2,
            schedule="cosine",
            seed=4,
            progress=False,
        )
        ours = fit(model, params, (x, y), batch_size=6, **kw)
        net_copy = __import__("copy").deepcopy(net)
        theirs = torch_fit(
            net_copy, make_loader(torch.tensor(x), torch.tensor(y), 6, shuffle=True, seed=4), **kw
        )
        for i, name in ((0, "fc1"), (2, "fc2")):
            np.testing.assert_allclose(
                np.asarray(ours.params[name]["weight"]),
                net_copy[i].weight.detach().numpy().T,
                rtol=1e-10,
                atol=1e-12,
            )
        for a, b in zip(ours.history, theirs.history, strict=True):
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-10)
            assert a["lr"] == pytest.approx(b["lr"], rel=1e-12)


_SHARDING_SCRIPT = textwrap.dedent("""
    import sys
    import jax, jax.numpy as jnp, numpy as np
    sys.path.insert(0, sys.argv[1])
    from tedepr.backends.jax import BatchNorm, Conv2d, Dense, Model, fit
    assert len(jax.devices()) == 2, jax.devices()

    def forward(call, x):
        x = jax.nn.relu(call("bn", call("conv", x)))
        return call("fc", jnp.reshape(x, (x.shape[0], -1)))

    layers = {"conv": Conv2d(1, 3, 3, padding=1), "bn": BatchNorm(3), "fc": Dense(3 * 5 * 5, 4)}
    model = Model(layers, forward, (1, 5, 5))
    params = model.init(jax.random.key(0))
    rng = np.random.default_rng(0)
    # 43 samples: 5 batches of 8 (sharded), then one of 3 (replicated)
    x = rng.standard_normal((43, 1, 5, 5)).astype(np.float32)
    y = rng.integers(0, 4, 43)
    masks = {"fc/weight": rng.random((75, 4)) < 0.5}
    kw = dict(masks=masks, epochs=2, lr=0.05, batch_size=8, progress=False)
    one = fit(model, params, (x, y), devices=jax.devices()[:1], **kw)
    two = fit(model, params, (x, y), devices=jax.devices(), **kw)
    worst = 0.0
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(two.params)):
        assert a.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
        worst = max(worst, float(np.max(np.abs(np.asarray(a) - np.asarray(b)))))
        assert len(b.sharding.device_set) == 2   # replicated on both devices
    assert np.all(np.asarray(two.params["fc"]["weight"])[~masks["fc/weight"]] == 0.0)
    print("max abs difference", worst)
""")


@pytest.mark.slow  # a long training run (see the slow marker in pyproject.toml)
def test_two_devices_match_one_device_in_a_subprocess(tmp_path):
    script = tmp_path / "shard.py"
    script.write_text(_SHARDING_SCRIPT)
    flags = "--xla_force_host_platform_device_count=2"
    proc = run_script(script, REPO, timeout=600, XLA_FLAGS=flags)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "max abs difference" in proc.stdout


def test_fit_rejects_integer_array_pairs():
    # every other bad argument of both backends: tests/contract/test_contract_training.py
    model = _tiny_tt_mlp()
    params = model.init(jax.random.key(0))
    data = _data(8)
    with pytest.raises(ValueError, match="floating"):
        fit(model, params, (data[0].astype(np.uint8), data[1]), epochs=1)


def test_checkpoint_is_a_plain_npz_whose_damage_is_detected(tmp_path):
    """The JAX checkpoint format (docs/jax.md): a pickle-free .npz that numpy alone reads, and a
    flipped byte anywhere is a CheckpointError (orbax restores such a file silently; see
    docs/architecture.md)."""
    from tedepr.checkpoint import CheckpointError

    model = _tiny_tt_mlp()
    params = model.init(jax.random.key(2))
    kw = dict(epochs=1, lr=0.05, optimizer="adam", batch_size=8, progress=False)
    fit(model, params, _data(16, 0), checkpoint_dir=tmp_path, **kw)
    path = tmp_path / "last.npz"
    with np.load(path, allow_pickle=False) as npz:
        assert "meta" in npz.files and any(k.startswith("params/") for k in npz.files)
        assert any(k.startswith("opt/") for k in npz.files)
    assert load_checkpoint(path)["meta"]["epoch"] == 1
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
