"""The PyTorch model zoo of the paper's experiments, for MNIST (28×28) and CIFAR (32×32) inputs.

Every model takes images ``(N, C, H, W)``; single-channel models also accept ``(N, H, W)``. Every
model returns logits ``(N, num_classes)``. Build them by name with `get`.

=================  ==========================================================================
name               architecture
=================  ==========================================================================
``lenet300_100``   MLP 784–300–100–10 with ReLU on the flattened image (LeCun et al. 1998)
``lenet5``         conv5×5(6)–pool–conv5×5(16)–pool–120–84–classes, ReLU, max-pooling; 28×28
                   inputs are zero-padded by 2 as in the original 32×32 design
``vgg16/19``       CIFAR VGG: 3×3 conv + BatchNorm + ReLU stacks (Simonyan & Zisserman
                   2015 configurations D/E), then one Linear(512, classes)
``resnet20/32/56`` CIFAR ResNet of He et al. 2016 §4.2: 3 stages × n basic blocks (n = 3/5/9),
                   16/32/64 channels; shortcut option "A" (default) or "B"
``resnet18``       CIFAR ResNet-18: 3×3 stem, no max-pool, 4 stages × 2 basic blocks,
                   64–512 channels, 1×1 conv projection shortcuts
``lstm``           sequential MNIST: image rows are time steps (28 steps of 28 features),
                   one LSTM layer of 128 units, Linear on the last hidden state
``vit``            ViT: 7×7 patches (16 tokens on 28×28; side/4 in general) + class token,
                   dim 64, depth 2, 4 heads, pre-norm `nn.TransformerEncoderLayer`s (each
                   holding an `nn.MultiheadAttention`), MLP width 128
=================  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ...models import VGG_CONFIGS

__all__ = [
    "MODELS",
    "get",
    "available",
    "LeNet300_100",
    "LeNet5",
    "VGG",
    "CifarResNet",
    "ResNet18",
    "BasicBlock",
    "LSTMClassifier",
    "ViT",
]


def _check_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}; got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")
    return value


def _check_widths(value, name: str) -> tuple[int, ...]:
    """A sequence of layer widths (ints >= 1)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be a sequence of ints >= 1; got {type(value).__name__}")
    widths = tuple(value)
    for k, w in enumerate(widths):
        _check_int(w, f"{name}[{k}]")
    return widths


def _as_nchw(x: torch.Tensor, in_channels: int) -> torch.Tensor:
    if x.dim() == 3 and in_channels == 1:
        return x.unsqueeze(1)
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(
            f"input must be (N, {in_channels}, H, W)"
            + (" or (N, H, W)" if in_channels == 1 else "")
            + f"; got shape {tuple(x.shape)}"
        )
    return x


# ---------- LeNets


class LeNet300_100(nn.Module):
    """MLP ``in_features → 300 → 100 → num_classes`` with ReLU; input ``(N, ...)`` is flattened."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
        hidden: tuple[int, ...] = (300, 100),
    ):
        super().__init__()
        self.in_features = in_channels * image_size * image_size
        widths = (self.in_features, *_check_widths(hidden, "hidden"))
        pairs = zip(widths[:-1], widths[1:], strict=True)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)
        self.classifier = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if x.shape[1] != self.in_features:
            raise ValueError(
                f"input must have {self.in_features} features per sample; got {x.shape[1]}"
            )
        for layer in self.hidden:
            x = F.relu(layer(x))
        return self.classifier(x)


class LeNet5(nn.Module):
    """LeNet-5 with ReLU and max-pooling; 1 or 3 input channels, 28×28 (padded) or 32×32 images."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28):
        super().__init__()
        # LeCun's network expects 32×32; the first conv pads MNIST's 28×28 digits to that size.
        padding = 2 if image_size < 32 else 0
        side = ((image_size + 2 * padding - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"image_size must be at least 16 for LeNet-5; got {image_size}")
        self.in_channels = in_channels
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=padding)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * side * side, 120)
        self.fc2 = nn.Linear(120, 84)
        self.classifier = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _as_nchw(x, self.in_channels)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.relu(self.fc2(x))
        return self.classifier(x)


# ---------- VGG


class VGG(nn.Module):
    """CIFAR VGG: conv3×3–BN–ReLU stacks, max-pooling, global average pool, Linear(512, classes).

    Pooling uses ``ceil_mode=True`` so that 28×28 inputs reach 1×1 after the five pools, as 32×32 do
    (identical to the usual floor pooling on 32×32).
    """

    def __init__(
        self,
        config: str | tuple = "vgg16",
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 32,
        batch_norm: bool = True,
    ):
        super().__init__()
        if isinstance(config, str):
            if config not in VGG_CONFIGS:
                raise ValueError(
                    f"config must be one of {', '.join(map(repr, VGG_CONFIGS))}; got {config!r}"
                )
            config = VGG_CONFIGS[config]
        if not isinstance(batch_norm, bool):
            raise TypeError(f"batch_norm must be a bool; got {type(batch_norm).__name__}")
        self.in_channels = in_channels
        layers: list[nn.Module] = []
        channels = in_channels
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
                continue
            layers.append(nn.Conv2d(channels, item, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(item))
            layers.append(nn.ReLU(inplace=True))
            channels = item
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(_as_nchw(x, self.in_channels))
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))


# ---------- ResNets


class BasicBlock(nn.Module):
    """Two 3×3 conv–BN layers plus a shortcut (He et al. 2016).

    When the shape changes (``stride != 1`` or ``in_planes != planes``) the shortcut is

    - option ``"A"``: parameter-free — subsample by ``stride`` and zero-pad the new channels (the
      CIFAR ResNets of the paper's §4.2);
    - option ``"B"``: a 1×1 convolution with ``stride`` followed by BatchNorm (projection).
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "A"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride = stride
        self.pad = planes - in_planes
        self.option = shortcut
        self.projection: nn.Module | None = None
        if (stride != 1 or in_planes != planes) and shortcut == "B":
            self.projection = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        self.identity = stride == 1 and in_planes == planes

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return x
        if self.projection is not None:
            return self.projection(x)
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self._shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for CIFAR (He et al. 2016 §4.2): 3×3 conv(16), three stages of ``n`` basic
    blocks with 16, 32, 64 channels (stride 2 between stages), global average pool, Linear(64,
    classes)."""

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 32,
        shortcut: str = "A",
    ):
        super().__init__()
        _check_int(depth, "depth")
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"depth must be 6n+2 with n >= 1 (20, 32, 56, ...); got {depth}")
        if shortcut not in ("A", "B"):
            raise ValueError(
                "shortcut must be 'A' (zero-padding identity) or 'B' (1x1 projection); "
                f"got {shortcut!r}"
            )
        n = (depth - 2) // 6
        self.in_channels = in_channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
        )
        blocks: list[nn.Module] = []
        in_planes = 16
        for stage, planes in enumerate((16, 32, 64)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(in_planes, planes, stride, shortcut))
                in_planes = planes
        self.blocks = nn.Sequential(*blocks)
        self.classifier = nn.Linear(64, num_classes)
        _kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(_as_nchw(x, self.in_channels)))
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))


class ResNet18(nn.Module):
    """CIFAR ResNet-18: 3×3 conv(64) stem without max-pool, stages of 2 basic blocks with
    64/128/256/512 channels (projection shortcuts, option "B"), global average pool, Linear(512,
    classes)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32):
        super().__init__()
        self.in_channels = in_channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
        )
        blocks: list[nn.Module] = []
        in_planes = 64
        for stage, planes in enumerate((64, 128, 256, 512)):
            for i in range(2):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(in_planes, planes, stride, shortcut="B"))
                in_planes = planes
        self.blocks = nn.Sequential(*blocks)
        self.classifier = nn.Linear(512, num_classes)
        _kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(_as_nchw(x, self.in_channels)))
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))


def _kaiming_init(model: nn.Module) -> None:
    # He et al. initialise convolutions with N(0, 2/fan_out) ("kaiming normal", fan_out, ReLU).
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


# ---------- LSTM


class LSTMClassifier(nn.Module):
    """Sequential-image classifier: each image row is one time step.

    Input ``(N, C, H, W)`` (or ``(N, H, W)``) becomes a sequence of ``H`` steps of ``C·W`` features;
    the LSTM's last hidden state of the top layer goes through ``Linear(hidden_size, num_classes)``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
        hidden_size: int = 128,
        num_layers: int = 1,
    ):
        super().__init__()
        _check_int(hidden_size, "hidden_size")
        _check_int(num_layers, "num_layers")
        self.in_channels = in_channels
        self.input_size = in_channels * image_size
        self.lstm = nn.LSTM(self.input_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.classifier = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _as_nchw(x, self.in_channels)
        n, c, h, w = x.shape
        seq = x.permute(0, 2, 1, 3).reshape(n, h, c * w)
        if seq.shape[2] != self.input_size:
            raise ValueError(
                f"each row must have {self.input_size} features (C·W); got {seq.shape[2]}"
            )
        _, (h_n, _) = self.lstm(seq)
        return self.classifier(h_n[-1])


# ---------- ViT


class ViT(nn.Module):
    """A small Vision Transformer (Dosovitskiy et al. 2021).

    Non-overlapping ``patch_size``² patches (default ``image_size // 4``: 7 on 28×28) are flattened
    (``C·p²`` values) and mapped by a Linear to ``dim``; a learned class token and learned position
    embeddings are added; ``depth`` pre-norm `nn.TransformerEncoderLayer` (GELU MLP of width
    ``mlp_dim``, no dropout) follow; the class token's final LayerNorm output goes through
    ``Linear(dim, num_classes)``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
        patch_size: int | None = None,
        dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        mlp_dim: int = 128,
        dropout: float = 0.0,
    ):
        super().__init__()
        for value, arg in ((dim, "dim"), (depth, "depth"), (heads, "heads"), (mlp_dim, "mlp_dim")):
            _check_int(value, arg)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise TypeError(f"dropout must be a number in [0, 1); got {type(dropout).__name__}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout!r}")
        if patch_size is None:
            patch_size = max(1, image_size // 4)  # 4×4 = 16 tokens: patch 7 on 28×28, 8 on 32×32
        _check_int(patch_size, "patch_size")
        if image_size % patch_size != 0:
            raise ValueError(
                f"patch_size must divide image_size; got patch_size={patch_size}, "
                f"image_size={image_size}"
            )
        if dim % heads != 0:
            raise ValueError(f"heads must divide dim; got heads={heads}, dim={dim}")
        self.in_channels = in_channels
        self.image_size = image_size
        self.patch_size = patch_size
        num_patches = (image_size // patch_size) ** 2
        self.patch_embed = nn.Linear(in_channels * patch_size * patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        # A plain list of layers rather than nn.TransformerEncoder, whose nested-tensor conversion
        # warns for norm_first layers. In eval mode without gradients each layer (and its
        # MultiheadAttention) may take torch's fused fast path, which reads in_proj_weight,
        # out_proj.weight, linear1/linear2.weight directly instead of calling the submodules.
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                dim,
                heads,
                dim_feedforward=mlp_dim,
                dropout=dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _as_nchw(x, self.in_channels)
        n, c, h, w = x.shape
        p = self.patch_size
        if h != self.image_size or w != self.image_size:
            raise ValueError(
                f"input images must be {self.image_size}×{self.image_size}; got {h}×{w}"
            )
        # (N, C, H, W) -> (N, H/p · W/p, C·p·p), patches in row-major order
        patches = (
            x.reshape(n, c, h // p, p, w // p, p)
            .permute(0, 2, 4, 1, 3, 5)
            .reshape(n, -1, c * p * p)
        )
        tokens = torch.cat([self.cls_token.expand(n, -1, -1), self.patch_embed(patches)], dim=1)
        tokens = tokens + self.pos_embed
        for layer in self.layers:
            tokens = layer(tokens)
        return self.classifier(self.norm(tokens[:, 0]))


# ---------- registry


def _vgg(config: str) -> Callable[..., nn.Module]:
    def build(num_classes=10, in_channels=1, image_size=28, **kw):
        return VGG(
            config, num_classes=num_classes, in_channels=in_channels, image_size=image_size, **kw
        )

    return build


def _resnet(depth: int) -> Callable[..., nn.Module]:
    def build(num_classes=10, in_channels=1, image_size=28, **kw):
        return CifarResNet(
            depth, num_classes=num_classes, in_channels=in_channels, image_size=image_size, **kw
        )

    return build


MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet300_100": LeNet300_100,
    "lenet5": LeNet5,
    "vgg16": _vgg("vgg16"),
    "vgg19": _vgg("vgg19"),
    "resnet20": _resnet(20),
    "resnet32": _resnet(32),
    "resnet56": _resnet(56),
    "resnet18": ResNet18,
    "lstm": LSTMClassifier,
    "vit": ViT,
}


def available() -> tuple[str, ...]:
    """The registered model names, sorted."""
    return tuple(sorted(MODELS))


def get(
    name: str,
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: int = 28,
    *,
    seed: int | None = None,
    **kw,
) -> nn.Module:
    """Build a zoo model by name.

    Parameters
    ----------
    name : one of `available()`.
    num_classes, in_channels, image_size : the data's classes, channels and (square) side in pixels.
    seed : int, optional
        Seeds the parameter initialisation without touching the global torch RNG; ``None`` draws
        from the global RNG.
    **kw : model-specific options (e.g. ``shortcut="B"`` for the CIFAR ResNets, ``hidden_size`` for
        ``lstm``, ``dim``/``depth``/``heads``/``patch_size`` for ``vit``, ``batch_norm`` for VGG).
    """
    if name not in MODELS:
        raise ValueError(f"name must be one of {', '.join(map(repr, available()))}; got {name!r}")
    _check_int(num_classes, "num_classes")
    _check_int(in_channels, "in_channels")
    _check_int(image_size, "image_size")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be a non-negative int or None; got {seed!r}")
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        model = MODELS[name](
            num_classes=num_classes, in_channels=in_channels, image_size=image_size, **kw
        )
    # how to rebuild the architecture (`tedepr.save` records it; deep copies keep it)
    model._tedepr_zoo = {
        "name": name,
        "kwargs": {
            "num_classes": num_classes,
            "in_channels": in_channels,
            "image_size": image_size,
            **kw,
        },
    }
    return model
