"""The model zoo by name, for either backend: ``tedepr.models.get("lenet5", backend="torch")``.

This front imports nothing heavy: the backend's ``models`` module (and with it torch or jax) is
imported on the first call that names it. Each backend module provides

- ``MODELS``: a mapping from model name to its constructor;
- ``get(name, num_classes=10, in_channels=1, image_size=28, **kw)``: build one model (an
  ``nn.Module`` for torch; for jax a Flax NNX module, or with ``flax=False`` the pure
  init/apply `Model`).

Both zoos have the same models, architectures and layer names (torch's module names; the JAX
`Model` writes ``/`` for ``.``). Every model takes images ``(N, C, H, W)``; single-channel models
also accept ``(N, H, W)``. Every model returns logits ``(N, num_classes)``.

=================  ==========================================================================
name               architecture
=================  ==========================================================================
``lenet300_100``   MLP 784–300–100–10 with ReLU on the flattened image (LeCun et al. 1998)
``lenet5``         conv5×5(6)–pool–conv5×5(16)–pool–120–84–classes, ReLU, max-pooling; 28×28
                   inputs are zero-padded by 2 as in the original 32×32 design
``vgg16/19``       CIFAR VGG: 3×3 conv + BatchNorm + ReLU stacks (Simonyan & Zisserman
                   2015 configurations D/E), ceil-mode max-pools, global average pool, then
                   one Linear(512, classes)
``resnet20/32/56`` CIFAR ResNet of He et al. 2016 §4.2: 3 stages × n basic blocks (n = 3/5/9),
                   16/32/64 channels; shortcut option "A" (default) or "B"
``resnet18``       CIFAR ResNet-18: 3×3 stem, no max-pool, 4 stages × 2 basic blocks,
                   64–512 channels, 1×1 conv projection shortcuts
``lstm``           sequential MNIST: image rows are time steps (28 steps of 28 features),
                   an LSTM of 128 units (``num_layers`` stacked, default 1, with ``dropout``
                   between them), Linear on the top layer's last hidden state
``vit``            ViT: 7×7 patches (16 tokens on 28×28; side/4 in general) + class token,
                   dim 64, depth 2, 4 heads, pre-norm encoder layers (each holding a
                   multi-head attention), GELU MLP width 128
=================  ==========================================================================

The rules of the zoo's arguments, the registry of names and every zoo's ``available``/``get``
are written here once (`check_resnet`, `check_vit`, `check_lstm`, `zoo_table`, `build_zoo_model`,
`zoo_front`); the backends build the layers.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from .validation import check_dropout, check_int

#: VGG layer tables (CIFAR variant, Simonyan & Zisserman 2015): channels per conv, "M" = 2x2 max-pool.
#: Shared by both backends' zoos.
# fmt: off
VGG_CONFIGS = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"),
}
# fmt: on

__all__ = ["BACKENDS", "get", "available"]

BACKENDS = ("torch", "jax")

# The framework each backend needs, to tell a missing framework from a bug inside the backend.
_FRAMEWORK = {"torch": "torch", "jax": "jax"}


def _backend_models(backend: str) -> ModuleType:
    if backend not in BACKENDS:
        raise ValueError(
            f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}"
        )
    try:
        return importlib.import_module(f"tedepr.backends.{backend}.models")
    except ModuleNotFoundError as exc:
        framework = _FRAMEWORK[backend]
        if exc.name == framework or (exc.name or "").startswith(framework + "."):
            raise ImportError(
                f"backend={backend!r} needs {framework}, which is not installed: "
                f"pip install 'tedepr[{backend}]'"
            ) from exc
        raise


def available(backend: str = "torch") -> tuple[str, ...]:
    """The model names that ``backend`` provides, sorted."""
    return tuple(sorted(_backend_models(backend).MODELS))


def get(name: str, backend: str = "torch", **kw: Any) -> Any:
    """Build the zoo model ``name`` with ``backend``'s implementation.

    Parameters
    ----------
    name : str
        One of `available(backend)`, e.g. ``"lenet300_100"``, ``"lenet5"``, ``"vgg16"``,
        ``"resnet20"``, ``"resnet18"``, ``"lstm"``, ``"vit"``.
    backend : ``"torch"`` or ``"jax"``
        ``"torch"`` gives an ``nn.Module`` (keyword ``seed``); ``"jax"`` a Flax NNX module
        (keywords ``rngs``, ``dtype``), or with ``flax=False`` the pure init/apply `Model`.
    **kw
        Passed to the backend's ``get``: ``num_classes``, ``in_channels``, ``image_size`` and
        model-specific options.
    """
    return _backend_models(backend).get(name, **kw)


# ---------------------------------------------------------------------------- shared zoo rules
def mlp_hints(first: str, in_channels: int, image_size: int) -> dict[str, dict]:
    """`tensorize` hints of an MLP on flattened ``(C, H, W)`` images: the first layer ``first``
    reads a row-major ``(in_channels, image_size, image_size)`` array, so its tensor modes are
    kept inside the image axes (`tedepr.shapes.axis_modes`; docs/method.md §4)."""
    return {first: {"in_shape": (in_channels, image_size, image_size)}}


def check_widths(value: Any, name: str) -> tuple[int, ...]:
    """A sequence of layer widths (ints >= 1)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be a sequence of ints >= 1; got {type(value).__name__}")
    return tuple(check_int(w, f"{name}[{k}]") for k, w in enumerate(value))


def vgg_config(config: Any) -> tuple:
    """A VGG layer table: a name of `VGG_CONFIGS` or the table itself."""
    if isinstance(config, str):
        if config not in VGG_CONFIGS:
            raise ValueError(
                f"config must be one of {', '.join(map(repr, VGG_CONFIGS))}; got {config!r}"
            )
        return VGG_CONFIGS[config]
    return tuple(config)


def check_resnet(depth: Any, shortcut: Any) -> int:
    """The blocks per stage ``n`` of a CIFAR ResNet-(6n+2), after checking ``shortcut``."""
    check_int(depth, "depth")
    if (depth - 2) % 6 != 0 or depth < 8:
        raise ValueError(f"depth must be 6n+2 with n >= 1 (20, 32, 56, ...); got {depth}")
    if shortcut not in ("A", "B"):
        raise ValueError(
            "shortcut must be 'A' (zero-padding identity) or 'B' (1x1 projection); "
            f"got {shortcut!r}"
        )
    return (depth - 2) // 6


def resnet_blocks(
    stem_width: int, stages: tuple[int, ...], blocks_per_stage: int
) -> Iterator[tuple[int, int, int]]:
    """``(in_planes, planes, stride)`` of every basic block, in order: ``blocks_per_stage``
    blocks per stage, stride 2 at the first block of every stage but the first."""
    in_planes = stem_width
    for stage, planes in enumerate(stages):
        for i in range(blocks_per_stage):
            yield in_planes, planes, 2 if stage > 0 and i == 0 else 1
            in_planes = planes


def check_vit(
    image_size: int, patch_size: Any, dim: Any, depth: Any, heads: Any, mlp_dim: Any
) -> int:
    """The ViT's patch size (default ``image_size // 4``: 4×4 = 16 tokens, 7 on 28×28, 8 on
    32×32) after checking the ViT's sizes."""
    for value, arg in ((dim, "dim"), (depth, "depth"), (heads, "heads"), (mlp_dim, "mlp_dim")):
        check_int(value, arg)
    if patch_size is None:
        patch_size = max(1, image_size // 4)
    check_int(patch_size, "patch_size")
    if image_size % patch_size != 0:
        raise ValueError(
            f"patch_size must divide image_size; got patch_size={patch_size}, "
            f"image_size={image_size}"
        )
    if dim % heads != 0:
        raise ValueError(f"heads must divide dim; got heads={heads}, dim={dim}")
    return patch_size


def check_lstm(hidden_size: Any, num_layers: Any, dropout: Any) -> float:
    """The ``lstm`` zoo model's dropout probability (on the outputs of every LSTM layer but the
    top one, training only, as ``nn.LSTM``'s; no effect with one layer) as a float in [0, 1],
    after checking ``hidden_size`` and ``num_layers`` (ints >= 1)."""
    check_int(hidden_size, "hidden_size")
    check_int(num_layers, "num_layers")
    return check_dropout(dropout, "dropout")


def _variant(build: Callable[..., Any], first: Any) -> Callable[..., Any]:
    def make(num_classes=10, in_channels=1, image_size=28, **kw):
        return build(
            first, num_classes=num_classes, in_channels=in_channels, image_size=image_size, **kw
        )

    return make


def zoo_table(
    lenet300_100: Callable[..., Any],
    lenet5: Callable[..., Any],
    vgg: Callable[..., Any],
    cifar_resnet: Callable[..., Any],
    resnet18: Callable[..., Any],
    lstm: Callable[..., Any],
    vit: Callable[..., Any],
    /,
) -> dict[str, Callable[..., Any]]:
    """A backend's ``MODELS``: the zoo's names mapped to its constructors, given in this order
    (``vgg(config, ...)`` and ``cifar_resnet(depth, ...)`` serve the VGG and ResNet variants)."""
    return {
        "lenet300_100": lenet300_100,
        "lenet5": lenet5,
        **{name: _variant(vgg, name) for name in VGG_CONFIGS},
        **{f"resnet{d}": _variant(cifar_resnet, d) for d in (20, 32, 56)},
        "resnet18": resnet18,
        "lstm": lstm,
        "vit": vit,
    }


def build_zoo_model(
    models: Mapping[str, Callable[..., Any]],
    name: Any,
    num_classes: Any,
    in_channels: Any,
    image_size: Any,
    kw: dict[str, Any],
) -> tuple[Any, dict[str, Any]]:
    """``(model, recipe)``: ``models[name]`` built after checking the arguments, and the recipe
    `tedepr.save` records so that `tedepr.load` can rebuild the architecture."""
    if name not in models:
        names = ", ".join(map(repr, sorted(models)))
        raise ValueError(f"name must be one of {names}; got {name!r}")
    check_int(num_classes, "num_classes")
    check_int(in_channels, "in_channels")
    check_int(image_size, "image_size")
    model = models[name](
        num_classes=num_classes, in_channels=in_channels, image_size=image_size, **kw
    )
    recipe = {
        "name": name,
        "kwargs": {
            "num_classes": num_classes,
            "in_channels": in_channels,
            "image_size": image_size,
            **kw,
        },
    }
    return model, recipe


# ---------------------------------------------------------------------------- one zoo front
@dataclass(frozen=True)
class ZooRequest:
    """One ``get`` call of a zoo: the model's name, its data sizes and its options (``**kw``)."""

    name: Any
    num_classes: Any
    in_channels: Any
    image_size: Any
    options: dict[str, Any] = field(default_factory=dict)

    def build(self, models: Mapping[str, Callable[..., Any]]) -> tuple[Any, dict[str, Any]]:
        """``(model, recipe)`` from the table ``models`` (`build_zoo_model`: the arguments
        checked, the name among ``models``)."""
        return build_zoo_model(
            models, self.name, self.num_classes, self.in_channels, self.image_size, self.options
        )


_GET_DOC = """Build the zoo model ``name``{what}.

Parameters
----------
name : str
    One of `available()`.
num_classes, in_channels, image_size : int >= 1
    The data's classes, channels and (square) side in pixels.
{keywords}**kw
    Model-specific options (e.g. ``shortcut="B"`` for the CIFAR ResNets, ``hidden`` for
    ``lenet300_100``, ``hidden_size``/``num_layers``/``dropout`` for ``lstm``,
    ``dim``/``depth``/``heads``/``patch_size``/``mlp_dim``/``dropout`` for ``vit``, ``batch_norm``
    for VGG).

Returns
-------
{returns}
"""


def zoo_front(
    models: Mapping[str, Callable[..., Any]],
    build: Callable[..., Any],
    module: str,
    returns: str,
    what: str = "",
) -> tuple[Callable[[], tuple[str, ...]], Callable[..., Any]]:
    """A backend's zoo entry points ``(available, get)``, written once for every zoo.

    ``available()`` lists ``models``' names, sorted. ``get(name, num_classes=10, in_channels=1,
    image_size=28, *, <keywords>, **kw)`` binds its arguments (a ``TypeError`` naming a wrong one,
    as a plain function) and returns ``build(ZooRequest(...), **keywords)``: ``build`` is the
    backend's own work around `ZooRequest.build` (seeding, recording the recipe), and its
    keyword-only parameters (torch ``seed``; JAX ``flax``, ``rngs``, ``dtype``; Flax
    ``rngs``/``dtype``) become ``get``'s, with their defaults; ``build``'s docstring documents
    them (numpydoc parameter entries, placed in ``get``'s). ``returns`` documents the result, ``what`` adds to the first
    lines."""
    kind = inspect.Parameter
    keywords = {
        p.name: p.default
        for p in inspect.signature(build).parameters.values()
        if p.kind is kind.KEYWORD_ONLY
    }
    parameters = [
        kind("name", kind.POSITIONAL_OR_KEYWORD),
        kind("num_classes", kind.POSITIONAL_OR_KEYWORD, default=10),
        kind("in_channels", kind.POSITIONAL_OR_KEYWORD, default=1),
        kind("image_size", kind.POSITIONAL_OR_KEYWORD, default=28),
        *(kind(k, kind.KEYWORD_ONLY, default=d) for k, d in keywords.items()),
        kind("kw", kind.VAR_KEYWORD),
    ]
    signature = inspect.Signature(parameters)

    def available() -> tuple[str, ...]:
        return tuple(sorted(models))

    def get(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        options = arguments.pop("kw")
        framework = {k: arguments.pop(k) for k in keywords}
        return build(ZooRequest(**arguments, options=options), **framework)

    available.__doc__ = f"The model names `get` builds{what}, sorted."
    get.__doc__ = _GET_DOC.format(
        what=what,
        keywords=inspect.cleandoc(build.__doc__ or "") + "\n" if keywords else "",
        returns=returns,
    )
    get.__signature__ = signature
    for entry in (available, get):
        entry.__module__ = module
        entry.__qualname__ = entry.__name__
    return available, get
