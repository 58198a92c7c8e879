"""The JAX model zoo computes what the torch zoo computes (same weights in, same logits out, train
and eval mode, BatchNorm running statistics), and `tensorize` keeps names, counts and structure."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

from tedepr.backends.jax import (  # noqa: E402
    Dense,
    TensorizedLSTM,
    TTConv2d,
    TTLinear,
    apply_masks,
    get,
    prunable_leaves,
    prunable_paths,
    tensorize,
)
from tedepr.backends.jax.interchange import export_arrays, import_arrays  # noqa: E402
from tedepr.backends.jax.models import cifar_resnet, vgg  # noqa: E402

pytestmark = pytest.mark.jax


def _from_torch(tmod, jmodel):
    """The JAX params holding a torch zoo model's weights (torch names with '.' -> '/')."""
    sd = {k: v.detach().double().numpy() for k, v in tmod.state_dict().items()}
    params = {}
    for name, layer in jmodel.layers.items():
        t = name.replace("/", ".")
        kind = type(layer).__name__
        if kind in ("Dense", "Conv2d"):
            p = {"weight": sd[f"{t}.weight"].T if kind == "Dense" else sd[f"{t}.weight"]}
            if layer.bias:
                p["bias"] = sd[f"{t}.bias"]
        elif kind == "BatchNorm":
            p = {
                "scale": sd[f"{t}.weight"],
                "bias": sd[f"{t}.bias"],
                "mean": sd[f"{t}.running_mean"],
                "var": sd[f"{t}.running_var"],
            }
        elif kind == "LayerNorm":
            p = {"scale": sd[f"{t}.weight"], "bias": sd[f"{t}.bias"]}
        elif kind == "Parameter":
            p = {"value": sd[t]}
        elif kind == "LSTM":
            p = {
                "weight_ih_l0": sd[f"{t}.weight_ih_l0"].T,
                "weight_hh_l0": sd[f"{t}.weight_hh_l0"].T,
                "bias_ih_l0": sd[f"{t}.bias_ih_l0"],
                "bias_hh_l0": sd[f"{t}.bias_hh_l0"],
            }
        elif kind == "TransformerEncoderLayer":
            e = layer.d_model
            w, b = sd[f"{t}.self_attn.in_proj_weight"], sd[f"{t}.self_attn.in_proj_bias"]
            attn = {
                n: {"weight": w[i * e : (i + 1) * e].T, "bias": b[i * e : (i + 1) * e]}
                for i, n in enumerate(("q_proj", "k_proj", "v_proj"))
            }
            attn["out_proj"] = {
                "weight": sd[f"{t}.self_attn.out_proj.weight"].T,
                "bias": sd[f"{t}.self_attn.out_proj.bias"],
            }
            p = {"self_attn": attn}
            for n in ("linear1", "linear2"):
                p[n] = {"weight": sd[f"{t}.{n}.weight"].T, "bias": sd[f"{t}.{n}.bias"]}
            for n in ("norm1", "norm2"):
                p[n] = {"scale": sd[f"{t}.{n}.weight"], "bias": sd[f"{t}.{n}.bias"]}
        else:
            raise AssertionError(f"unexpected layer {kind}")
        params[name] = jax.tree.map(jnp.asarray, p)
    return params


def _torch_weight_names(tmod) -> set[str]:
    """The weights of torch's Linear/Conv2d/LSTM/attention modules (q/k/v split as in JAX)."""
    from torch import nn

    names = set()
    for mname, m in tmod.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            names.add(f"{mname}.weight")
        elif isinstance(m, nn.LSTM):
            names |= {
                f"{mname}.{w}_l{k}" for w in ("weight_ih", "weight_hh") for k in range(m.num_layers)
            }
        elif isinstance(m, nn.MultiheadAttention):
            names |= {f"{mname}.{p}_proj.weight" for p in "qkv"}
    return names


SMALL_VGG = (8, "M", 16, 16, "M", 16, "M")
CASES = {  # small inputs and depths keep the compile time low; same code paths as the full models
    "lenet300_100": ("lenet300_100", dict(image_size=8)),
    "lenet5": ("lenet5", dict(image_size=16)),  # padded by 2 like 28×28
    "resnet8-A": ("resnet", dict(image_size=8, in_channels=1)),
    "resnet8-B": ("resnet", dict(image_size=8, in_channels=1, shortcut="B")),
    "vgg-ceil-pools": ("vgg", dict(image_size=10, in_channels=3)),
    "lstm": ("lstm", dict(image_size=8)),
    "vit": ("vit", dict(image_size=16)),
}


def _both(kind, options):
    import torch

    from tedepr.backends.torch import models as torch_models

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if kind == "resnet":
            return torch_models.CifarResNet(8, **options), cifar_resnet(8, **options)
        if kind == "vgg":
            return torch_models.VGG(SMALL_VGG, **options), vgg(SMALL_VGG, **options)
        return torch_models.get(kind, **options), get(kind, flax=False, **options)


@pytest.mark.parametrize("case", list(CASES))
def test_zoo_matches_the_torch_zoo(case):
    torch = pytest.importorskip("torch")
    kind, options = CASES[case]
    tmod, jmodel = _both(kind, options)
    tmod = tmod.double()
    jax_names = {n.replace("/", ".") for n in prunable_paths(jmodel.init(jax.random.key(0)))}
    assert jax_names == _torch_weight_names(tmod)
    with torch.no_grad():
        for m in tmod.modules():  # non-trivial running statistics for the eval-mode check
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    params = _from_torch(tmod, jmodel)
    assert sum(a.size for a in jax.tree.leaves(params)) == sum(
        v.numel() for k, v in tmod.state_dict().items() if "num_batches_tracked" not in k
    )
    c = options.get("in_channels", 1)
    s = options["image_size"]
    x = np.random.default_rng(0).standard_normal((3, c, s, s))
    tmod.eval()
    expected = tmod(torch.tensor(x)).detach().numpy()
    got = jax.jit(jmodel.apply)(params, jnp.asarray(x))
    assert float(np.max(np.abs(got - expected)) / np.max(np.abs(expected))) <= 1e-10
    tmod.train()
    expected = tmod(torch.tensor(x)).detach().numpy()
    got, stats = jax.jit(jmodel.apply_train)(params, jnp.asarray(x))
    assert float(np.max(np.abs(got - expected)) / np.max(np.abs(expected))) <= 1e-10
    sd = tmod.state_dict()
    for layer, new in stats.items():
        t = layer.replace("/", ".")
        np.testing.assert_allclose(
            new["mean"], sd[f"{t}.running_mean"].numpy(), rtol=1e-10, atol=1e-12
        )
        np.testing.assert_allclose(
            new["var"], sd[f"{t}.running_var"].numpy(), rtol=1e-10, atol=1e-12
        )


def test_tensorize_replaces_eligible_layers_and_keeps_the_dense_count():
    model = get("lenet5", flax=False)
    params = model.init(jax.random.key(0))
    tt = tensorize(model, "tt", 4, min_params=1000, exclude="classifier")
    assert type(tt.layers["conv2"]) is TTConv2d and type(tt.layers["fc1"]) is TTLinear
    assert type(tt.layers["conv1"]).__name__ == "Conv2d"  # 150 weights < min_params
    assert type(tt.layers["classifier"]) is Dense  # excluded
    assert tt.dense_weight_count() == model.dense_weight_count()
    assert type(model.layers["fc1"]) is Dense  # the caller's model is untouched
    tparams = tt.init(jax.random.key(1))
    assert set(prunable_paths(tparams)) == set(tt.structure())
    y = jax.jit(tt.apply)(tparams, jnp.ones((2, 1, 28, 28)))
    assert y.shape == (2, 10) and bool(jnp.all(jnp.isfinite(y)))
    assert params["conv1"]["weight"].shape == tparams["conv1"]["weight"].shape
    lstm = tensorize(get("lstm", flax=False, image_size=8), "tr", 2, min_params=0)
    assert isinstance(lstm.layers["lstm"], TensorizedLSTM) and lstm.layers["lstm"].format == "tr"
    over = tensorize(model, "tt", 4, min_params=0, overrides={"fc*": {"format": "cp", "rank": 3}})
    assert over.layers["fc1"].format == "cp" and over.layers["fc1"].ranks == (3,)
    assert over.layers["conv2"].format == "tt"
    later = tensorize(model, "tt", 4, overrides={"fc*": {"rank": 2}, "fc1": {"format": "tr"}})
    assert later.layers["fc1"].format == "tr" and later.layers["fc1"].ranks[1] == 2
    with pytest.raises(ValueError, match="format"):
        tensorize(model, "ht", 4)
    with pytest.raises(ValueError, match="no eligible layer.*min_params"):
        tensorize(model, "tt", 4, min_params=10**9)
    with pytest.raises(ValueError, match=r"overrides: the pattern 'nothing\*' matches no layer"):
        tensorize(model, "tt", 4, overrides={"nothing*": {"rank": 2}})
    with pytest.warns(UserWarning, match="'conv1' matched no replaced layer"):  # left dense
        tensorize(model, "tt", 4, overrides={"conv1": {"rank": 2}})


@pytest.mark.parametrize(
    "name, fmt, options",
    [
        ("lenet5", "tt", dict(image_size=16)),
        ("lstm", "tucker", dict(image_size=8)),
        ("vit", "tr", dict(image_size=16)),
    ],
)
def test_interchange_with_the_torch_backend(name, fmt, options):
    """A masked tensorized JAX model exported, loaded into the torch model built by the torch
    backend's `tensorize` with the same arguments, computes the same function; and back."""
    torch = pytest.importorskip("torch")
    from tedepr.backends.torch import models as torch_models
    from tedepr.backends.torch import tensorize as torch_tensorize
    from tedepr.backends.torch.interchange import export_arrays as torch_export
    from tedepr.backends.torch.interchange import import_arrays as torch_import

    model = tensorize(get(name, flax=False, **options), fmt, 4)
    params = model.init(jax.random.key(0), jnp.float64)
    rng = np.random.default_rng(0)
    masks = {k: rng.random(v.shape) < 0.6 for k, v in prunable_leaves(params).items()}
    net = torch_tensorize(torch_models.get(name, seed=0, **options), fmt, 4).double()
    torch_import(net, export_arrays(model, params, masks))
    size = options.get("image_size", 28)
    x = rng.standard_normal((2, 1, size, size))
    expected = net.eval()(torch.tensor(x)).detach().numpy()
    got = np.asarray(jax.jit(model.apply)(params, jnp.asarray(x), masks))
    assert float(np.max(np.abs(got - expected)) / np.max(np.abs(expected))) <= 1e-10
    back, back_masks = import_arrays(model, torch_export(net))
    for a, b in zip(
        jax.tree.leaves(back), jax.tree.leaves(apply_masks(params, masks)), strict=True
    ):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert set(back_masks) == set(masks)
    assert all(np.array_equal(np.asarray(back_masks[k]), masks[k]) for k in masks)
