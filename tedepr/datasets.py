"""Data sets in NumPy: the embedded MNIST digits, standard on-disk formats, splits and batching.

Backend-neutral: this module imports only NumPy and the standard library, so the torch and JAX
backends (and the CLI) share one loader, one split and one batch order. Image folders
(Tiny-ImageNet, ImageNet, UCF11 frames) are decoded with Pillow and UCF11 videos with
imageio-ffmpeg, each imported only when such files are read (extras ``tedepr[data]`` and
``tedepr[video]``).

Image arrays returned by `load_dataset` are ``uint8`` with an explicit channel axis, in the layout
asked for: ``"NCHW"`` (PyTorch's, the default) or ``"NHWC"`` (JAX/Flax's). Labels are ``int64`` of
shape ``(N,)``. Call `normalize` to get floating inputs for a model.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import pickle
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = [
    "MNIST10K_SHA256",
    "MNIST_MEAN",
    "MNIST_STD",
    "LAYOUTS",
    "KINDS",
    "UCF11_ACTIONS",
    "Dataset",
    "dataset_spec",
    "check_options",
    "load_mnist10k",
    "load_dataset",
    "read_idx",
    "train_test_split",
    "normalize",
    "channel_stats",
    "batch_indices",
    "batches",
]

logger = logging.getLogger(__name__)

MNIST10K_SHA256 = "0217e13bd0668deb198aa7d305edbf0331eb89f8a6e7dd226e03d1aa3a9bd4ef"
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
LAYOUTS = ("NCHW", "NHWC")

_EMBEDDED = ("mnist10k",)


# ---------- embedded


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_mnist10k() -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 embedded MNIST digits (provenance and licence: ``tedepr/data/README.md``).

    Returns
    -------
    images : numpy.ndarray
        ``uint8`` of shape ``(10000, 28, 28)``, pixel values 0–255.
    labels : numpy.ndarray
        ``uint8`` of shape ``(10000,)``. The digits are **ordered by class** (all 0s, then all 1s,
        ...): split with `train_test_split`, which shuffles with a fixed seed.

    Raises
    ------
    RuntimeError
        If the packaged file's sha256 is not the published one (a corrupted or replaced file).
    """
    resource = resources.files("tedepr") / "data" / "mnist10k.npz"
    try:
        raw = resource.read_bytes()
    except FileNotFoundError as exc:  # a broken install without the package data
        raise FileNotFoundError(
            f"the embedded data set is missing: {resource} (reinstall tedepr; the wheel ships "
            "tedepr/data/mnist10k.npz)"
        ) from exc
    digest = _sha256(raw)
    if digest != MNIST10K_SHA256:
        raise RuntimeError(
            f"the embedded data set {resource} is corrupted: sha256 {digest}, "
            f"expected {MNIST10K_SHA256}"
        )
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        images, labels = npz["images"], npz["labels"]
    return images, labels


# ---------- splits


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")
    return int(seed)


def _check_pair(images, labels) -> tuple[np.ndarray, np.ndarray]:
    images = np.asarray(images)
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D of shape (N,); got shape {labels.shape}")
    if images.ndim < 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"images and labels must have the same length N on axis 0; got images {images.shape} "
            f"and labels {labels.shape}"
        )
    return images, labels


def train_test_split(
    images, labels, test_fraction: float = 0.2, seed: int = 0, *, stratify: bool = True
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Split into shuffled train and test sets with a fixed seed.

    Parameters
    ----------
    images : array of shape (N, ...)
    labels : array of shape (N,)
    test_fraction : float in (0, 1)
        With ``stratify=True`` (default) each class contributes ``round(test_fraction · count)``
        samples to the test set, so both sets keep the class proportions (the total may differ
        from ``round(test_fraction · N)`` by the rounding of each class); otherwise
        ``round(test_fraction · N)`` samples drawn uniformly.
    seed : int
        Seeds `numpy.random.default_rng`; the same seed gives the same split on every platform.

    Returns
    -------
    (train_images, train_labels), (test_images, test_labels)
        New arrays (the inputs are not modified), each set in shuffled order — never ordered by
        class.
    """
    images, labels = _check_pair(images, labels)
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, (int, float, np.floating))
        or not 0.0 < float(test_fraction) < 1.0
    ):
        raise ValueError(f"test_fraction must be a float in (0, 1); got {test_fraction!r}")
    rng = np.random.default_rng(_check_seed(seed))
    n = labels.shape[0]
    if stratify:
        train_parts, test_parts = [], []
        for cls in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == cls))
            n_test = int(round(float(test_fraction) * members.size))
            test_parts.append(members[:n_test])
            train_parts.append(members[n_test:])
        train_idx = rng.permutation(np.concatenate(train_parts)) if train_parts else np.arange(0)
        test_idx = rng.permutation(np.concatenate(test_parts)) if test_parts else np.arange(0)
    else:
        order = rng.permutation(n)
        n_test = int(round(float(test_fraction) * n))
        test_idx, train_idx = order[:n_test], order[n_test:]
    if train_idx.size == 0 or test_idx.size == 0:
        raise ValueError(
            f"test_fraction={test_fraction!r} of {n} samples leaves an empty train or test set"
        )
    return (images[train_idx], labels[train_idx]), (images[test_idx], labels[test_idx])


# ---------- normalisation


def _per_channel(value, name: str, ndim: int, channel_axis) -> np.ndarray:
    value = np.asarray(value, dtype=np.float64)
    if value.ndim == 0:
        return value
    if value.ndim != 1:
        raise ValueError(
            f"{name} must be a scalar or a 1-D sequence (one per channel); got shape {value.shape}"
        )
    if channel_axis is None:
        raise ValueError(f"{name} is per channel ({value.size} values): give channel_axis")
    shape = [1] * ndim
    shape[channel_axis] = value.size
    return value.reshape(shape)


def normalize(
    images, mean=MNIST_MEAN, std=MNIST_STD, *, channel_axis: int | None = None, dtype=np.float32
) -> np.ndarray:
    """``(images / 255 − mean) / std`` as a new floating array of the same shape.

    Parameters
    ----------
    images : array
        ``uint8`` pixel values 0–255, or a floating array already scaled to [0, 1].
    mean, std : float or sequence of floats
        Statistics on the [0, 1] scale; defaults are MNIST's (0.1307, 0.3081). A sequence gives one
        value per channel and needs ``channel_axis`` (1 for ``"NCHW"``, -1 for ``"NHWC"``).
    dtype : numpy floating dtype of the result (default float32).
    """
    x = np.asarray(images)
    if x.dtype == np.uint8:
        x = x.astype(np.float64) / 255.0
    elif np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    else:
        raise ValueError(f"images must be uint8 (0-255) or floating in [0, 1]; got dtype {x.dtype}")
    if not np.issubdtype(np.dtype(dtype), np.floating):
        raise ValueError(f"dtype must be a floating dtype; got {dtype!r}")
    if channel_axis is not None:
        if not -x.ndim <= channel_axis < x.ndim:
            raise ValueError(
                f"channel_axis must index one of the {x.ndim} axes; got {channel_axis}"
            )
        channel_axis %= x.ndim
    m = _per_channel(mean, "mean", x.ndim, channel_axis)
    s = _per_channel(std, "std", x.ndim, channel_axis)
    if np.any(~np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"std must be positive and finite; got {std!r}")
    if channel_axis is not None and (
        m.size not in (1, x.shape[channel_axis]) or s.size not in (1, x.shape[channel_axis])
    ):
        raise ValueError(
            f"mean/std have {m.size}/{s.size} values but images have "
            f"{x.shape[channel_axis]} channels"
        )
    return ((x - m) / s).astype(dtype)


def channel_stats(images, channel_axis: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of ``images`` on the [0, 1] scale, per channel (``channel_axis``) or overall.

    Feed the result to `normalize` for data sets without published statistics. Returns float64
    arrays of shape ``(C,)`` (or scalars when ``channel_axis`` is None).
    """
    x = np.asarray(images)
    x = x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)
    if channel_axis is None:
        return np.asarray(x.mean()), np.asarray(x.std())
    axes = tuple(a for a in range(x.ndim) if a != channel_axis % x.ndim)
    return x.mean(axis=axes), x.std(axis=axes)


# ---------- batching


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return int(value)


def batch_indices(
    n: int,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
    drop_last: bool = False,
) -> list[np.ndarray]:
    """Index arrays of the batches of one epoch, in order.

    The shuffle depends only on ``(seed, epoch)`` — `numpy.random.default_rng([seed, epoch])` — so
    epoch ``k`` has the same order whether or not the run was interrupted before it, and the torch
    and JAX backends see identical batches. Without ``drop_last`` the last batch may be smaller.

    Returns a list of ``int64`` arrays, each of length ``batch_size`` (the last possibly shorter).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative int; got {n!r}")
    batch_size = _check_positive_int(batch_size, "batch_size")
    seed = _check_seed(seed)
    if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
        raise ValueError(f"epoch must be a non-negative int; got {epoch!r}")
    order = np.random.default_rng([seed, int(epoch)]).permutation(n) if shuffle else np.arange(n)
    stop = (n // batch_size) * batch_size if drop_last else n
    return [order[i : i + batch_size] for i in range(0, stop, batch_size)]


def batches(
    x,
    y,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    drop_last: bool = False,
    *,
    epoch: int = 0,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(x[idx], y[idx])`` for the batches of one epoch (order: `batch_indices`).

    ``x`` has shape ``(N, ...)`` and ``y`` shape ``(N,)``; each yielded pair is a new array of
    shapes ``(B, ...)`` and ``(B,)``. This is a generator (one pass); call it again for the next
    epoch.
    """
    x, y = _check_pair(x, y)
    for idx in batch_indices(
        x.shape[0], batch_size, shuffle=shuffle, seed=seed, epoch=epoch, drop_last=drop_last
    ):
        yield x[idx], y[idx]


# ---------- on-disk formats


@dataclass(frozen=True)
class Dataset:
    """A train/test image classification data set held in memory.

    Images are ``uint8`` of shape ``(N, C, H, W)`` (``layout="NCHW"``) or ``(N, H, W, C)``
    (``"NHWC"``); labels are ``int64`` of shape ``(N,)`` in ``[0, num_classes)``.
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    layout: str
    source: str
    #: Class names in label order where the source has them (Tiny-ImageNet wnids, ImageNet
    #: folders, UCF11 actions); None otherwise.
    classes: tuple[str, ...] | None = None

    @property
    def model_kwargs(self) -> dict:
        """``num_classes``, ``in_channels`` and ``image_size`` for ``tedepr.models.get``.

        ``image_size`` is the image width: the side of square images, or for sequences (UCF11,
        one-channel "images" whose rows are time steps) the features per step, as the zoo's
        ``lstm`` takes it. Non-square images are an error (the zoo's models are square).
        """
        h, w = self.image_hw
        if h != w and self.name != "ucf11":
            raise ValueError(
                f"the zoo's models take square images; this data set's are {h}x{w} "
                "(load it with image_size= to resize)"
            )
        return {"num_classes": self.num_classes, "in_channels": self.in_channels, "image_size": w}

    @property
    def in_channels(self) -> int:
        return int(self.train_images.shape[1 if self.layout == "NCHW" else 3])

    @property
    def image_hw(self) -> tuple[int, int]:
        """``(H, W)``."""
        shape = self.train_images.shape
        return (
            (int(shape[2]), int(shape[3]))
            if self.layout == "NCHW"
            else (int(shape[1]), int(shape[2]))
        )


_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (the MNIST format; ``.gz`` is decompressed) into a native-endian array.

    Header: two zero bytes, a type code (0x08 ubyte, 0x09 byte, 0x0B int16, 0x0C int32, 0x0D
    float32, 0x0E float64), the number of dimensions, then each dimension as a big-endian uint32.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{str(path)!r} is not an IDX file (bad magic number {raw[:4].hex()!r})")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{str(path)!r}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"{str(path)!r}: IDX header says shape {shape} ({expected} bytes) but the file has "
            f"{len(raw)} bytes"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _find_one(directory: Path, stems: list[str]) -> Path | None:
    for stem in stems:
        for candidate in (directory / stem, directory / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _idx_files(directory: Path, split: str) -> tuple[Path | None, Path | None]:
    # The canonical names use '-' before idx; the widely mirrored Kaggle copy uses '.'.
    images = _find_one(directory, [f"{split}-images-idx3-ubyte", f"{split}-images.idx3-ubyte"])
    labels = _find_one(directory, [f"{split}-labels-idx1-ubyte", f"{split}-labels.idx1-ubyte"])
    return images, labels


def _is_mnist_dir(directory: Path) -> bool:
    return _idx_files(directory, "train")[0] is not None


def _load_mnist_idx(directory: Path):
    train_x, train_y = _idx_files(directory, "train")
    if train_x is None or train_y is None:
        raise FileNotFoundError(
            f"{str(directory)!r}: MNIST IDX folder needs train-images-idx3-ubyte[.gz] and "
            "train-labels-idx1-ubyte[.gz]"
        )
    test_x, test_y = _idx_files(directory, "t10k")
    if (test_x is None) != (test_y is None):
        raise FileNotFoundError(
            f"{str(directory)!r}: found only one of the t10k images/labels IDX files"
        )
    train = (read_idx(train_x), read_idx(train_y))
    test = (read_idx(test_x), read_idx(test_y)) if test_x is not None else None
    for images, labels in (train,) if test is None else (train, test):
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"{str(directory)!r}: IDX images must be (N, H, W) and labels (N,); "
                f"got {images.shape} "
                f"and {labels.shape}"
            )
    return train, test


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches, which hold only dicts, lists, bytes and NumPy arrays.

    Anything else is refused, so a crafted file cannot run code on load.
    """

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(text, "latin1")
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"CIFAR pickle refers to {module}.{name}, which is not allowed"
            )
        if module.startswith("numpy.core.") and np.lib.NumpyVersion(np.__version__) >= "2.0.0":
            module = (
                "numpy._core." + module[len("numpy.core.") :]
            )  # avoid numpy 2's deprecation shim
        return super().find_class(module, name)


def _read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        batch = _CifarUnpickler(f, encoding="bytes").load()
    if not isinstance(batch, dict):
        raise ValueError(f"{str(path)!r}: a CIFAR batch must be a dict; got {type(batch).__name__}")
    # The official files are Python 2 pickles with bytes keys; re-pickled copies have str keys.
    batch = {(k.decode() if isinstance(k, bytes) else k): v for k, v in batch.items()}
    if "data" not in batch or label_key not in batch:
        raise ValueError(
            f"{str(path)!r}: a CIFAR batch needs keys 'data' and {label_key!r}; got {sorted(batch)}"
        )
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{str(path)!r}: CIFAR data must be (N, 3072) with N labels; "
            f"got {data.shape} and {labels.shape}"
        )
    return data.reshape(-1, 3, 32, 32), labels  # rows are channel-major: R plane, G plane, B plane


def _cifar_kind(directory: Path) -> str | None:
    if (directory / "data_batch_1").is_file():
        return "cifar10"
    if (directory / "train").is_file() and (directory / "test").is_file():
        return "cifar100"
    return None


def _load_cifar(directory: Path, kind: str):
    if kind == "cifar10":
        parts = [
            _read_cifar_batch(directory / f"data_batch_{i}", "labels")
            for i in range(1, 6)
            if (directory / f"data_batch_{i}").is_file()
        ]
        train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        test_path = directory / "test_batch"
        test = _read_cifar_batch(test_path, "labels") if test_path.is_file() else None
        return train, test, 10
    train = _read_cifar_batch(directory / "train", "fine_labels")
    test = _read_cifar_batch(directory / "test", "fine_labels")
    return train, test, 100


_NPZ_KEYS = (
    ("images", "labels"),
    ("x_train", "y_train", "x_test", "y_test"),
    ("train_images", "train_labels", "test_images", "test_labels"),
)


def _load_npz(path: Path):
    with np.load(path, allow_pickle=False) as npz:
        keys = set(npz.files)
        for names in _NPZ_KEYS[1:]:
            if keys.issuperset(names):
                a = [npz[k] for k in names]
                return (a[0], a[1]), (a[2], a[3])
        if keys.issuperset(_NPZ_KEYS[0]):
            return (npz["images"], npz["labels"]), None
    allowed = "; ".join("(" + ", ".join(names) + ")" for names in _NPZ_KEYS)
    raise ValueError(
        f"{str(path)!r}: an .npz data set needs the arrays {allowed}; it has {sorted(keys)}"
    )


def _to_nchw(images: np.ndarray, source: str) -> np.ndarray:
    """Add a channel axis to ``(N, H, W)``; find the channel axis of 4-D arrays (C ∈ {1, 3, 4})."""
    if images.ndim == 3:
        return images[:, None]
    if images.ndim == 4:
        first, last = images.shape[1] in (1, 3, 4), images.shape[3] in (1, 3, 4)
        if last and not first:
            return images.transpose(0, 3, 1, 2)
        if first and not last:
            return images
        raise ValueError(
            f"{source}: cannot tell whether images of shape {images.shape} are NCHW or NHWC; store "
            "(N, H, W) for grayscale or make the channel axis unambiguous"
        )
    raise ValueError(
        f"{source}: images must be (N, H, W), (N, C, H, W) or (N, H, W, C); got {images.shape}"
    )


# ---------- image folders (Tiny-ImageNet, ImageNet) and UCF11 clips

#: The data set kinds `load_dataset` recognises (``kind=``) and `dataset_spec` describes.
KINDS = ("mnist10k", "mnist", "cifar10", "cifar100", "tiny-imagenet", "imagenet", "ucf11", "npz")

#: The 11 action folders of UCF11 (UCF YouTube Action), in label order (label = index).
UCF11_ACTIONS = (
    "basketball",
    "biking",
    "diving",
    "golf_swing",
    "horse_riding",
    "soccer_juggling",
    "swing",
    "tennis_swing",
    "trampoline_jumping",
    "volleyball_spiking",
    "walking",
)
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
VIDEO_EXTENSIONS = (".mpg", ".mpeg", ".avi", ".mp4")

#: UCF11 preprocessing defaults (see `load_dataset`).
UCF11_FRAMES = 6
UCF11_FRAME_SIZE = (32, 32)

# The keyword options of load_dataset that only some kinds take, and their defaults.
_OPTION_KINDS = {
    "image_size": ("tiny-imagenet", "imagenet"),
    "max_per_class": ("tiny-imagenet", "imagenet", "ucf11"),
    "frames": ("ucf11",),
    "frame_size": ("ucf11",),
    "grayscale": ("ucf11",),
    "group_split": ("ucf11",),
}
_SHAPES = {  # kind: (num_classes, in_channels, native square side or None)
    "mnist10k": (10, 1, 28),
    "mnist": (10, 1, 28),
    "cifar10": (10, 3, 32),
    "cifar100": (100, 3, 32),
    "tiny-imagenet": (200, 3, 64),
    "imagenet": (1000, 3, None),
}


def _pil():
    try:
        from PIL import Image
    except ModuleNotFoundError as exc:
        raise ImportError(
            "reading image files (Tiny-ImageNet, ImageNet, UCF11 frame folders) needs Pillow: "
            "pip install 'tedepr[data]'"
        ) from exc
    return Image


def _ffmpeg():
    try:
        import imageio_ffmpeg
    except ModuleNotFoundError as exc:
        raise ImportError(
            "decoding UCF11 videos (.mpg/.avi) needs imageio-ffmpeg: pip install 'tedepr[video]' "
            "(or extract the frames into one folder of .jpg per clip)"
        ) from exc
    return imageio_ffmpeg


def _natural_key(path: Path):
    """Sort key that orders ``frame2`` before ``frame10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _image_files(directory: Path) -> list[Path]:
    return sorted(
        (p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
        key=_natural_key,
    )


def _subdirs(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_dir())


def _missing(what: str, items: list[str]) -> str:
    shown = ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")
    return f"{what}: {shown}"


def _resize_center_crop(image, size: int, Image):
    """Resize the shorter side to ``size`` (bilinear, antialiased), then crop the centre square."""
    w, h = image.size
    if (w, h) == (size, size):
        return image
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    image = image.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return image.crop((left, top, left + size, top + size))


def _open_image(path: Path, mode: str, Image, draft_size: int | None = None):
    try:
        with Image.open(path) as im:
            if draft_size is not None:
                # JPEG only (a no-op otherwise): libjpeg decodes at 1/2, 1/4 or 1/8 scale while
                # both sides stay >= draft_size — much faster for large photos resized down.
                im.draft("RGB", (draft_size, draft_size))
            return im.convert(mode)
    except (OSError, SyntaxError) as exc:  # PIL.UnidentifiedImageError is an OSError
        raise ValueError(f"{str(path)!r} is not a readable image: {exc}") from exc


def _read_images(paths: list[Path], image_size: int | None, layout: str) -> np.ndarray:
    """Decode ``paths`` as RGB into one preallocated ``uint8`` array in ``layout``."""
    Image = _pil()
    out = None
    first = None
    for i, path in enumerate(paths):
        im = _open_image(path, "RGB", Image, draft_size=image_size)
        if image_size is not None:
            im = _resize_center_crop(im, image_size, Image)
        a = np.asarray(im, dtype=np.uint8)  # (H, W, 3)
        if out is None:
            first = (path, a.shape)
            shape = (len(paths),) + (a.shape if layout == "NHWC" else (3,) + a.shape[:2])
            out = np.empty(shape, dtype=np.uint8)
        elif a.shape != first[1]:
            raise ValueError(
                f"images differ in size ({str(first[0])!r} is {first[1][1]}x{first[1][0]}, "
                f"{str(path)!r} is {a.shape[1]}x{a.shape[0]}): give image_size= to resize them"
            )
        out[i] = a if layout == "NHWC" else a.transpose(2, 0, 1)
    return out


def _per_class(files: list[Path], max_per_class: int | None) -> list[Path]:
    return files if max_per_class is None else files[:max_per_class]


def _is_tiny_imagenet(directory: Path) -> bool:
    return (directory / "wnids.txt").is_file()


def _load_tiny_imagenet(directory: Path, image_size, max_per_class, layout):
    source = str(directory)
    wnids_file = directory / "wnids.txt"
    if not wnids_file.is_file():
        raise FileNotFoundError(
            f"{source!r}: a Tiny-ImageNet folder (tiny-imagenet-200/) needs wnids.txt, "
            "train/<wnid>/images/*.JPEG, val/images/*.JPEG and val/val_annotations.txt; "
            "wnids.txt is missing"
        )
    wnids = [line.strip() for line in wnids_file.read_text().splitlines() if line.strip()]
    if not wnids:
        raise ValueError(f"{str(wnids_file)!r} lists no wnids")
    if len(set(wnids)) != len(wnids):
        raise ValueError(f"{str(wnids_file)!r} lists a wnid twice")
    classes = sorted(wnids)
    label = {w: i for i, w in enumerate(classes)}
    missing = [
        f"train/{w}/images" for w in classes if not (directory / "train" / w / "images").is_dir()
    ]
    for needed in ("val/images", "val/val_annotations.txt"):
        if not (directory / needed).exists():
            missing.append(needed)
    if missing:
        raise FileNotFoundError(
            _missing(f"{source!r}: incomplete Tiny-ImageNet folder, missing", missing)
        )
    train_files, train_labels = [], []
    for w in classes:
        files = _per_class(_image_files(directory / "train" / w / "images"), max_per_class)
        if not files:
            raise FileNotFoundError(f"{source!r}: train/{w}/images holds no .JPEG/.jpg/.png image")
        train_files += files
        train_labels += [label[w]] * len(files)
    val_files, val_labels, per_class = [], [], dict.fromkeys(classes, 0)
    annotations = directory / "val" / "val_annotations.txt"
    for number, line in enumerate(annotations.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise ValueError(
                f"{str(annotations)!r} line {number}: expected 'file wnid [bbox]'; got {line!r}"
            )
        name, wnid = fields[0], fields[1]
        if wnid not in label:
            raise ValueError(
                f"{str(annotations)!r} line {number}: wnid {wnid!r} is not in wnids.txt"
            )
        file = directory / "val" / "images" / name
        if not file.is_file():
            raise FileNotFoundError(
                f"{str(annotations)!r} line {number}: val/images/{name} does not exist"
            )
        if max_per_class is not None and per_class[wnid] >= max_per_class:
            continue
        per_class[wnid] += 1
        val_files.append(file)
        val_labels.append(label[wnid])
    if not val_files:
        raise ValueError(f"{str(annotations)!r} lists no validation image")
    train = (_read_images(train_files, image_size, layout), np.asarray(train_labels, np.int64))
    test = (_read_images(val_files, image_size, layout), np.asarray(val_labels, np.int64))
    return train, test, len(classes), tuple(classes)


def _is_imagenet(directory: Path) -> bool:
    return (directory / "train").is_dir() and not _is_tiny_imagenet(directory)


def _image_folder(split_dir: Path, classes: list[str], max_per_class, split: str, source: str):
    files, labels = [], []
    for i, c in enumerate(classes):
        found = _per_class(_image_files(split_dir / c), max_per_class)
        if not found and split == "train":
            raise FileNotFoundError(f"{source!r}: {split}/{c}/ holds no .JPEG/.jpg/.png image")
        files += found
        labels += [i] * len(found)
    return files, labels


def _load_imagenet(directory: Path, image_size, max_per_class, layout):
    source = str(directory)
    missing = [d for d in ("train", "val") if not (directory / d).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"{source!r}: an ImageNet (ImageFolder) folder needs train/<class>/*.JPEG and "
            f"val/<class>/*.JPEG; missing {', '.join(d + '/' for d in missing)}"
        )
    classes = [d.name for d in _subdirs(directory / "train")]
    if not classes:
        raise FileNotFoundError(f"{source!r}: train/ has no class folders (train/<class>/*.JPEG)")
    val_classes = [d.name for d in _subdirs(directory / "val")]
    if not val_classes:
        raise FileNotFoundError(
            f"{source!r}: val/ has no class folders; the ImageFolder layout needs "
            "val/<class>/*.JPEG (sort the flat validation images into their class folders first)"
        )
    unknown = sorted(set(val_classes) - set(classes))
    if unknown:
        raise ValueError(_missing(f"{source!r}: val/ has classes that train/ lacks", unknown))
    train_files, train_labels = _image_folder(
        directory / "train", classes, max_per_class, "train", source
    )
    val_files, val_labels = _image_folder(directory / "val", classes, max_per_class, "val", source)
    if not val_files:
        raise FileNotFoundError(f"{source!r}: val/<class>/ folders hold no image")
    train = (_read_images(train_files, image_size, layout), np.asarray(train_labels, np.int64))
    test = (_read_images(val_files, image_size, layout), np.asarray(val_labels, np.int64))
    return train, test, len(classes), tuple(classes)


def _is_ucf11(directory: Path) -> bool:
    return any((directory / a).is_dir() for a in UCF11_ACTIONS)


def _sample_indices(n: int, frames: int) -> np.ndarray:
    """``frames`` evenly spaced frame indices: the centre of each of ``frames`` equal segments."""
    return ((np.arange(frames) + 0.5) * n / frames).astype(np.int64)


def _ucf11_clips(directory: Path) -> list[tuple[int, str, Path]]:
    """``(label, group, clip)`` for every clip: a video file or a folder of frames."""
    source = str(directory)
    missing = [a + "/" for a in UCF11_ACTIONS if not (directory / a).is_dir()]
    if missing:
        raise FileNotFoundError(
            _missing(f"{source!r}: a UCF11 folder needs the 11 action folders; missing", missing)
        )
    clips = []
    for label, action in enumerate(UCF11_ACTIONS):
        groups = [g for g in _subdirs(directory / action) if g.name.startswith("v_")]
        if not groups:
            raise FileNotFoundError(f"{source!r}: {action}/ has no v_* group folder")
        found = 0
        for group in groups:
            for entry in sorted(group.iterdir(), key=_natural_key):
                is_video = entry.is_file() and entry.suffix.lower() in VIDEO_EXTENSIONS
                if is_video or (entry.is_dir() and _image_files(entry)):
                    clips.append((label, group.name, entry))
                    found += 1
        if not found:
            raise FileNotFoundError(
                f"{source!r}: {action}/v_*/ holds no clip (a .mpg/.avi video or a folder of "
                ".jpg/.png frames)"
            )
    return clips


def _video_frames(path: Path, convert) -> list[np.ndarray]:
    ffmpeg = _ffmpeg()
    Image = _pil()
    reader = ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        meta = next(reader)
        w, h = meta["size"]
        out = [
            convert(Image.fromarray(np.frombuffer(raw, np.uint8).reshape(h, w, 3)))
            for raw in reader
        ]
    except (OSError, RuntimeError, StopIteration) as exc:
        raise ValueError(f"{str(path)!r} is not a readable video: {exc}") from exc
    finally:
        reader.close()
    return out


def _read_clip(path: Path, frames: int, frame_size, grayscale: bool) -> np.ndarray:
    """One clip as ``(frames, F)`` uint8: sampled frames, resized, flattened."""
    Image = _pil()
    mode = "L" if grayscale else "RGB"
    height, width = frame_size

    def convert(im):
        im = im.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
        return np.asarray(im, dtype=np.uint8).reshape(-1)

    if path.is_dir():
        files = _image_files(path)
        chosen = [files[i] for i in _sample_indices(len(files), frames)]
        seq = [convert(_open_image(f, mode, Image)) for f in chosen]
    else:
        decoded = _video_frames(path, convert)
        if not decoded:
            raise ValueError(f"{str(path)!r}: the video has no frame")
        seq = [decoded[i] for i in _sample_indices(len(decoded), frames)]
    return np.stack(seq)


def _load_ucf11(directory: Path, opts: dict, layout: str, test_fraction: float, seed: int):
    clips = _ucf11_clips(directory)
    max_per_class = opts["max_per_class"]
    if max_per_class is not None:
        kept, count = [], [0] * len(UCF11_ACTIONS)
        for clip in clips:
            if count[clip[0]] < max_per_class:
                kept.append(clip)
                count[clip[0]] += 1
        clips = kept
    frames, frame_size, grayscale = opts["frames"], opts["frame_size"], opts["grayscale"]
    features = frame_size[0] * frame_size[1] * (1 if grayscale else 3)
    data = np.empty((len(clips), frames, features), dtype=np.uint8)
    for i, (_, _, path) in enumerate(clips):
        data[i] = _read_clip(path, frames, frame_size, grayscale)
    labels = np.asarray([c[0] for c in clips], dtype=np.int64)
    images = data[:, None] if layout == "NCHW" else data[..., None]
    if not opts["group_split"]:
        return (images, labels), None
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, (int, float, np.floating))
        or not 0.0 < float(test_fraction) < 1.0
    ):
        raise ValueError(f"test_fraction must be a float in (0, 1); got {test_fraction!r}")
    # Hold out whole v_* groups (same actor and scene) per action: none is in both sets.
    rng = np.random.default_rng(_check_seed(seed))
    test_mask = np.zeros(len(clips), dtype=bool)
    for label, action in enumerate(UCF11_ACTIONS):
        groups = sorted({g for lab, g, _ in clips if lab == label})
        if len(groups) < 2:
            raise ValueError(
                f"group_split=True needs at least 2 v_* groups per action; {action}/ has "
                f"{len(groups)}"
            )
        n_test = min(max(1, int(round(test_fraction * len(groups)))), len(groups) - 1)
        held = set(rng.permutation(groups)[:n_test].tolist())
        test_mask |= np.array([lab == label and g in held for lab, g, _ in clips])
    return (images[~test_mask], labels[~test_mask]), (images[test_mask], labels[test_mask])


def check_options(kind: str, **options) -> dict:
    """Validate ``load_dataset``'s kind-specific options for data set ``kind`` (names, values and
    applicability, as `load_dataset` does) and return them with the defaults filled in."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))}; got {kind!r}")
    unknown = sorted(set(options) - set(_OPTION_KINDS))
    if unknown:
        raise ValueError(
            f"unknown option {unknown[0]!r}; the options are "
            f"{', '.join(map(repr, sorted(_OPTION_KINDS)))}"
        )
    return _check_options(kind, options)


def _check_options(kind: str | None, options: dict) -> dict:
    """Validate the kind-specific keyword options; fill the defaults."""
    given = {k: v for k, v in options.items() if v is not None}
    if kind is not None:
        for name in given:
            if kind not in _OPTION_KINDS[name]:
                raise ValueError(
                    f"{name} applies only to {', '.join(map(repr, _OPTION_KINDS[name]))} data "
                    f"sets; this one is {kind!r}"
                )
    for name in ("image_size", "max_per_class", "frames"):
        if name in given:
            _check_positive_int(given[name], name)
    if "frame_size" in given:
        fs = given["frame_size"]
        if isinstance(fs, (int, np.integer)) and not isinstance(fs, bool):
            fs = (fs, fs)
        if (
            not isinstance(fs, (tuple, list))
            or len(fs) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in fs)
        ):
            raise ValueError(
                f"frame_size must be a positive int or a (height, width) pair of positive ints; "
                f"got {given['frame_size']!r}"
            )
        given["frame_size"] = (int(fs[0]), int(fs[1]))
    for name in ("grayscale", "group_split"):
        if name in given and not isinstance(given[name], bool):
            raise ValueError(f"{name} must be True or False; got {given[name]!r}")
    defaults = {
        "image_size": None,
        "max_per_class": None,
        "frames": UCF11_FRAMES,
        "frame_size": UCF11_FRAME_SIZE,
        "grayscale": True,
        "group_split": False,
    }
    return {**defaults, **given}


def dataset_spec(kind: str, **options) -> dict:
    """The model-facing shape of data set ``kind`` as `load_dataset` would return it, without
    reading any file.

    Parameters
    ----------
    kind : one of `KINDS` except ``"npz"``.
    **options : the kind's `load_dataset` options (``image_size``; ``frames``, ``frame_size``,
        ``grayscale``), validated as there.

    Returns
    -------
    dict
        ``num_classes``, ``in_channels``, ``image_size`` (the keywords of
        ``tedepr.models.get``) and ``input_shape`` (one sample in NCHW order). For ``"ucf11"``
        a sample is ``(1, frames, F)`` — rows are time steps of ``F`` features — and
        ``image_size`` is ``F``, as the zoo's ``lstm`` takes it (``input_size = C·W``).
    """
    known = tuple(k for k in KINDS if k != "npz")
    if kind not in known:
        raise ValueError(f"kind must be one of {', '.join(map(repr, known))}; got {kind!r}")
    opts = check_options(kind, **options)
    if kind == "ucf11":
        h, w = opts["frame_size"]
        features = h * w * (1 if opts["grayscale"] else 3)
        return {
            "num_classes": len(UCF11_ACTIONS),
            "in_channels": 1,
            "image_size": features,
            "input_shape": (1, opts["frames"], features),
        }
    num_classes, channels, side = _SHAPES[kind]
    side = opts["image_size"] or side
    if side is None:
        raise ValueError(
            f"{kind!r} images have no fixed size: give image_size= (the loader resizes to it)"
        )
    return {
        "num_classes": num_classes,
        "in_channels": channels,
        "image_size": side,
        "input_shape": (channels, side, side),
    }


def load_dataset(
    name_or_path: str | os.PathLike,
    *,
    layout: str = "NCHW",
    test_fraction: float = 0.2,
    seed: int = 0,
    kind: str | None = None,
    image_size: int | None = None,
    max_per_class: int | None = None,
    frames: int | None = None,
    frame_size: int | tuple[int, int] | None = None,
    grayscale: bool | None = None,
    group_split: bool | None = None,
) -> Dataset:
    """Load a data set by name (``"mnist10k"``, the embedded digits) or from a local path.

    Recognised paths (the folder itself or, where named, a standard subfolder of it):

    - a folder of MNIST-format IDX files: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``
      and optionally ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each possibly ``.gz``;
      also the ``train-images.idx3-ubyte`` spelling; also inside a ``raw/`` subfolder) — MNIST,
      Fashion-MNIST, ...;
    - a CIFAR-10 python folder (``data_batch_1`` … ``data_batch_5``, ``test_batch``) or CIFAR-100
      python folder (``train``, ``test``; fine labels), or their parent (``cifar-10-batches-py`` /
      ``cifar-100-python`` inside). Only NumPy arrays are unpickled — other objects are refused;
    - an ``.npz`` file with ``images``/``labels`` (split here), or
      ``x_train``/``y_train``/``x_test``/``y_test``, or
      ``train_images``/``train_labels``/``test_images``/``test_labels``;
    - **Tiny-ImageNet** (``tiny-imagenet-200/`` or its parent; recognised by ``wnids.txt``):
      ``train/<wnid>/images/*.JPEG`` and ``val/images/*.JPEG`` labelled by
      ``val/val_annotations.txt`` (``file wnid x0 y0 x1 y1``; boxes ignored). The labelled ``val``
      set is the test set (``test/`` has no labels and is not read). **Labels follow the sorted
      wnids** (``Dataset.classes``), as torchvision's ``ImageFolder`` on ``train/`` — not the
      order of ``wnids.txt``. Images are converted to RGB (a few are grayscale); 64×64 unless
      ``image_size`` is given;
    - **ImageNet** in the ImageFolder layout (recognised by a ``train/`` folder):
      ``train/<class>/*.JPEG`` and ``val/<class>/*.JPEG``; classes are the sorted ``train/``
      folder names (labels 0…999 by ``Dataset.classes``); ``val/`` may lack classes but not add
      any. Only the images directly inside each class folder are read. The whole set is decoded
      into **one uint8 array in memory**: ``N · 3 · S²`` bytes, i.e. for the 1.28 M training
      images 193 GB at S = 224, 15.7 GB at 64, 3.9 GB at 32. Give ``image_size`` (images vary in
      size; without it all must share one size) and, to fit smaller machines, ``max_per_class``;
    - **UCF11** (UCF YouTube Action; the folder with the 11 action folders, or its parent holding
      ``UCF11_updated_mpg/``): ``<action>/v_*/`` group folders, each holding clips — videos
      (``.mpg``, ``.avi``; decoded with imageio-ffmpeg, ``pip install 'tedepr[video]'``) or
      folders of extracted frames (``.jpg``/``.png``, sorted by name with numbers in numeric
      order). Labels: the index in `UCF11_ACTIONS`. Each clip becomes a fixed-length sequence:
      ``frames`` frame indices ``⌊(k + ½)·n/frames⌋`` (the centres of ``frames`` equal segments
      of its ``n`` frames; a short clip repeats frames), each frame converted to grayscale (or RGB
      with ``grayscale=False``), resized to ``frame_size`` (bilinear, no crop) and flattened
      row-major (RGB interleaved) into ``F = h·w·c`` features. A clip is stored as a one-channel
      "image" whose rows are its time steps: ``(N, 1, frames, F)`` in NCHW (``(N, frames, F, 1)``
      in NHWC) — the input of the zoo's ``lstm`` with ``in_channels=1, image_size=F``
      (`dataset_spec`, `Dataset.model_kwargs`). UCF11 has no official split: by default a
      stratified clip split (``test_fraction``, ``seed``); ``group_split=True`` holds out whole
      ``v_*`` groups per action instead, so no actor or scene is in both sets.

    Sources without a test split are split by `train_test_split` (stratified, ``test_fraction``,
    ``seed``).

    Parameters
    ----------
    name_or_path : ``"mnist10k"`` or a path.
    layout : ``"NCHW"`` (default) or ``"NHWC"``.
    test_fraction, seed : the split of sources without a test set.
    kind : one of `KINDS`, optional
        Insist on one kind: a path holding another is an error naming what the kind needs.
    image_size : int, optional (Tiny-ImageNet, ImageNet)
        Resize the shorter side to it (bilinear, antialiased) and crop the centre square. Large
        JPEGs are first decoded at a reduced scale (libjpeg's 1/2, 1/4, 1/8, keeping both sides
        >= image_size), which is much faster and differs from a full-size decode by resampling
        noise only.
    max_per_class : int, optional (Tiny-ImageNet, ImageNet, UCF11)
        Keep at most this many samples of each class in each split: the first in sorted file
        order (Tiny-ImageNet's val: annotation order); for UCF11 before the split.
    frames : int, optional (UCF11; default `UCF11_FRAMES` = 6, as Yang et al. 2017's TT-LSTM)
    frame_size : int or (height, width), optional (UCF11; default `UCF11_FRAME_SIZE` = 32×32)
    grayscale : bool, optional (UCF11; default True)
    group_split : bool, optional (UCF11; default False)

    The kind-specific options are errors for kinds they do not apply to. Reading image files needs
    Pillow (``pip install 'tedepr[data]'``).

    Returns
    -------
    Dataset
        ``uint8`` images in ``layout`` (``"NCHW"`` or ``"NHWC"``), ``int64`` labels.

    Raises
    ------
    FileNotFoundError
        A missing path, or a folder of a known kind missing some of its parts (named).
    ValueError
        An unrecognised folder or file, malformed contents, or a bad option value.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(map(repr, LAYOUTS))}; got {layout!r}")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be None or one of {', '.join(map(repr, KINDS))}; got {kind!r}")
    options = {
        "image_size": image_size,
        "max_per_class": max_per_class,
        "frames": frames,
        "frame_size": frame_size,
        "grayscale": grayscale,
        "group_split": group_split,
    }
    _check_options(None, options)  # value checks first, before any file is read
    classes = None
    in_layout = False  # True when the loader already wrote ``layout`` (image folders, UCF11)
    num_classes = None
    if isinstance(name_or_path, str) and name_or_path in _EMBEDDED:
        if kind not in (None, "mnist10k"):
            raise ValueError(f"name_or_path='mnist10k' is the embedded digits, not kind={kind!r}")
        _check_options("mnist10k", options)
        images, labels = load_mnist10k()
        name, source, train, test, num_classes = "mnist10k", "embedded", (images, labels), None, 10
    else:
        if not isinstance(name_or_path, (str, os.PathLike)):
            raise TypeError(
                f"name_or_path must be a str or path; got {type(name_or_path).__name__}"
            )
        path = Path(name_or_path).expanduser()
        if not path.exists():
            raise FileNotFoundError(
                f"name_or_path must be one of {', '.join(map(repr, _EMBEDDED))} or an existing "
                "path (MNIST IDX folder, CIFAR-10/100 python folder, .npz file, Tiny-ImageNet, "
                f"ImageNet or UCF11 folder); {str(name_or_path)!r} is neither"
            )
        source = str(path)
        if path.is_file():
            if path.suffix != ".npz" or kind not in (None, "npz"):
                raise ValueError(
                    f"name_or_path: file {source!r} is not a supported format (a data file must "
                    "be .npz; IDX, CIFAR, Tiny-ImageNet, ImageNet and UCF11 data are given by "
                    "their folder)"
                )
            _check_options("npz", options)
            name = "npz"
            train, test = _load_npz(path)
        else:
            detectors = {
                "mnist": _is_mnist_dir,
                "cifar10": lambda d: _cifar_kind(d) == "cifar10",
                "cifar100": lambda d: _cifar_kind(d) == "cifar100",
                "tiny-imagenet": _is_tiny_imagenet,
                "ucf11": _is_ucf11,
                "imagenet": _is_imagenet,
            }
            if kind == "npz":
                raise ValueError(f"kind='npz' needs an .npz file; {source!r} is a folder")
            if kind == "mnist10k":
                raise ValueError(
                    "kind='mnist10k' is the embedded data set: name_or_path='mnist10k'"
                )
            wanted = list(detectors) if kind is None else [kind]
            subfolders = (
                "raw",
                "cifar-10-batches-py",
                "cifar-100-python",
                "tiny-imagenet-200",
                "UCF11_updated_mpg",
                "UCF11",
            )
            found = next(
                (
                    (k, directory)
                    for directory in [path, *(path / s for s in subfolders)]
                    if directory.is_dir()
                    for k in wanted
                    if detectors[k](directory)
                ),
                None,
            )
            if found is None and kind is None:
                raise ValueError(
                    f"name_or_path: folder {source!r} holds no recognised data set (expected "
                    "MNIST IDX files train-images-idx3-ubyte[.gz] ..., CIFAR-10 data_batch_1 ... "
                    "test_batch, CIFAR-100 train/test, Tiny-ImageNet wnids.txt + train/ + val/, "
                    "ImageNet train/<class>/ + val/<class>/, or the 11 UCF11 action folders)"
                )
            # kind given but not recognised: its own loader names what is missing
            found_kind, directory = found if found is not None else (kind, path)
            opts = _check_options(found_kind, options)
            name = "mnist-idx" if found_kind == "mnist" else found_kind
            if found_kind == "mnist":
                train, test = _load_mnist_idx(directory)
            elif found_kind in ("cifar10", "cifar100"):
                if _cifar_kind(directory) != found_kind:
                    needs = (
                        "data_batch_1 ... data_batch_5 and test_batch"
                        if found_kind == "cifar10"
                        else "train and test"
                    )
                    raise FileNotFoundError(
                        f"{str(directory)!r}: a {found_kind} python folder needs {needs}"
                    )
                train, test, num_classes = _load_cifar(directory, found_kind)
            elif found_kind == "tiny-imagenet":
                train, test, num_classes, classes = _load_tiny_imagenet(
                    directory, opts["image_size"], opts["max_per_class"], layout
                )
                in_layout = True
            elif found_kind == "imagenet":
                train, test, num_classes, classes = _load_imagenet(
                    directory, opts["image_size"], opts["max_per_class"], layout
                )
                in_layout = True
            else:
                train, test = _load_ucf11(directory, opts, layout, test_fraction, seed)
                num_classes, classes, in_layout = len(UCF11_ACTIONS), UCF11_ACTIONS, True
    # Validate the layout before splitting, so that a malformed file is named as such.
    x_tr, y_tr = _check_pair(*train)
    if not in_layout:
        x_tr = _to_nchw(x_tr, source)
    if test is None:
        (x_tr, y_tr), (x_te, y_te) = train_test_split(
            x_tr, y_tr, test_fraction=test_fraction, seed=seed
        )
    else:
        x_te, y_te = _check_pair(*test)
        if not in_layout:
            x_te = _to_nchw(x_te, source)
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise ValueError(
            f"{source}: train images {x_tr.shape[1:]} and test images {x_te.shape[1:]} differ"
        )
    for x in (x_tr, x_te):
        if x.dtype != np.uint8:
            raise ValueError(f"{source}: images must be uint8 (0-255); got {x.dtype}")
    labels = [np.asarray(y) for y in (y_tr, y_te)]
    for y in labels:
        if not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
            raise ValueError(f"{source}: labels must be non-negative integers; got dtype {y.dtype}")
    if num_classes is None:
        num_classes = int(max(int(y.max()) for y in labels if y.size)) + 1
    if layout == "NHWC" and not in_layout:
        x_tr, x_te = x_tr.transpose(0, 2, 3, 1), x_te.transpose(0, 2, 3, 1)
    logger.info(
        "loaded %s from %s: %d train, %d test, %d classes",
        name,
        source,
        len(y_tr),
        len(y_te),
        num_classes,
    )
    return Dataset(
        name=name,
        train_images=np.ascontiguousarray(x_tr),
        train_labels=labels[0].astype(np.int64),
        test_images=np.ascontiguousarray(x_te),
        test_labels=labels[1].astype(np.int64),
        num_classes=num_classes,
        layout=layout,
        source=source,
        classes=classes,
    )
