"""The JAX model zoo written in Flax NNX: ``nnx.Linear``, ``nnx.Conv``, ``nnx.BatchNorm``,
``nnx.LayerNorm``, ``nnx.MultiHeadAttention`` and ``nnx.RNN`` modules, built by
``tedepr.backends.jax.get(name, ...)`` (the JAX zoo's default; ``flax=False`` gives the `Model`)
or `get` here.

Each model here is the `tedepr.backends.jax.models` zoo model of the same name, written as an
``nnx.Module`` a Flax user can call, train and edit like their own:

* **Same weights.** ``rngs=s`` (an int) gives exactly the arrays of the `Model` version's
  ``model.init(jax.random.key(s))`` (an ``nnx.Rngs`` gives those of ``model.init(rngs.params())``):
  the pure layers draw them, and the NNX modules are filled with them (``nnx.Linear.kernel`` is
  the `Dense` weight ``(in, out)``; ``nnx.Conv.kernel`` ``(kh, kw, C_in, C_out)`` is the `Conv2d`
  weight ``(C_out, C_in, kh, kw)`` transposed). So ``compress(flax_model, ..., seed=s)`` and
  ``compress(model, ..., seed=s)`` give the same masks, and ``fit`` the same training.
* **Same names.** The attribute paths are the `Model`'s layer names (``hidden/0``,
  ``features/3``, ``blocks/2/projection/0``; VGG's ``features`` is an ``nnx.List`` with the ReLUs
  and pools at torch's ``nn.Sequential`` indices), so ``tensorize_hints``, ``include``/
  ``exclude``/``overrides`` globs and report rows are the same.
* **Hints for the bridge.** Each model carries ``layer_order``, ``weight_inits``,
  ``tensorize_hints`` and ``input_shape`` (and ``zoo``, when built by `get`) as plain
  attributes, which `tedepr.backends.jax.nnx` reads (its ``_hints``): NNX walks attributes in
  sorted order, and an ``nnx.Linear`` does not say which init drew its weights.
* **Layouts.** Inputs are NCHW images ``(N, C, H, W)`` (``(N, H, W)`` when ``C = 1``), as the
  `Model` zoo and the torch zoo take them, so the same data feeds all three; inside, activations
  are NHWC (``nnx.Conv``'s layout), and LeNet-5 flattens in NCHW order as the others do.
* **BatchNorm.** ``nnx.BatchNorm(momentum=0.9, epsilon=1e-5)``: torch's ``momentum=0.1``. Called
  directly, the model follows NNX's modes (``model.train()`` batch statistics, ``model.eval()``
  running ones); under `compress`/`fit` the pipeline picks the mode and updates the running
  statistics with torch's rule (unbiased batch variance; NNX's own update uses the biased one).

* **ViT.** Encoder layers are `tedepr.backends.jax.nnx.TransformerEncoderLayer` s (an
  ``nnx.MultiHeadAttention``, ``nnx.Linear`` s, ``nnx.LayerNorm`` s), routed whole to the pipeline's
  `TransformerEncoderLayer`; ``norm`` and the free ``cls_token``/``pos_embed`` params are named in
  ``layer_order``, so the bridge makes them layers of their own, as the `Model` zoo's.

* **LSTM.** ``lstm`` is an ``nnx.RNN`` over an ``nnx.OptimizedLSTMCell`` (``lstm``, batch first;
  its kernels ``dense_i (in, 4H)`` / ``dense_h (H, 4H)`` are the `LSTM`'s ``weight_ih_l0`` /
  ``weight_hh_l0``, gates i, f, g, o) and ``classifier`` on the last hidden state (the carry).
  With ``num_layers > 1`` it is a `tedepr.backends.jax.nnx.StackedLSTM` (an ``nnx.List`` of such
  ``nnx.RNN`` s with an ``nnx.Dropout`` between them), which the bridge routes as one stacked
  `LSTM` with the `Model`'s (torch's) names ``weight_ih_l1``, ... flax's cell has one bias where
  the `Model`'s layer has two: it holds their sum ``bias_ih_l0 + bias_hh_l0``, and the bridge
  gives it back as ``bias_ih_l0 = 0``, ``bias_hh_l0 =`` that sum (`tedepr.backends.jax.nnx`): the
  same function, to the float rounding of the sum, so `compress` gives the `Model` path's masks
  (checked in tests/test_flax_zoo.py), not bitwise its scores.

Importing this module imports flax.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from ... import models as zoo
from . import attention as _attn
from . import models as pure
from . import nnx as tnnx
from .conv import Conv2d
from .layers import BatchNorm, Dense, LayerNorm
from .nnx import _key
from .recurrent import LSTM

__all__ = [
    "ZooModule",
    "LeNet300_100",
    "LeNet5",
    "VGG",
    "BasicBlock",
    "ResNet",
    "ViT",
    "LSTMClassifier",
    "MODELS",
    "NOT_IN_FLAX",
    "available",
    "get",
    "from_model",
]

#: zoo models the Flax zoo does not have, and why
NOT_IN_FLAX: dict[str, str] = {}

_ZEROS = nnx.initializers.zeros_init()


# ------------------------------------------------------------------------------------------ layers
def _rngs():
    return nnx.Rngs(0)  # the kernels are overwritten: zeros_init draws nothing


def linear(layer: Dense, params, dtype) -> nnx.Linear:
    """The ``nnx.Linear`` holding a pure `Dense` layer's params."""
    m = nnx.Linear(
        layer.in_features,
        layer.out_features,
        use_bias=layer.bias,
        param_dtype=dtype,
        kernel_init=_ZEROS,
        rngs=_rngs(),
    )
    m.kernel[...] = jnp.asarray(params["weight"], dtype)
    if layer.bias:
        m.bias[...] = jnp.asarray(params["bias"], dtype)
    return m


def conv(layer: Conv2d, params, dtype) -> nnx.Conv:
    """The ``nnx.Conv`` (NHWC, kernel ``(kh, kw, C_in/g, C_out)``) of a pure `Conv2d`."""
    if isinstance(layer.padding, str):
        padding = layer.padding.upper()
    else:
        ph, pw = (layer.padding,) * 2 if isinstance(layer.padding, int) else layer.padding
        padding = ((ph, ph), (pw, pw))
    m = nnx.Conv(
        layer.in_channels,
        layer.out_channels,
        tuple(layer.kernel_size),
        tuple(layer.stride),
        padding=padding,
        kernel_dilation=tuple(layer.dilation),
        feature_group_count=layer.groups,
        use_bias=layer.bias,
        param_dtype=dtype,
        kernel_init=_ZEROS,
        rngs=_rngs(),
    )
    m.kernel[...] = jnp.transpose(jnp.asarray(params["weight"], dtype), (2, 3, 1, 0))
    if layer.bias:
        m.bias[...] = jnp.asarray(params["bias"], dtype)
    return m


def batch_norm(layer: BatchNorm, params, dtype) -> nnx.BatchNorm:
    """The ``nnx.BatchNorm`` (features last) of a pure `BatchNorm` (flax's ``momentum`` weighs the
    running value: torch's ``1 − momentum``)."""
    m = nnx.BatchNorm(
        layer.num_features,
        momentum=1.0 - layer.momentum,
        epsilon=layer.eps,
        param_dtype=dtype,
        rngs=_rngs(),
    )
    for k in ("scale", "bias", "mean", "var"):
        getattr(m, k)[...] = jnp.asarray(params[k], dtype)
    return m


def lstm(layer: LSTM, params, dtype) -> nnx.RNN:
    """The ``nnx.RNN(nnx.OptimizedLSTMCell)`` of a pure one-layer `LSTM` with biases: the cell's
    kernels are the layer's, its one bias ``bias_ih_l0 + bias_hh_l0``."""
    if layer.num_layers != 1 or not layer.bias:
        raise ValueError(
            "layer must be a one-layer LSTM with biases (stacked_lstm builds stacked ones); got "
            f"num_layers={layer.num_layers}, bias={layer.bias}"
        )
    cell = nnx.OptimizedLSTMCell(
        layer.input_size,
        layer.hidden_size,
        kernel_init=_ZEROS,
        recurrent_kernel_init=_ZEROS,
        param_dtype=dtype,
        rngs=_rngs(),
    )
    tnnx._fill_lstm_cell(cell, jax.tree.map(lambda a: jnp.asarray(a, dtype), params))
    return nnx.RNN(cell, time_major=not layer.batch_first)


def stacked_lstm(layer: LSTM, params, dtype, rngs) -> tnnx.StackedLSTM:
    """The `tedepr.backends.jax.nnx.StackedLSTM` of a pure stacked `LSTM` with biases: layer
    ``k``'s cell holds its kernels ``weight_ih_l{k}`` / ``weight_hh_l{k}`` and one bias
    ``bias_ih_l{k} + bias_hh_l{k}`` (as `lstm`), the dropout its rate and a stream from ``rngs``
    (an int seed or an ``nnx.Rngs``)."""
    if not layer.bias:
        raise ValueError("layer must be an LSTM with biases (flax's cell has one); got bias=False")
    streams = rngs if isinstance(rngs, nnx.Rngs) else nnx.Rngs(rngs)
    m = tnnx.StackedLSTM(
        layer.input_size,
        layer.hidden_size,
        layer.num_layers,
        layer.dropout,
        layer.batch_first,
        rngs=streams,
        dtype=dtype,
    )
    arrays = jax.tree.map(lambda a: jnp.asarray(a, dtype), params)
    for k, rnn in enumerate(m.layers):
        tnnx._fill_lstm_cell(rnn.cell, tnnx._layer_k(arrays, k))
    return m


_BUILDERS = {Dense: linear, Conv2d: conv, BatchNorm: batch_norm, LSTM: lstm}


def from_model(spec: pure.Model, params, name: str, dtype=jnp.float32):
    """The NNX module of the layer ``name`` of a `Model` ``spec``, holding ``params[name]``."""
    layer = spec.layers[name]
    build = _BUILDERS.get(type(layer))
    if build is None:
        raise TypeError(
            f"layer {name!r} is a {type(layer).__name__}; the Flax zoo builds Dense, Conv2d, "
            "BatchNorm and LSTM layers only"
        )
    return build(layer, params[name], dtype)


def _nhwc(x, in_channels: int):
    return jnp.transpose(pure.as_nchw(x, in_channels), (0, 2, 3, 1))


def _global_mean(x):
    """Global average pooling of NHWC features, reduced in NCHW order: an eager mean over other
    axes sums in another order, and the logits (so the scores, so the masks) would differ from
    the `Model` zoo's in the last bit; under ``jit`` XLA gives both the same program."""
    return jnp.mean(jnp.transpose(x, (0, 3, 1, 2)), axis=(2, 3))


# ------------------------------------------------------------------------------------------ models
class ZooModule(nnx.Module):
    """Base of the Flax zoo's models: the hints `tedepr.backends.jax.nnx` reads.

    Attributes
    ----------
    layer_order : tuple of str
        The weight layers in the `Model` zoo's order (report rows, per-layer init keys).
    weight_inits : dict
        ``{layer name: init scheme}`` of the pure layers that drew the weights.
    tensorize_hints : dict
        As `Model.tensorize_hints`.
    input_shape : tuple
        One sample's shape, ``(C, H, W)``.
    zoo : dict or None
        ``{"name", "kwargs", "flax": True}`` when built by `get` (how `tedepr.load` rebuilds it).
    """

    def _start(self, spec: pure.Model, rngs, dtype):
        """The spec's params drawn from ``rngs`` (as ``spec.init``); the hints recorded."""
        self.layer_order = tuple(spec.layers)
        self.weight_inits = {
            n: layer.weight_init
            for n, layer in spec.layers.items()
            if isinstance(layer, (Dense, Conv2d))
        }
        self.tensorize_hints = {k: dict(v) for k, v in spec.tensorize_hints.items()}
        self.input_shape = spec.input_shape
        self.zoo = None
        return spec.init(_key(rngs), dtype)


class LeNet300_100(ZooModule):
    """MLP ``C·H·W → 300 → 100 → num_classes`` with ReLU (`tedepr.backends.jax.models.lenet300_100`):
    ``hidden`` an ``nnx.List`` of ``nnx.Linear``, ``classifier``."""

    def __init__(
        self,
        num_classes=10,
        in_channels=1,
        image_size=28,
        hidden=(300, 100),
        *,
        rngs=0,
        dtype=jnp.float32,
    ):
        spec = pure.lenet300_100(num_classes, in_channels, image_size, hidden)
        p = self._start(spec, rngs, dtype)
        depth = sum(1 for n in spec.layers if n.startswith("hidden/"))
        self.hidden = nnx.List([from_model(spec, p, f"hidden/{k}", dtype) for k in range(depth)])
        self.classifier = from_model(spec, p, "classifier", dtype)
        self.n_in = in_channels * image_size * image_size

    def __call__(self, x):
        x = jnp.reshape(x, (x.shape[0], -1))
        if x.shape[1] != self.n_in:
            raise ValueError(f"input must have {self.n_in} features per sample; got {x.shape[1]}")
        for layer in self.hidden:
            x = jax.nn.relu(layer(x))
        return self.classifier(x)


class LeNet5(ZooModule):
    """LeNet-5 with ReLU and max-pooling (`tedepr.backends.jax.models.lenet5`): ``conv1``,
    ``conv2`` (``nnx.Conv``), ``fc1``, ``fc2``, ``classifier`` (``nnx.Linear``)."""

    def __init__(self, num_classes=10, in_channels=1, image_size=28, *, rngs=0, dtype=jnp.float32):
        spec = pure.lenet5(num_classes, in_channels, image_size)
        p = self._start(spec, rngs, dtype)
        for name in spec.layers:
            setattr(self, name, from_model(spec, p, name, dtype))
        self.in_channels = in_channels

    def __call__(self, x):
        x = _nhwc(x, self.in_channels)
        x = pure.max_pool2d(jax.nn.relu(self.conv1(x)), channels_last=True)
        x = pure.max_pool2d(jax.nn.relu(self.conv2(x)), channels_last=True)
        # flattened in (C, H, W) order, as the Model and torch zoos (fc1's rows)
        x = jnp.reshape(jnp.transpose(x, (0, 3, 1, 2)), (x.shape[0], -1))
        x = jax.nn.relu(self.fc1(x))
        x = jax.nn.relu(self.fc2(x))
        return self.classifier(x)


class VGG(ZooModule):
    """CIFAR VGG (`tedepr.backends.jax.models.vgg`): ``features`` an ``nnx.List`` laid out as
    torch's ``nn.Sequential`` (``nnx.Conv``, ``nnx.BatchNorm``, ReLU, ..., 2×2 max-pools with
    ``ceil_mode``), global average pooling, ``classifier``."""

    def __init__(
        self,
        config="vgg16",
        num_classes=10,
        in_channels=3,
        image_size=32,
        batch_norm=True,
        *,
        rngs=0,
        dtype=jnp.float32,
    ):
        spec = pure.vgg(config, num_classes, in_channels, image_size, batch_norm)
        p = self._start(spec, rngs, dtype)
        pool = functools.partial(pure.max_pool2d, window=2, ceil_mode=True, channels_last=True)
        features: list = []
        for item in zoo.vgg_config(config):
            if item == "M":
                features.append(pool)
                continue
            features.append(from_model(spec, p, f"features/{len(features)}", dtype))
            if batch_norm:
                features.append(from_model(spec, p, f"features/{len(features)}", dtype))
            features.append(jax.nn.relu)
        self.features = nnx.List(features)
        self.classifier = from_model(spec, p, "classifier", dtype)
        self.in_channels = in_channels

    def __call__(self, x):
        x = _nhwc(x, self.in_channels)
        for f in self.features:
            x = f(x)
        return self.classifier(_global_mean(x))


class BasicBlock(nnx.Module):
    """A ResNet basic block: ``conv1``, ``bn1``, ``conv2``, ``bn2`` and, for a projection
    shortcut, ``projection`` (an ``nnx.List`` ``[nnx.Conv, nnx.BatchNorm]``); option A subsamples
    and zero-pads the new channels."""

    def __init__(self, spec: pure.Model, params, prefix: str, dtype=jnp.float32):
        for part in ("conv1", "bn1", "conv2", "bn2"):
            setattr(self, part, from_model(spec, params, f"{prefix}/{part}", dtype))
        c1 = spec.layers[f"{prefix}/conv1"]
        self.stride = c1.stride[0]
        self.pad = c1.out_channels - c1.in_channels
        self.identity = self.stride == 1 and self.pad == 0
        has_projection = f"{prefix}/projection/0" in spec.layers
        self.projection = (
            nnx.List([from_model(spec, params, f"{prefix}/projection/{k}", dtype) for k in (0, 1)])
            if has_projection
            else None
        )

    def __call__(self, x):
        out = jax.nn.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.identity:
            short = x
        elif self.projection is not None:
            short = self.projection[1](self.projection[0](x))
        else:  # option A (NHWC: channels last)
            s, pad = self.stride, self.pad
            short = jnp.pad(x[:, ::s, ::s, :], ((0, 0), (0, 0), (0, 0), (pad // 2, pad - pad // 2)))
        return jax.nn.relu(out + short)


class ResNet(ZooModule):
    """A CIFAR ResNet (`tedepr.backends.jax.models.cifar_resnet` / ``resnet18``): ``stem`` an
    ``nnx.List`` ``[nnx.Conv, nnx.BatchNorm]``, ``blocks`` an ``nnx.List`` of `BasicBlock`,
    global average pooling, ``classifier``. Build it with `cifar_resnet` or `resnet18`."""

    def __init__(self, spec: pure.Model, *, rngs=0, dtype=jnp.float32):
        if not isinstance(spec, pure.Model) or "stem/0" not in spec.layers:
            raise TypeError("spec must be a ResNet Model of tedepr.backends.jax.models")
        p = self._start(spec, rngs, dtype)
        self.stem = nnx.List([from_model(spec, p, f"stem/{k}", dtype) for k in (0, 1)])
        n_blocks = sum(1 for n in spec.layers if n.startswith("blocks/") and n.endswith("/conv1"))
        self.blocks = nnx.List([BasicBlock(spec, p, f"blocks/{k}", dtype) for k in range(n_blocks)])
        self.classifier = from_model(spec, p, "classifier", dtype)
        self.in_channels = spec.input_shape[0]

    def __call__(self, x):
        x = jax.nn.relu(self.stem[1](self.stem[0](_nhwc(x, self.in_channels))))
        for block in self.blocks:
            x = block(x)
        return self.classifier(_global_mean(x))


def layer_norm(layer: LayerNorm, params, dtype) -> nnx.LayerNorm:
    """The ``nnx.LayerNorm`` (last axis) of a pure `LayerNorm` (the two-pass variance, as the
    pure layer computes it)."""
    m = nnx.LayerNorm(
        layer.num_features,
        epsilon=layer.eps,
        use_fast_variance=False,
        param_dtype=dtype,
        rngs=_rngs(),
    )
    for k in ("scale", "bias"):
        getattr(m, k)[...] = jnp.asarray(params[k], dtype)
    return m


def encoder_layer(layer: _attn.TransformerEncoderLayer, params, dtype):
    """The NNX `tedepr.backends.jax.nnx.TransformerEncoderLayer` (batch first) holding a pure
    encoder layer's params (its ``self_attn`` an ``nnx.MultiHeadAttention``)."""
    if not layer.batch_first:
        raise ValueError("the Flax encoder layer is batch first: layer.batch_first must be True")
    m = tnnx.TransformerEncoderLayer(
        layer.d_model,
        layer.nhead,
        layer.dim_feedforward,
        layer.dropout,
        layer.activation,
        layer.layer_norm_eps,
        layer.norm_first,
        layer.bias,
        rngs=_rngs(),
        dtype=dtype,
    )
    tnnx._fill_encoder(m, jax.tree.map(lambda a: jnp.asarray(a, dtype), params))
    return m


class ViT(ZooModule):
    """A small ViT (`tedepr.backends.jax.models.vit`): ``patch_embed`` (``nnx.Linear`` on the
    flattened patches), ``cls_token`` and ``pos_embed`` (free ``nnx.Param`` s), ``layers`` an
    ``nnx.List`` of pre-norm GELU `tedepr.backends.jax.nnx.TransformerEncoderLayer` s (each an
    ``nnx.MultiHeadAttention``, two ``nnx.Linear``, two ``nnx.LayerNorm``), ``norm``
    (``nnx.LayerNorm``) and ``classifier`` on the class token."""

    def __init__(
        self,
        num_classes=10,
        in_channels=1,
        image_size=28,
        patch_size=None,
        dim=64,
        depth=2,
        heads=4,
        mlp_dim=128,
        dropout=0.0,
        *,
        rngs=0,
        dtype=jnp.float32,
    ):
        spec = pure.vit(
            num_classes, in_channels, image_size, patch_size, dim, depth, heads, mlp_dim, dropout
        )
        p = self._start(spec, rngs, dtype)
        self.patch_embed = from_model(spec, p, "patch_embed", dtype)
        self.cls_token = nnx.Param(jnp.asarray(p["cls_token"]["value"], dtype))
        self.pos_embed = nnx.Param(jnp.asarray(p["pos_embed"]["value"], dtype))
        self.layers = nnx.List(
            [
                encoder_layer(spec.layers[f"layers/{k}"], p[f"layers/{k}"], dtype)
                for k in range(depth)
            ]
        )
        self.norm = layer_norm(spec.layers["norm"], p["norm"], dtype)
        self.classifier = from_model(spec, p, "classifier", dtype)
        self.in_channels, self.image_size, self.dim = in_channels, image_size, dim
        self.patch_size = image_size // int(round((spec.layers["pos_embed"].shape[1] - 1) ** 0.5))

    def __call__(self, x):
        x = pure.as_nchw(x, self.in_channels)
        n, c, h, w = x.shape
        if h != self.image_size or w != self.image_size:
            raise ValueError(
                f"input images must be {self.image_size}×{self.image_size}; got {h}×{w}"
            )
        p = self.patch_size
        patches = jnp.reshape(x, (n, c, h // p, p, w // p, p))
        patches = jnp.reshape(jnp.transpose(patches, (0, 2, 4, 1, 3, 5)), (n, -1, c * p * p))
        cls = jnp.broadcast_to(self.cls_token[...], (n, 1, self.dim)).astype(patches.dtype)
        tokens = jnp.concatenate([cls, self.patch_embed(patches)], axis=1) + self.pos_embed[...]
        for layer in self.layers:
            tokens = layer(tokens)
        return self.classifier(self.norm(tokens[:, 0]))


class LSTMClassifier(ZooModule):
    """Sequential images (`tedepr.backends.jax.models.lstm_classifier`): each row is a time step
    of ``C·W`` features; ``lstm`` of ``hidden_size`` units (batch first), ``classifier`` an
    ``nnx.Linear`` on the top layer's last hidden state.

    ``num_layers`` (default 1) and ``dropout`` (default 0) are checked as in the other zoos
    (`tedepr.models.check_lstm`). One layer: ``lstm`` is an ``nnx.RNN(nnx.OptimizedLSTMCell)``.
    More: a `tedepr.backends.jax.nnx.StackedLSTM` (``lstm.layers`` an ``nnx.List`` of such
    ``nnx.RNN`` s, ``lstm.dropout`` an ``nnx.Dropout`` on every layer's outputs but the top one's,
    its stream from ``rngs``), which the bridge routes as the `Model` zoo's one stacked `LSTM`
    (``lstm/weight_ih_l0``, ``lstm/weight_ih_l1``, ...: torch's names). The dropout draws in
    training only, as torch's ``nn.LSTM(dropout=)``: ``model.eval()`` makes the model
    deterministic; under `compress`/`fit` the pipeline draws it as for the `Model`."""

    def __init__(
        self,
        num_classes=10,
        in_channels=1,
        image_size=28,
        hidden_size=128,
        num_layers=1,
        dropout=0.0,
        *,
        rngs=0,
        dtype=jnp.float32,
    ):
        spec = pure.lstm_classifier(
            num_classes, in_channels, image_size, hidden_size, num_layers, dropout
        )
        p = self._start(spec, rngs, dtype)
        if num_layers == 1:
            self.lstm = from_model(spec, p, "lstm", dtype)
        else:
            self.lstm = stacked_lstm(spec.layers["lstm"], p["lstm"], dtype, rngs)
        self.classifier = from_model(spec, p, "classifier", dtype)
        self.in_channels, self.num_layers = in_channels, num_layers

    def __call__(self, x):
        x = pure.as_nchw(x, self.in_channels)
        n, c, h, w = x.shape
        seq = jnp.reshape(jnp.transpose(x, (0, 2, 1, 3)), (n, h, c * w))
        if self.num_layers == 1:
            (_, h_n), _ = self.lstm(seq, return_carry=True)  # flax's LSTM carry is (c, h)
            return self.classifier(h_n)
        _, (h_n, _) = self.lstm(seq)  # StackedLSTM: torch's (h_n, c_n), (num_layers, N, H)
        return self.classifier(h_n[-1])


def lenet300_100(
    num_classes=10, in_channels=1, image_size=28, hidden=(300, 100), *, rngs=0, dtype=jnp.float32
) -> LeNet300_100:
    """`LeNet300_100`."""
    return LeNet300_100(num_classes, in_channels, image_size, hidden, rngs=rngs, dtype=dtype)


def lenet5(num_classes=10, in_channels=1, image_size=28, *, rngs=0, dtype=jnp.float32) -> LeNet5:
    """`LeNet5`."""
    return LeNet5(num_classes, in_channels, image_size, rngs=rngs, dtype=dtype)


def vgg(
    config="vgg16",
    num_classes=10,
    in_channels=3,
    image_size=32,
    batch_norm=True,
    *,
    rngs=0,
    dtype=jnp.float32,
) -> VGG:
    """`VGG`."""
    return VGG(config, num_classes, in_channels, image_size, batch_norm, rngs=rngs, dtype=dtype)


def cifar_resnet(
    depth=20,
    num_classes=10,
    in_channels=3,
    image_size=32,
    shortcut="A",
    *,
    rngs=0,
    dtype=jnp.float32,
) -> ResNet:
    """ResNet-(6n+2) for CIFAR as a `ResNet`."""
    spec = pure.cifar_resnet(depth, num_classes, in_channels, image_size, shortcut)
    return ResNet(spec, rngs=rngs, dtype=dtype)


def resnet18(num_classes=10, in_channels=3, image_size=32, *, rngs=0, dtype=jnp.float32) -> ResNet:
    """CIFAR ResNet-18 as a `ResNet`."""
    return ResNet(pure.resnet18(num_classes, in_channels, image_size), rngs=rngs, dtype=dtype)


#: `LSTMClassifier` itself: the zoo's builder takes the class's arguments as they are
lstm_classifier = LSTMClassifier


def vit(
    num_classes=10,
    in_channels=1,
    image_size=28,
    patch_size=None,
    dim=64,
    depth=2,
    heads=4,
    mlp_dim=128,
    dropout=0.0,
    *,
    rngs=0,
    dtype=jnp.float32,
) -> ViT:
    """`ViT`."""
    return ViT(
        num_classes,
        in_channels,
        image_size,
        patch_size,
        dim,
        depth,
        heads,
        mlp_dim,
        dropout,
        rngs=rngs,
        dtype=dtype,
    )


MODELS: dict[str, Callable[..., ZooModule]] = {
    name: build
    for name, build in zoo.zoo_table(
        lenet300_100, lenet5, vgg, cifar_resnet, resnet18, lstm_classifier, vit
    ).items()
    if name not in NOT_IN_FLAX
}


def _get(request: zoo.ZooRequest, *, rngs=0, dtype=jnp.float32) -> ZooModule:
    """
    rngs : int or nnx.Rngs
        The weights are those of the `Model` version's ``init(jax.random.key(rngs))`` (default 0).
    dtype : dtype
        The parameters' dtype (default float32).
    """
    if request.name in NOT_IN_FLAX:
        name = request.name
        raise ValueError(
            f"name {name!r} has no Flax version: {NOT_IN_FLAX[name]}; use "
            f"tedepr.backends.jax.get({name!r}, flax=False) (a Model); Flax names: "
            f"{', '.join(available())}"
        )
    build = functools.partial(_build, rngs=rngs, dtype=dtype)
    model, recipe = request.build({n: functools.partial(build, f) for n, f in MODELS.items()})
    model.zoo = {**recipe, "flax": True}
    return model


available, get = zoo.zoo_front(
    MODELS,
    _get,
    __name__,
    "ZooModule\n    The Flax NNX model (``nnx.Linear``/``nnx.Conv``/``nnx.BatchNorm``).",
    " in Flax NNX (the `Model` zoo's names)",
)


def _build(constructor, *args, rngs, dtype, **kw):
    return constructor(*args, rngs=rngs, dtype=dtype, **kw)
