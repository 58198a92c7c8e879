"""Models for JAX as named layers plus a pure forward function, and the model zoo (same names and
architectures as ``tedepr.backends.torch.models``).

A `Model` is ``layers`` (an ordered mapping ``name -> layer``; names use ``/`` where torch's module
names use ``.``, e.g. ``blocks/0/conv1``) and ``forward(call, x)``, a Python function that computes
the network by calling ``call(name, *inputs)`` for each layer. The parameters are a dict
``{layer name: layer params}``; masks mirror them (or are a flat dict ``{"layer/…/leaf": bool
array}``). Because the forward function refers to layers only by name,
`tedepr.backends.jax.tensorize` can swap a dense layer for a tensorized one without touching the
architecture code — and a user model built from this package's layers gets the same treatment.

The zoo's names, architectures and layer names are the torch zoo's (tabulated in `tedepr.models`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp

from ... import models as zoo
from ...pruning.problem import CoreInfo
from .attention import TransformerEncoderLayer
from .conv import Conv2d
from .layers import BatchNorm, Dense, LayerNorm, _check_dtype, draw
from .masking import normalize_masks
from .recurrent import LSTM

__all__ = [
    "Model",
    "Parameter",
    "MODELS",
    "get",
    "available",
    "max_pool2d",
    "as_nchw",
    "lenet300_100",
    "lenet5",
    "vgg",
    "cifar_resnet",
    "resnet18",
    "lstm_classifier",
    "vit",
]


# ------------------------------------------------------------------------------------------
# building blocks
@dataclass(frozen=True)
class Parameter:
    """A free parameter (ViT's class token, position embeddings): params ``{"value": array}``, never
    pruned. ``apply(params)`` returns the value. Init: normal with std ``std`` (zeros when 0)."""

    shape: tuple
    std: float = 0.02

    def init(self, key, dtype=jnp.float32) -> dict:
        dtype = _check_dtype(dtype)
        if self.std == 0:
            return {"value": jnp.zeros(self.shape, dtype)}
        return {"value": draw(key, "normal", [tuple(self.shape)], dtype, self.std)[0]}

    def apply(self, params, masks=None):
        return params["value"]

    def structure(self, prefix: str = "") -> dict[str, CoreInfo]:
        return {}


def max_pool2d(x, window: int = 2, ceil_mode: bool = False, *, channels_last: bool = False):
    """``F.max_pool2d(x, window)`` on NCHW (NHWC with ``channels_last``; stride = window);
    ``ceil_mode`` keeps a partial last window."""
    spatial = (1, 2) if channels_last else (2, 3)
    pads, dims = [(0, 0)] * 4, [1] * 4
    for axis in spatial:
        size, dims[axis] = x.shape[axis], window
        if ceil_mode:
            out = -(-(size - window) // window) + 1 if size >= window else 1
            pads[axis] = (0, max(0, (out - 1) * window + window - size))
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, tuple(dims), tuple(dims), pads)


def as_nchw(x, in_channels: int):
    """Images ``(N, C, H, W)``; ``(N, H, W)`` is accepted when ``in_channels == 1``."""
    if x.ndim == 3 and in_channels == 1:
        return x[:, None]
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(
            f"input must be (N, {in_channels}, H, W)"
            + (" or (N, H, W)" if in_channels == 1 else "")
            + f"; got shape {tuple(x.shape)}"
        )
    return x


# ------------------------------------------------------------------------------------------ Model
class _Context:
    """What ``forward`` gets as ``call``: applies layers by name, collects BatchNorm statistics."""

    def __init__(self, model, params, masks, train, key=None):
        self.model, self.params, self.masks, self.train = model, params, masks, train
        self.key = key
        self.stats: dict[str, dict] = {}
        self.used: set[str] = set()

    def __call__(self, name: str, *args, **kwargs):
        try:
            layer = self.model.layers[name]
        except KeyError:
            raise KeyError(
                f"forward called layer {name!r}, which the model does not have; layers: "
                f"{', '.join(self.model.layers)}"
            ) from None
        self.used.add(name)
        p = self.params[name]
        m = None if self.masks is None else self.masks.get(name)
        if isinstance(layer, Parameter):
            return layer.apply(p)
        if isinstance(layer, BatchNorm) and self.train:
            y, self.stats[name] = layer.apply_train(p, *args, m)
            return y
        if self.train and self.key is not None and getattr(layer, "stochastic", False):
            # a layer with dropout gets train=True and its own key (by its position)
            index = list(self.model.layers).index(name)
            rng = getattr(layer, "rng_argument", "key")  # attention: dropout_key (key is an input)
            kwargs = {"train": True, rng: jax.random.fold_in(self.key, index), **kwargs}
        return layer.apply(p, *args, masks=m, **kwargs)


class Model:
    """A network: named layers, a forward function and the shape of one input sample.

    Parameters
    ----------
    layers : mapping ``name -> layer`` (any object of this package with
    ``init``/``apply``/``structure``) forward : callable ``(call, x) -> logits``
        ``call(name, *inputs)`` applies the named layer (a `Parameter` takes no input).
    input_shape : tuple
        Shape of one sample (e.g. ``(1, 28, 28)``): the all-ones SynFlow input and
        `Model.dummy_input`.
    name : str
    """

    def __init__(
        self, layers: Mapping[str, Any], forward: Callable, input_shape, name: str = "model"
    ):
        if not layers:
            raise ValueError("layers must hold at least one layer")
        for n, layer in layers.items():
            if not isinstance(n, str) or not n or n.startswith("/") or n.endswith("/"):
                raise ValueError(
                    f"layer names must be non-empty strings without leading/trailing '/'; got {n!r}"
                )
            if not (hasattr(layer, "init") and hasattr(layer, "apply")):
                raise TypeError(
                    f"layer {n!r} must have init/apply (a tedepr.backends.jax layer); "
                    f"got {type(layer).__name__}"
                )
        if not callable(forward):
            raise TypeError(
                f"forward must be a callable (call, x) -> output; got {type(forward).__name__}"
            )
        self.layers = MappingProxyType(dict(layers))
        self.forward = forward
        self.input_shape = tuple(int(s) for s in input_shape)
        self.name = name
        #: ``{"name", "kwargs"}`` when built by `get` (how `tedepr.save` rebuilds the architecture)
        self.zoo = None
        #: per-layer defaults for `tensorize` (`tedepr.tensorizing.LayerChooser`), e.g. a flattened
        #: image's ``in_shape``
        self.tensorize_hints: dict = {}
        # one jitted init per model: repeated init calls reuse its compilation
        self._jit_init = jax.jit(self._init, static_argnums=1)

    def replace(self, **layers) -> Model:
        """A new model with some layers replaced (by name); the forward function is shared."""
        return self.with_layers({**self.layers, **layers})

    def with_layers(self, layers: Mapping[str, Any]) -> Model:
        missing = set(self.layers) - set(layers)
        if missing:
            raise ValueError(
                f"layers must keep every layer name of the model; missing {sorted(missing)}"
            )
        new = Model(layers, self.forward, self.input_shape, self.name)
        new.zoo = self.zoo
        new.tensorize_hints = self.tensorize_hints
        return new

    # -- protocol
    def init(self, key, dtype=jnp.float32) -> dict:
        """Parameters ``{layer name: layer params}``; each layer gets its own key (by position).

        Jitted as one program (a single compilation instead of one per random draw's shape).
        """
        return self._jit_init(key, _check_dtype(dtype))

    def _init(self, key, dtype):
        keys = jax.random.split(key, len(self.layers))
        return {
            n: layer.init(k, dtype) for (n, layer), k in zip(self.layers.items(), keys, strict=True)
        }

    def _run(self, params, x, masks, train, key=None):
        masks = normalize_masks(params, masks)
        ctx = _Context(self, params, masks, train, key)
        out = self.forward(ctx, x)
        return out, ctx.stats

    def apply(self, params, x, masks=None, train: bool = False, key=None):
        """Logits for the batch ``x``. ``train=True`` normalises with batch statistics (BatchNorm);
        with a PRNG ``key`` too, layers with dropout (stacked `LSTM`/`GRU` layers) drop. Use
        `apply_train` to also get the updated running statistics."""
        return self._run(params, x, masks, train, key)[0]

    def apply_train(self, params, x, masks=None, key=None):
        """``(logits, stats)``: a training-mode forward and ``{bn layer name: {"mean", "var"}}``,
        the running statistics after this batch (``key``: as `apply`)."""
        return self._run(params, x, masks, True, key)

    def structure(self) -> dict[str, CoreInfo]:
        """`CoreInfo` of every prunable array, keyed by its ``/``-joined path in the params."""
        out = {}
        for n, layer in self.layers.items():
            out.update(layer.structure(f"{n}/"))
        return out

    def output_width(self, params, sample_shape=None, dtype=jnp.float32) -> int | None:
        """The last axis of the logits (the number of classes), from an abstract forward pass of
        one sample (`jax.eval_shape`: traced, not computed); None for an output without one."""
        shape = self.input_shape if sample_shape is None else tuple(sample_shape)
        x = jax.ShapeDtypeStruct((1,) + shape, dtype)
        out = jax.eval_shape(lambda p, v: self.apply(p, v, train=False), params, x)
        return int(out.shape[-1]) if len(out.shape) >= 2 else None

    def dummy_input(self, batch: int = 1, dtype=jnp.float32):
        return jnp.ones((batch,) + self.input_shape, dtype)

    @property
    def tensorized_layers(self) -> dict[str, Any]:
        """The layers holding tensor networks."""
        return {
            n: layer
            for n, layer in self.layers.items()
            if any(info.format != "dense" for info in layer.structure(f"{n}/").values())
        }

    def dense_weight_count(self) -> int:
        """Weights counted as SPEC §5 says: every prunable weight, tensorized layers at their
        dense size."""
        return sum(
            getattr(layer, "dense_weights", getattr(layer, "num_weights", 0))
            for layer in self.layers.values()
        )

    def __repr__(self) -> str:
        lines = [f"Model({self.name!r}, input_shape={self.input_shape}, {len(self.layers)} layers:"]
        for n, layer in self.layers.items():
            lines.append(f"  {n}: {layer!r}")
        return "\n".join(lines) + ")"


# ------------------------------------------------------------------------------------------ zoo
def lenet300_100(num_classes=10, in_channels=1, image_size=28, hidden=(300, 100)) -> Model:
    """MLP ``C·H·W → 300 → 100 → num_classes`` with ReLU on the flattened image."""
    n_in = in_channels * image_size * image_size
    hidden = zoo.check_widths(hidden, "hidden")
    widths = (n_in, *hidden)
    layers = {
        f"hidden/{k}": Dense(a, b)
        for k, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True))
    }
    layers["classifier"] = Dense(widths[-1], num_classes)
    depth = len(hidden)

    def forward(call, x):
        x = jnp.reshape(x, (x.shape[0], -1))
        if x.shape[1] != n_in:
            raise ValueError(f"input must have {n_in} features per sample; got {x.shape[1]}")
        for k in range(depth):
            x = jax.nn.relu(call(f"hidden/{k}", x))
        return call("classifier", x)

    model = Model(layers, forward, (in_channels, image_size, image_size), "lenet300_100")
    # the first layer reads a flattened image: `tensorize` keeps its modes inside the axes
    model.tensorize_hints = zoo.mlp_hints("hidden/0", in_channels, image_size)
    return model


def lenet5(num_classes=10, in_channels=1, image_size=28) -> Model:
    """LeNet-5 with ReLU and max-pooling; 28×28 inputs are zero-padded by 2 by the first conv."""
    padding = 2 if image_size < 32 else 0
    side = ((image_size + 2 * padding - 4) // 2 - 4) // 2
    if side < 1:
        raise ValueError(f"image_size must be at least 16 for LeNet-5; got {image_size}")
    layers = {
        "conv1": Conv2d(in_channels, 6, 5, padding=padding),
        "conv2": Conv2d(6, 16, 5),
        "fc1": Dense(16 * side * side, 120),
        "fc2": Dense(120, 84),
        "classifier": Dense(84, num_classes),
    }

    def forward(call, x):
        x = as_nchw(x, in_channels)
        x = max_pool2d(jax.nn.relu(call("conv1", x)))
        x = max_pool2d(jax.nn.relu(call("conv2", x)))
        x = jax.nn.relu(call("fc1", jnp.reshape(x, (x.shape[0], -1))))
        x = jax.nn.relu(call("fc2", x))
        return call("classifier", x)

    return Model(layers, forward, (in_channels, image_size, image_size), "lenet5")


def vgg(config="vgg16", num_classes=10, in_channels=3, image_size=32, batch_norm=True) -> Model:
    """CIFAR VGG; layer names ``features/<i>`` follow torch's ``nn.Sequential`` indices."""
    name = config if isinstance(config, str) else "vgg"
    config = zoo.vgg_config(config)
    layers: dict[str, Any] = {}
    plan = []  # ("conv", idx, bn idx or None) | ("pool",)
    channels, idx = in_channels, 0
    for item in config:
        if item == "M":
            plan.append(("pool",))
            idx += 1
            continue
        layers[f"features/{idx}"] = Conv2d(channels, item, 3, padding=1, bias=not batch_norm)
        bn = None
        if batch_norm:
            bn = f"features/{idx + 1}"
            layers[bn] = BatchNorm(item)
        plan.append(("conv", f"features/{idx}", bn))
        idx += 3 if batch_norm else 2
        channels = item
    layers["classifier"] = Dense(channels, num_classes)

    def forward(call, x):
        x = as_nchw(x, in_channels)
        for step in plan:
            if step[0] == "pool":
                x = max_pool2d(x, 2, ceil_mode=True)
                continue
            x = call(step[1], x)
            if step[2] is not None:
                x = call(step[2], x)
            x = jax.nn.relu(x)
        return call("classifier", jnp.mean(x, axis=(2, 3)))

    return Model(layers, forward, (in_channels, image_size, image_size), name)


def _basic_block(layers, prefix, in_planes, planes, stride, shortcut):
    """Add a basic block's layers; returns its forward ``(call, x) -> y``."""
    layers[f"{prefix}/conv1"] = Conv2d(
        in_planes, planes, 3, stride=stride, padding=1, bias=False, weight_init="he_fan_out"
    )
    layers[f"{prefix}/bn1"] = BatchNorm(planes)
    layers[f"{prefix}/conv2"] = Conv2d(
        planes, planes, 3, padding=1, bias=False, weight_init="he_fan_out"
    )
    layers[f"{prefix}/bn2"] = BatchNorm(planes)
    identity = stride == 1 and in_planes == planes
    projection = not identity and shortcut == "B"
    if projection:
        layers[f"{prefix}/projection/0"] = Conv2d(
            in_planes, planes, 1, stride=stride, bias=False, weight_init="he_fan_out"
        )
        layers[f"{prefix}/projection/1"] = BatchNorm(planes)
    pad = planes - in_planes

    def block(call, x):
        out = jax.nn.relu(call(f"{prefix}/bn1", call(f"{prefix}/conv1", x)))
        out = call(f"{prefix}/bn2", call(f"{prefix}/conv2", out))
        if identity:
            short = x
        elif projection:
            short = call(f"{prefix}/projection/1", call(f"{prefix}/projection/0", x))
        else:  # option A: subsample and zero-pad the new channels
            short = x[:, :, ::stride, ::stride]
            short = jnp.pad(short, ((0, 0), (pad // 2, pad - pad // 2), (0, 0), (0, 0)))
        return jax.nn.relu(out + short)

    return block


def _resnet(
    stem_width, stages, blocks_per_stage, shortcut, num_classes, in_channels, image_size, name
):
    layers: dict[str, Any] = {
        "stem/0": Conv2d(
            in_channels, stem_width, 3, padding=1, bias=False, weight_init="he_fan_out"
        ),
        "stem/1": BatchNorm(stem_width),
    }
    blocks = [
        _basic_block(layers, f"blocks/{k}", in_planes, planes, stride, shortcut)
        for k, (in_planes, planes, stride) in enumerate(
            zoo.resnet_blocks(stem_width, stages, blocks_per_stage)
        )
    ]
    layers["classifier"] = Dense(stages[-1], num_classes)

    def forward(call, x):
        x = jax.nn.relu(call("stem/1", call("stem/0", as_nchw(x, in_channels))))
        for block in blocks:
            x = block(call, x)
        return call("classifier", jnp.mean(x, axis=(2, 3)))

    return Model(layers, forward, (in_channels, image_size, image_size), name)


def cifar_resnet(depth=20, num_classes=10, in_channels=3, image_size=32, shortcut="A") -> Model:
    """ResNet-(6n+2) for CIFAR (He et al. 2016 §4.2); layer names as torch's ``CifarResNet``."""
    return _resnet(
        16,
        (16, 32, 64),
        zoo.check_resnet(depth, shortcut),
        shortcut,
        num_classes,
        in_channels,
        image_size,
        f"resnet{depth}",
    )


def resnet18(num_classes=10, in_channels=3, image_size=32) -> Model:
    """CIFAR ResNet-18: 3×3 stem, no max-pool, 4 stages × 2 blocks, projection shortcuts."""
    return _resnet(
        64, (64, 128, 256, 512), 2, "B", num_classes, in_channels, image_size, "resnet18"
    )


def lstm_classifier(
    num_classes=10, in_channels=1, image_size=28, hidden_size=128, num_layers=1, dropout=0.0
) -> Model:
    """Sequential images: each row is a time step of ``C·W`` features; ``num_layers`` stacked LSTM
    layers in one `LSTM` (``lstm/weight_ih_l0``, ``_l1``, ...: torch's names) with ``dropout``
    between them (training only); Linear on the top layer's last hidden state, as the torch zoo."""
    dropout = zoo.check_lstm(hidden_size, num_layers, dropout)
    input_size = in_channels * image_size
    layers = {
        "lstm": LSTM(input_size, hidden_size, num_layers, batch_first=True, dropout=dropout),
        "classifier": Dense(hidden_size, num_classes),
    }

    def forward(call, x):
        x = as_nchw(x, in_channels)
        n, c, h, w = x.shape
        seq = jnp.reshape(jnp.transpose(x, (0, 2, 1, 3)), (n, h, c * w))
        _, (h_n, _) = call("lstm", seq)
        return call("classifier", h_n if num_layers == 1 else h_n[-1])

    return Model(layers, forward, (in_channels, image_size, image_size), "lstm")


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
) -> Model:
    """A small ViT: flattened patches → Linear(dim), class token, position embeddings, ``depth``
    pre-norm GELU encoder layers, LayerNorm, Linear on the class token. ``patch_size`` defaults to
    ``image_size // 4`` (4×4 = 16 tokens: 7 on 28×28), and ``dropout`` in every encoder layer
    (training only), as the torch zoo."""
    patch_size = zoo.check_vit(image_size, patch_size, dim, depth, heads, mlp_dim)
    num_patches = (image_size // patch_size) ** 2
    p = patch_size
    layers: dict[str, Any] = {
        "patch_embed": Dense(in_channels * p * p, dim),
        "cls_token": Parameter((1, 1, dim)),
        "pos_embed": Parameter((1, num_patches + 1, dim)),
    }
    for k in range(depth):
        layers[f"layers/{k}"] = TransformerEncoderLayer(
            dim, heads, mlp_dim, dropout, activation="gelu", batch_first=True, norm_first=True
        )
    layers["norm"] = LayerNorm(dim)
    layers["classifier"] = Dense(dim, num_classes)

    def forward(call, x):
        x = as_nchw(x, in_channels)
        n, c, h, w = x.shape
        if h != image_size or w != image_size:
            raise ValueError(f"input images must be {image_size}×{image_size}; got {h}×{w}")
        patches = jnp.reshape(x, (n, c, h // p, p, w // p, p))
        patches = jnp.reshape(jnp.transpose(patches, (0, 2, 4, 1, 3, 5)), (n, -1, c * p * p))
        cls = jnp.broadcast_to(call("cls_token"), (n, 1, dim)).astype(patches.dtype)
        tokens = jnp.concatenate([cls, call("patch_embed", patches)], axis=1) + call("pos_embed")
        for k in range(depth):
            tokens = call(f"layers/{k}", tokens)
        return call("classifier", call("norm", tokens[:, 0]))

    return Model(layers, forward, (in_channels, image_size, image_size), "vit")


MODELS: dict[str, Callable[..., Model]] = zoo.zoo_table(
    lenet300_100, lenet5, vgg, cifar_resnet, resnet18, lstm_classifier, vit
)


def _build(request: zoo.ZooRequest, *, flax: bool = True, rngs=None, dtype=None):
    """
    flax : bool
        True (the default): the Flax NNX model (`tedepr.backends.jax.flax_zoo.get`:
        ``nnx.Linear``/``nnx.Conv``/``nnx.BatchNorm`` modules holding the weights of the `Model`
        version's ``init(jax.random.key(rngs))``), docs/jax.md. False: the pure init/apply
        `Model` (``model.init(key)`` gives its parameters), for users who want functions.
    rngs : int or nnx.Rngs, optional
        Flax only: the weights' seed (default 0). The `Model` takes none: its ``init(key)`` does.
    dtype : dtype, optional
        Flax only: the parameters' dtype (default float32); ``model.init(key, dtype)`` for the
        `Model`.
    """
    if not isinstance(flax, bool):
        raise TypeError(f"flax must be a bool; got {type(flax).__name__}")
    r = request
    if "seed" in r.options:
        raise TypeError(
            "seed is the torch zoo's keyword; the JAX zoo's Flax model (the default) takes "
            "rngs= (an int or nnx.Rngs), and the flax=False Model takes none: model.init(key)"
        )
    if flax:
        from . import flax_zoo  # imports flax

        seeding = {"rngs": 0 if rngs is None else rngs}
        if dtype is not None:
            seeding["dtype"] = dtype
        return flax_zoo.get(
            r.name, r.num_classes, r.in_channels, r.image_size, **seeding, **r.options
        )
    for key, value in (("rngs", rngs), ("dtype", dtype)):
        if value is not None:
            raise TypeError(
                f"{key} applies to the Flax model (flax=True, the default); the flax=False "
                f"Model takes its key and dtype in model.init(key, dtype)"
            )
    model, model.zoo = request.build(MODELS)
    return model


available, get = zoo.zoo_front(
    MODELS,
    _build,
    __name__,
    "ZooModule or Model\n    The Flax NNX model (`tedepr.backends.jax.flax_zoo.ZooModule`); with "
    "``flax=False`` the\n    `Model`, whose ``model.init(key)`` gives its parameters.",
)
