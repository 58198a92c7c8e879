"""The PyTorch model zoo of the paper's experiments, for MNIST (28×28) and CIFAR (32×32) inputs.

Every model takes images ``(N, C, H, W)``; single-channel models also accept ``(N, H, W)``. Every
model returns logits ``(N, num_classes)``. Build them by name with `get`; the architectures are
tabulated in `tedepr.models` (the JAX zoo has the same).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ... import models as zoo

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
        widths = (self.in_features, *zoo.check_widths(hidden, "hidden"))
        pairs = zip(widths[:-1], widths[1:], strict=True)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)
        self.classifier = nn.Linear(widths[-1], num_classes)
        #: the first layer reads a flattened image: `tensorize` keeps its modes inside the axes
        self.tensorize_hints = zoo.mlp_hints("hidden.0", in_channels, image_size)

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
        config = zoo.vgg_config(config)
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
        n = zoo.check_resnet(depth, shortcut)
        _build_resnet(self, in_channels, 16, (16, 32, 64), n, shortcut, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _resnet_forward(self, x)


class ResNet18(nn.Module):
    """CIFAR ResNet-18: 3×3 conv(64) stem without max-pool, stages of 2 basic blocks with
    64/128/256/512 channels (projection shortcuts, option "B"), global average pool, Linear(512,
    classes)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32):
        super().__init__()
        _build_resnet(self, in_channels, 64, (64, 128, 256, 512), 2, "B", num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _resnet_forward(self, x)


def _build_resnet(
    model: nn.Module, in_channels, stem_width, stages, blocks_per_stage, shortcut, num_classes
) -> None:
    """A 3×3 conv–BN–ReLU stem, the stages of basic blocks and the classifier, on ``model``."""
    model.in_channels = in_channels
    model.stem = nn.Sequential(
        nn.Conv2d(in_channels, stem_width, 3, padding=1, bias=False),
        nn.BatchNorm2d(stem_width),
        nn.ReLU(inplace=True),
    )
    model.blocks = nn.Sequential(
        *(
            BasicBlock(a, b, stride, shortcut)
            for a, b, stride in zoo.resnet_blocks(stem_width, stages, blocks_per_stage)
        )
    )
    model.classifier = nn.Linear(stages[-1], num_classes)
    # He et al. initialise convolutions with N(0, 2/fan_out) ("kaiming normal", fan_out, ReLU).
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


def _resnet_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = model.blocks(model.stem(_as_nchw(x, model.in_channels)))
    return model.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))


# ---------- LSTM


class LSTMClassifier(nn.Module):
    """Sequential-image classifier: each image row is one time step.

    Input ``(N, C, H, W)`` (or ``(N, H, W)``) becomes a sequence of ``H`` steps of ``C·W`` features;
    the LSTM's last hidden state of the top layer goes through ``Linear(hidden_size, num_classes)``.
    ``num_layers`` LSTM layers are stacked in one ``nn.LSTM`` (``lstm.weight_ih_l0``, ``_l1``, ...),
    with ``dropout`` on the outputs of every layer but the top one (training only).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
        hidden_size: int = 128,
        num_layers: int = 1,
        dropout: float = 0.0,
    ):
        super().__init__()
        dropout = zoo.check_lstm(hidden_size, num_layers, dropout)
        self.in_channels = in_channels
        self.input_size = in_channels * image_size
        # nn.LSTM warns about dropout on one layer, where it does nothing: pass it only when stacked
        self.lstm = nn.LSTM(
            self.input_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
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
        patch_size = zoo.check_vit(image_size, patch_size, dim, depth, heads, mlp_dim)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise TypeError(f"dropout must be a number in [0, 1); got {type(dropout).__name__}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout!r}")
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


MODELS: dict[str, Callable[..., nn.Module]] = zoo.zoo_table(
    LeNet300_100, LeNet5, VGG, CifarResNet, ResNet18, LSTMClassifier, ViT
)


def _build(request: zoo.ZooRequest, *, seed: int | None = None) -> nn.Module:
    """
    seed : int, optional
        Seeds the parameter initialisation without touching the global torch RNG; ``None``
        (default) draws from the global RNG.
    """
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be a non-negative int or None; got {seed!r}")
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        model, recipe = request.build(MODELS)
    # how to rebuild the architecture (`tedepr.save` records it; deep copies keep it)
    model._tedepr_zoo = recipe
    return model


available, get = zoo.zoo_front(MODELS, _build, __name__, "nn.Module")
