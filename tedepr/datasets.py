"""Data sets in NumPy: the embedded MNIST digits, standard on-disk formats, splits and batching.

Backend-neutral: this module imports only NumPy and the standard library, so the torch and JAX
backends (and the CLI) share one loader, one split and one batch order.

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
    "Dataset",
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


def load_dataset(
    name_or_path: str | os.PathLike,
    *,
    layout: str = "NCHW",
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """Load a data set by name (``"mnist10k"``, the embedded digits) or from a local path.

    Recognised paths:

    - a folder of MNIST-format IDX files: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``
      and optionally ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each possibly ``.gz``;
      also the ``train-images.idx3-ubyte`` spelling; also inside a ``raw/`` subfolder) — MNIST,
      Fashion-MNIST, ...;
    - a CIFAR-10 python folder (``data_batch_1`` … ``data_batch_5``, ``test_batch``) or CIFAR-100
      python folder (``train``, ``test``; fine labels), or their parent (``cifar-10-batches-py`` /
      ``cifar-100-python`` inside). Only NumPy arrays are unpickled — other objects are refused;
    - an ``.npz`` file with ``images``/``labels`` (split here), or
      ``x_train``/``y_train``/``x_test``/``y_test``, or
      ``train_images``/``train_labels``/``test_images``/``test_labels``.

    Sources without a test split are split by `train_test_split` (stratified, ``test_fraction``,
    ``seed``).

    Returns
    -------
    Dataset
        ``uint8`` images in ``layout`` (``"NCHW"`` or ``"NHWC"``), ``int64`` labels.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(map(repr, LAYOUTS))}; got {layout!r}")
    if isinstance(name_or_path, str) and name_or_path in _EMBEDDED:
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
                "path (MNIST IDX folder, CIFAR-10/100 python folder, .npz file); "
                f"{str(name_or_path)!r} is neither"
            )
        source = str(path)
        num_classes = None
        if path.is_file():
            if path.suffix != ".npz":
                raise ValueError(
                    f"name_or_path: file {source!r} is not a supported format (a data file must "
                    "be .npz; "
                    "IDX and CIFAR data are given by their folder)"
                )
            name = "npz"
            train, test = _load_npz(path)
        else:
            candidates = [
                path,
                path / "raw",
                path / "cifar-10-batches-py",
                path / "cifar-100-python",
            ]
            for directory in candidates:
                if _is_mnist_dir(directory):
                    name = "mnist-idx"
                    train, test = _load_mnist_idx(directory)
                    break
                kind = _cifar_kind(directory)
                if kind is not None:
                    name = kind
                    train, test, num_classes = _load_cifar(directory, kind)
                    break
            else:
                raise ValueError(
                    f"name_or_path: folder {source!r} holds no recognised data set (expected "
                    "MNIST IDX files train-images-idx3-ubyte[.gz] ..., CIFAR-10 data_batch_1 ... "
                    "test_batch, or CIFAR-100 "
                    "train/test)"
                )
    # Validate the layout before splitting, so that a malformed file is named as such.
    x_tr, y_tr = _check_pair(*train)
    x_tr = _to_nchw(x_tr, source)
    if test is None:
        (x_tr, y_tr), (x_te, y_te) = train_test_split(
            x_tr, y_tr, test_fraction=test_fraction, seed=seed
        )
    else:
        x_te, y_te = _check_pair(*test)
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
    if layout == "NHWC":
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
    )
