"""Run configs (tedepr.configs): the schema, load() errors, and every packaged paper config — it
parses, its model builds in both backends, and one training step runs on synthetic data of the
right shape."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tedepr import configs
from tedepr import models as zoo
from tedepr.cli.methods import expand_methods
from tedepr.datasets import dataset_spec

REPO = Path(__file__).resolve().parents[1]
PAPER = (
    "mnist_lenet300",
    "mnist_lenet5",
    "cifar10_vgg16",
    "cifar10_vgg19",
    "cifar100_vgg16",
    "cifar100_vgg19",
    "cifar10_resnet20",
    "cifar10_resnet32",
    "cifar10_resnet56",
    "tinyimagenet_resnet18",
    "imagenet_resnet18",
    "ucf11_lstm",
    "cifar10_vit",
)
# Inputs shrunk for the one-step test only, so that the file runs in seconds on one CPU core: the
# architecture is the same (convolutional nets and the LSTM take any size), only H, W or F shrink.
# ImageNet's 64x64 and Tiny-ImageNet's 64x64 ResNet-18 run at 32x32; UCF11's 57,600-feature frames
# (160x120 RGB: a 59 M-weight input map) at 12x16 RGB (576 features).
SHRINK = {
    "imagenet_resnet18": {"image_size": 32},
    "tinyimagenet_resnet18": {"image_size": 32},
    "ucf11_lstm": {"frame_size": [12, 16]},
}
SPEC_OPTIONS = ("image_size", "frames", "frame_size", "grayscale")


def test_available_lists_every_paper_experiment():
    assert configs.available() == sorted(f"paper/{name}" for name in PAPER)


def test_default_study_config_is_the_issue_s():
    cfg = configs.load("paper/mnist_lenet300")
    assert cfg["model"] == "lenet300_100" and cfg["dataset"] == "mnist10k"
    assert cfg["sparsities"] == [0.99, 0.995, 0.998, 0.999] and cfg["seeds"] == [0, 1]
    assert (cfg["optimizer"], cfg["lr"], cfg["weight_decay"]) == ("adam", 0.003, 0.0)
    assert (cfg["epochs"], cfg["batch_size"]) == (60, 128)


def shapes(cfg: dict, name: str) -> dict:
    options = {k: v for k, v in cfg.get("dataset_options", {}).items() if k in SPEC_OPTIONS}
    options.update(SHRINK.get(name, {}))
    return dataset_spec(cfg["dataset"], **options)


@pytest.mark.parametrize("name", PAPER)
def test_paper_config_parses_and_names_zoo_models(name):
    cfg = configs.load(f"paper/{name}")
    assert configs.load(f"paper/{name}.toml") == cfg
    assert set(cfg) <= set(configs.KEYS)
    for key in ("model", "dataset", "methods", "sparsities", "seeds", "epochs", "optimizer", "lr"):
        assert key in cfg, key
    assert cfg.get("description")
    # the method names mean something to the command line
    assert "dense" in expand_methods(cfg["methods"], cfg.get("format", "tt"))
    for backend in zoo.BACKENDS:
        assert cfg["model"] in zoo.available(backend), (cfg["model"], backend)
    spec = dataset_spec(
        cfg["dataset"],
        **{k: v for k, v in cfg.get("dataset_options", {}).items() if k in SPEC_OPTIONS},
    )
    assert (
        spec["num_classes"]
        == {
            "mnist10k": 10,
            "mnist": 10,
            "cifar10": 10,
            "cifar100": 100,
            "tiny-imagenet": 200,
            "imagenet": 1000,
            "ucf11": 11,
        }[cfg["dataset"]]
    )


def batch(spec: dict, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, *spec["input_shape"])).astype(np.float32)
    y = np.array([0, spec["num_classes"] - 1], dtype=np.int64)
    return x, y


def recipe(cfg: dict) -> dict:
    keys = ("lr", "optimizer", "momentum", "weight_decay", "schedule")
    return {k: cfg[k] for k in keys if k in cfg}


@pytest.mark.torch
@pytest.mark.parametrize("name", PAPER)
def test_paper_config_trains_one_step_torch(name):
    torch = pytest.importorskip("torch")
    from tedepr.backends.torch import fit

    cfg = configs.load(f"paper/{name}")
    spec = shapes(cfg, name)
    kwargs = {k: spec[k] for k in ("num_classes", "in_channels", "image_size")}
    model = zoo.get(cfg["model"], backend="torch", seed=0, **kwargs, **cfg.get("model_options", {}))
    x, y = batch(spec)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    with torch.no_grad():
        assert model.eval()(torch.as_tensor(x)).shape == (2, spec["num_classes"])
    torch.manual_seed(0)
    result = fit(model, [(x, y)], epochs=1, progress=False, **recipe(cfg))
    assert len(result.history) == 1 and math.isfinite(result.history[0]["train_loss"])
    changed = [k for k, v in model.named_parameters() if not torch.equal(v.detach(), before[k])]
    assert changed, "no parameter changed in the training step"


def jax_model(cfg: dict, name: str):
    spec = shapes(cfg, name)
    kwargs = {k: spec[k] for k in ("num_classes", "in_channels", "image_size")}
    options = cfg.get("model_options", {})
    return zoo.get(cfg["model"], backend="jax", flax=False, **kwargs, **options), spec


def jax_step(jax, model, cfg: dict):
    from tedepr.backends.jax.training import make_optimizer, make_train_step, trainable_mask

    def run(params, x, y):
        trainable = trainable_mask(model, params)
        tx = make_optimizer(
            cfg.get("optimizer", "sgd"),
            cfg.get("momentum", 0.9),
            cfg.get("weight_decay", 5e-4),
            decay_mask=trainable,
        )
        step = make_train_step(model, tx, trainable)
        new, _, loss, _ = step(params, tx.init(params), None, x, y, cfg["lr"])
        return new, loss

    return run


@pytest.mark.jax
@pytest.mark.parametrize("name", PAPER)
def test_paper_config_builds_in_jax_with_the_torch_weight_count(name):
    """Every config's model builds in JAX with the same SPEC weight count as in torch, and its
    whole training step (forward, gradients, optimizer update) traces to the right shapes.

    Abstract evaluation (``jax.eval_shape``) instead of execution: compiling the step of every
    CIFAR/ImageNet net takes minutes on a 2-core CPU; the step is executed for the MNIST and UCF11
    configs below, and the torch test above executes every config."""
    jax = pytest.importorskip("jax")
    pytest.importorskip("torch")
    import jax.numpy as jnp

    from tedepr.backends.torch import dense_weight_count

    cfg = configs.load(f"paper/{name}")
    model, spec = jax_model(cfg, name)
    params = jax.eval_shape(model.init, jax.random.key(0))
    x = jax.ShapeDtypeStruct((2, *spec["input_shape"]), jnp.float32)
    y = jax.ShapeDtypeStruct((2,), jnp.int32)
    logits = jax.eval_shape(model.apply, params, x)
    assert logits.shape == (2, spec["num_classes"])
    new, loss = jax.eval_shape(jax_step(jax, model, cfg), params, x, y)
    assert loss.shape == () and jax.tree.structure(new) == jax.tree.structure(params)
    assert all(a.shape == b.shape for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(params)))
    kwargs = {k: spec[k] for k in ("num_classes", "in_channels", "image_size")}
    torch_model = zoo.get(cfg["model"], backend="torch", seed=0, **kwargs,
                          **cfg.get("model_options", {}))  # fmt: skip
    assert model.dense_weight_count() == dense_weight_count(torch_model)


@pytest.mark.jax
@pytest.mark.parametrize("name", ["mnist_lenet300", "mnist_lenet5", "ucf11_lstm"])
def test_paper_config_trains_one_step_jax(name):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    cfg = configs.load(f"paper/{name}")
    model, spec = jax_model(cfg, name)
    params = model.init(jax.random.key(0))
    x, y = batch(spec)
    new, loss = jax.jit(jax_step(jax, model, cfg))(params, jnp.asarray(x), jnp.asarray(y))
    assert math.isfinite(float(loss))
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)), params, new))
    assert any(moved), "no parameter changed in the training step"


# ---------- schema and errors


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_load_file_returns_only_the_keys_present(tmp_path):
    path = write(
        tmp_path,
        'model = "lenet5"\nsparsities = [0, 0.5]\nlr = 1\n[dataset_options]\ntest_fraction = 0.1\n',
    )
    cfg = configs.load(path)
    assert cfg == {"model": "lenet5", "sparsities": [0.0, 0.5], "lr": 1.0,
                   "dataset_options": {"test_fraction": 0.1}}  # fmt: skip
    assert isinstance(cfg["lr"], float) and configs.load(str(path)) == cfg


@pytest.mark.parametrize(
    "text, message",
    [
        ("modle = 'lenet5'", "unknown config key 'modle' \\(did you mean 'model'\\?\\)"),
        ("sparsity = [0.9]", "did you mean 'sparsities'"),
        ("dataset = 'cifar'", "dataset must be one of .* \\(did you mean 'cifar10'\\?\\)"),
        ("sparsities = [0.9, 1.0]", "sparsities\\[1\\] must be a number in \\[0, 1\\)"),
        ("sparsities = 0.9", "sparsities must be a non-empty list"),
        ("sparsities = []", "sparsities must be a non-empty list"),
        ("sparsities = [0.9, 0.9]", "sparsities lists 0.9 more than once"),
        ("seeds = [0, -1]", "seeds\\[1\\] must be an int >= 0"),
        ("seeds = [0.5]", "seeds\\[0\\] must be an int >= 0"),
        ("epochs = 0", "epochs must be an int >= 1"),
        ("epochs = true", "epochs must be an int >= 1"),
        ("batch_size = 12.0", "batch_size must be an int >= 1"),
        ("format = 'TT'", "format must be one of 'tt', 'tr', 'tucker', 'cp'"),
        ("backend = 'tf'", "backend must be one of 'torch', 'jax'"),
        ("optimizer = 'adamw2'", "did you mean 'adamw'"),
        ("schedule = 'linear'", "schedule must be one of 'cosine', 'step', 'constant'"),
        ("lr = 0", "lr must be a number > 0"),
        ("lr = 'fast'", "lr must be a number > 0"),
        ("lr = nan", "lr must be a number > 0"),
        ("momentum = 1.0", "momentum must be a number in \\[0, 1\\)"),
        ("weight_decay = -1e-4", "weight_decay must be a number >= 0"),
        ("subset = 0", "subset must be an int >= 1"),
        ("methods = ['snip', 3]", "methods\\[1\\] must be a non-empty string"),
        ("model = 3", "model must be a non-empty string"),
        ("model_options = 3", "model_options must be a table"),
        ("[model_options]\nnum_classes = 5", "model_options.num_classes comes from the data set"),
        ("[dataset_options]\nframe = 6", "dataset_options.frame is not a load_dataset option"),
        ("[dataset_options]\nimage_size = 0", "dataset_options: image_size must be a positive"),
        ("dataset = 'cifar10'\n[dataset_options]\nframes = 6", "frames applies only to 'ucf11'"),
        ("[dataset_options]\ntest_fraction = 1", "test_fraction must be a number in \\(0, 1\\)"),
        ("dataset = 'mnist10k'\ndata = '/x'", "data must not be set for dataset 'mnist10k'"),
        ("[optimizer]\nname = 'sgd'", "optimizer must be a non-empty string"),
        ("model = ", "not valid TOML"),
    ],
)
def test_bad_configs_name_the_key_and_what_is_allowed(tmp_path, text, message):
    path = write(tmp_path, text + "\n")
    with pytest.raises(ValueError, match=message) as info:
        configs.load(path)
    assert str(path) in str(info.value)  # the file is named too


def test_load_refs(tmp_path):
    for typo in ("paper/cifar10_vg16", "paper/cifar10_vg16.toml"):
        with pytest.raises(ValueError, match="did you mean 'paper/cifar10_vgg16'"):
            configs.load(typo)
    with pytest.raises(ValueError, match="did you mean 'paper/mnist_lenet5'"):
        configs.load("mnist_lenet5")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        configs.load(tmp_path / "missing.toml")
    with pytest.raises(TypeError, match="ref must be a str or path"):
        configs.load(3)
    with pytest.raises(TypeError, match="config must be a dict"):
        configs.validate([("model", "lenet5")])


def test_every_key_is_described():
    for key, spec in configs.KEYS.items():
        assert spec.type and spec.meaning, key
    assert set(configs.KEYS) == {
        "model", "dataset", "data", "methods", "sparsities", "seeds", "epochs", "format",
        "backend", "device", "batch_size", "optimizer", "lr", "momentum", "weight_decay",
        "schedule", "subset", "model_options", "dataset_options", "description",
    }  # fmt: skip


def test_configs_import_no_framework():
    code = (
        "import sys, tedepr.configs as c; c.load('paper/cifar10_vgg16'); "
        "print(' '.join(m for m in ('torch', 'jax') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert out.stdout.strip() == ""
