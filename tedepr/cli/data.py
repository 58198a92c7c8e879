"""The data of a study: load by name (embedded digits) or from ``--data PATH``, normalise, subset."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..datasets import MNIST_MEAN, MNIST_STD, channel_stats, load_dataset, normalize

__all__ = ["DATASETS", "prepare_data"]

#: dataset name -> (what ``--data`` must hold, the loader kinds `load_dataset` may report for it)
DATASETS = {
    "mnist10k": ("nothing (embedded)", ("mnist10k",)),
    "mnist": ("a folder of MNIST IDX files", ("mnist-idx", "npz")),
    "cifar10": ("a CIFAR-10 python folder (data_batch_1 … test_batch)", ("cifar10", "npz")),
    "cifar100": ("a CIFAR-100 python folder (train, test)", ("cifar100", "npz")),
    "tiny-imagenet": ("a tiny-imagenet-200 folder", ("tiny-imagenet", "npz")),
    "imagenet": ("an ImageFolder tree (train/<class>/…, val/<class>/…)", ("imagenet", "npz")),
    "ucf11": ("the UCF11 action folders (videos or extracted frames)", ("ucf11", "npz")),
}


def prepare_data(
    dataset: str,
    data: str | None = None,
    subset: int | None = None,
    dataset_options: dict | None = None,
) -> dict:
    """``{"train": (x, y), "test": (x, y), "model_kwargs": {...}}``: float32 normalised inputs,
    int64 labels, and the zoo keywords the data imply (classes, channels, image size).
    ``dataset_options`` go to `tedepr.datasets.load_dataset` (e.g. ``image_size``, ``frames``)."""
    frozen = tuple(sorted((k, _freeze(v)) for k, v in (dataset_options or {}).items()))
    return _prepare(dataset, data, subset, frozen)


def _freeze(v):
    return tuple(v) if isinstance(v, list) else v


@lru_cache(maxsize=4)
def _prepare(dataset: str, data: str | None, subset: int | None, options: tuple) -> dict:
    options = dict(options)
    if dataset not in DATASETS:
        raise ValueError(f"--dataset must be one of {', '.join(DATASETS)}; got {dataset!r}")
    needs, kinds = DATASETS[dataset]
    if dataset == "mnist10k":
        if data is not None:
            raise ValueError(
                "--data: the mnist10k dataset is embedded; drop --data (or pick --dataset)"
            )
        ds = load_dataset("mnist10k", **options)
    else:
        if data is None:
            raise ValueError(f"--data: --dataset {dataset} needs --data PATH ({needs})")
        try:
            ds = load_dataset(data, **options)
        except ImportError as exc:
            raise ValueError(f"--dataset {dataset}: {exc}") from exc
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(f"--data: {exc}") from exc
        if ds.name not in kinds:
            raise ValueError(
                f"--data: {data!r} holds a {ds.name} data set, not {dataset} ({needs})"
            )
    xtr, ytr, xte, yte = ds.train_images, ds.train_labels, ds.test_images, ds.test_labels
    if subset is not None:
        xtr, ytr = xtr[:subset], ytr[:subset]
        n_test = max(1, subset // 4)
        xte, yte = xte[:n_test], yte[:n_test]
    if dataset in ("mnist10k", "mnist"):
        mean, std, axis = MNIST_MEAN, MNIST_STD, None
    else:
        mean, std = channel_stats(xtr, channel_axis=1)
        axis = 1
    xtr = normalize(xtr, mean, std, channel_axis=axis)
    xte = normalize(xte, mean, std, channel_axis=axis)
    model_kwargs = dict(ds.model_kwargs)
    return {
        "train": (xtr, np.asarray(ytr)),
        "test": (xte, np.asarray(yte)),
        "model_kwargs": model_kwargs,
        "name": ds.name,
        "source": ds.source,
    }
