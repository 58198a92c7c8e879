"""NumPy-only tests: data loading, splits, normalisation and batching (tedepr.datasets); atomic
files (tedepr.checkpoint); the backend-neutral model registry front (tedepr.models)."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tedepr.datasets as D
from tedepr import checkpoint
from tedepr import models as model_registry

REPO = Path(__file__).resolve().parents[1]
MNIST10K_COUNTS = (1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978)  # from data/README.md


# ---------- embedded digits


def test_load_mnist10k_shapes_counts_and_checksum():
    images, labels = D.load_mnist10k()
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert tuple(np.bincount(labels)) == MNIST10K_COUNTS
    # ordered by class, as the README says
    assert np.all(np.diff(labels.astype(int)) >= 0)
    assert images.max() == 255 and images.min() == 0


def test_packaged_copy_is_the_shared_file():
    shared = REPO.parent / "shared" / "data" / "mnist10k.npz"
    packaged = REPO / "tedepr" / "data" / "mnist10k.npz"
    assert (REPO / "tedepr" / "data" / "README.md").read_text().count("MIT licence") == 1
    if shared.exists():
        assert shared.read_bytes() == packaged.read_bytes()


def test_corrupted_embedded_file_is_refused(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    raw = bytearray((REPO / "tedepr" / "data" / "mnist10k.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / "data" / "mnist10k.npz").write_bytes(bytes(raw))
    monkeypatch.setattr(D.resources, "files", lambda package: tmp_path)
    with pytest.raises(RuntimeError, match="corrupted: sha256"):
        D.load_mnist10k()


def test_missing_embedded_file_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(D.resources, "files", lambda package: tmp_path)
    with pytest.raises(FileNotFoundError, match="embedded data set is missing"):
        D.load_mnist10k()


def test_core_imports_no_framework():
    code = (
        "import sys; import tedepr.datasets, tedepr.checkpoint, tedepr.models; "
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


# ---------- split


def test_stratified_split_is_exact_disjoint_shuffled_and_seeded():
    _, labels = D.load_mnist10k()
    ids = np.arange(labels.size)
    (tr_ids, tr_y), (te_ids, te_y) = D.train_test_split(ids, labels, 0.2, seed=0)
    # every sample lands in exactly one set, with its own label
    assert np.array_equal(np.sort(np.concatenate([tr_ids, te_ids])), ids)
    assert np.array_equal(labels[tr_ids], tr_y) and np.array_equal(labels[te_ids], te_y)
    # each class gives round(0.2 * count) to the test set
    expected = [round(0.2 * c) for c in MNIST10K_COUNTS]
    assert list(np.bincount(te_y, minlength=10)) == expected
    # shuffled: the class-ordered input does not survive
    assert len(np.unique(te_y[:50])) > 5 and len(np.unique(tr_y[:50])) > 5
    (tr2, _), _ = D.train_test_split(ids, labels, 0.2, seed=0)
    (tr3, _), _ = D.train_test_split(ids, labels, 0.2, seed=1)
    assert np.array_equal(tr_ids, tr2) and not np.array_equal(tr_ids, tr3)


def test_unstratified_split_sizes_and_inputs_untouched():
    x = np.arange(30).reshape(10, 3)
    y = np.arange(10) % 2
    x0, y0 = x.copy(), y.copy()
    (xtr, ytr), (xte, yte) = D.train_test_split(x, y, 0.3, seed=4, stratify=False)
    assert xtr.shape == (7, 3) and xte.shape == (3, 3)
    # rows stay whole and keep their labels
    assert np.array_equal(xtr[:, 1], xtr[:, 0] + 1) and np.array_equal(xte[:, 2], xte[:, 0] + 2)
    assert np.array_equal(y[xtr[:, 0] // 3], ytr) and np.array_equal(y[xte[:, 0] // 3], yte)
    assert sorted(np.concatenate([xtr[:, 0], xte[:, 0]]) // 3) == list(range(10))
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1, "0.2", True])
def test_split_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        D.train_test_split(np.zeros((10, 2)), np.arange(10) % 2, fraction)


def test_split_rejects_mismatched_lengths_and_bad_seed():
    with pytest.raises(ValueError, match="same length"):
        D.train_test_split(np.zeros((10, 2)), np.zeros(9, dtype=int))
    with pytest.raises(ValueError, match="seed"):
        D.train_test_split(np.zeros((10, 2)), np.zeros(10, dtype=int), seed=-1)


# ---------- normalize


def test_normalize_uint8_matches_formula():
    x = np.array([[0, 255], [128, 1]], dtype=np.uint8)
    out = D.normalize(x, dtype=np.float64)
    expected = (x.astype(np.float64) / 255.0 - 0.1307) / 0.3081
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=0)
    assert out.dtype == np.float64
    assert D.normalize(x).dtype == np.float32


def test_normalize_floats_are_taken_as_unit_scale_and_per_channel_stats():
    x = np.full((2, 3, 2, 2), 0.5)
    out = D.normalize(
        x, mean=(0.1, 0.2, 0.3), std=(1.0, 2.0, 4.0), channel_axis=1, dtype=np.float64
    )
    np.testing.assert_allclose(out[0, :, 0, 0], [0.4, 0.15, 0.05], rtol=1e-12)
    nhwc = np.moveaxis(x, 1, -1)
    out2 = D.normalize(nhwc, mean=(0.1, 0.2, 0.3), std=(1, 2, 4), channel_axis=-1, dtype=np.float64)
    np.testing.assert_allclose(np.moveaxis(out2, -1, 1), out, rtol=1e-12)


def test_normalized_mnist10k_is_standardised():
    images, _ = D.load_mnist10k()
    z = D.normalize(images)
    assert abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 1.0) < 0.01
    mean, std = D.channel_stats(images)
    assert abs(float(mean) - D.MNIST_MEAN) < 0.001 and abs(float(std) - D.MNIST_STD) < 0.001


def test_normalize_errors():
    with pytest.raises(ValueError, match="uint8"):
        D.normalize(np.zeros(3, dtype=np.int16))
    with pytest.raises(ValueError, match="std"):
        D.normalize(np.zeros(3, dtype=np.uint8), std=0.0)
    with pytest.raises(ValueError, match="channel_axis"):
        D.normalize(np.zeros((1, 3, 2, 2), dtype=np.uint8), mean=(0.1, 0.2, 0.3))
    with pytest.raises(ValueError, match="channels"):
        D.normalize(np.zeros((1, 3, 2, 2), dtype=np.uint8), mean=(0.1, 0.2), channel_axis=1)


# ---------- batching


def test_batch_indices_depend_only_on_seed_and_epoch():
    a = D.batch_indices(103, 10, shuffle=True, seed=3, epoch=2)
    b = D.batch_indices(103, 10, shuffle=True, seed=3, epoch=2)
    c = D.batch_indices(103, 10, shuffle=True, seed=3, epoch=3)
    assert [len(i) for i in a] == [10] * 10 + [3]
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert not np.array_equal(np.concatenate(a), np.concatenate(c))
    assert np.array_equal(np.sort(np.concatenate(a)), np.arange(103))
    plain = D.batch_indices(103, 10, drop_last=True)
    assert len(plain) == 10 and np.array_equal(np.concatenate(plain), np.arange(100))


def test_batches_pairs_rows_with_labels():
    x = np.arange(20).reshape(10, 2)
    y = np.arange(10)
    seen = []
    for xb, yb in D.batches(x, y, 4, shuffle=True, seed=1):
        assert np.array_equal(xb[:, 0] // 2, yb)
        seen.extend(yb.tolist())
    assert sorted(seen) == list(range(10))


@pytest.mark.parametrize(
    "kw", [{"batch_size": 0}, {"batch_size": 2.5}, {"seed": -2}, {"epoch": -1}]
)
def test_batch_indices_errors(kw):
    args = {"batch_size": 4, **kw}
    with pytest.raises(ValueError, match=next(iter(kw))):
        D.batch_indices(10, args.pop("batch_size"), **args)


# ---------- on-disk formats


def write_idx(path: Path, array: np.ndarray, code: int = 0x08) -> None:
    dtype = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[code]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    raw = header + np.asarray(array, dtype=dtype).tobytes()
    if path.suffix == ".gz":
        raw = gzip.compress(raw)
    path.write_bytes(raw)


def tiny_images(n: int, h: int = 5, w: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w), dtype=np.uint8)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path, gz):
    a = tiny_images(3)
    p = tmp_path / ("a.idx3-ubyte" + (".gz" if gz else ""))
    write_idx(p, a)
    out = D.read_idx(p)
    assert out.dtype == np.uint8 and np.array_equal(out, a)
    ints = np.array([[1, -2], [70000, 3]], dtype=np.int32)
    write_idx(tmp_path / "i.idx", ints, code=0x0C)
    out = D.read_idx(tmp_path / "i.idx")
    assert out.dtype == np.int32 and out.dtype.isnative and np.array_equal(out, ints)


def test_read_idx_errors(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01")
    with pytest.raises(ValueError, match="not an IDX file"):
        D.read_idx(tmp_path / "bad")
    write_idx(tmp_path / "ok", tiny_images(2))
    (tmp_path / "short").write_bytes((tmp_path / "ok").read_bytes()[:-1])
    with pytest.raises(ValueError, match="header says shape"):
        D.read_idx(tmp_path / "short")


def test_load_mnist_idx_folder_with_test_split(tmp_path):
    tr, te = tiny_images(6, 28, 28, 1), tiny_images(4, 28, 28, 2)
    ytr, yte = np.array([0, 1, 2, 9, 3, 3]), np.array([5, 6, 7, 8])
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", tr)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", ytr)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", te)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", yte)
    ds = D.load_dataset(tmp_path)
    assert ds.name == "mnist-idx" and ds.num_classes == 10 and ds.layout == "NCHW"
    assert ds.train_images.shape == (6, 1, 28, 28) and ds.train_images.dtype == np.uint8
    assert np.array_equal(ds.train_images[:, 0], tr) and np.array_equal(ds.test_images[:, 0], te)
    assert ds.train_labels.dtype == np.int64 and np.array_equal(ds.train_labels, ytr)
    assert np.array_equal(ds.test_labels, yte)
    assert ds.in_channels == 1 and ds.image_hw == (28, 28)
    nhwc = D.load_dataset(str(tmp_path), layout="NHWC")
    assert nhwc.train_images.shape == (6, 28, 28, 1) and nhwc.in_channels == 1
    assert np.array_equal(nhwc.train_images[..., 0], tr)


def test_load_mnist_idx_kaggle_names_in_raw_folder_are_split(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    images = tiny_images(20, 6, 6, 3)
    labels = np.repeat(np.arange(4), 5)
    write_idx(raw / "train-images.idx3-ubyte", images)
    write_idx(raw / "train-labels.idx1-ubyte", labels)
    ds = D.load_dataset(tmp_path, test_fraction=0.2, seed=0)
    assert len(ds.train_labels) == 16 and len(ds.test_labels) == 4
    assert sorted(ds.test_labels.tolist()) == [0, 1, 2, 3]  # stratified: one per class
    # the split keeps images with their labels
    for img, lab in zip(ds.test_images[:, 0], ds.test_labels, strict=True):
        k = next(i for i in range(20) if np.array_equal(images[i], img))
        assert labels[k] == lab


def test_load_mnist_idx_needs_both_test_files(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", tiny_images(4))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(4))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", tiny_images(2))
    with pytest.raises(FileNotFoundError, match="t10k"):
        D.load_dataset(tmp_path)


def cifar_rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)


def write_pickle(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def test_load_cifar10_folder_and_parent(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    b1, b2, t = cifar_rows(3, 0), cifar_rows(2, 1), cifar_rows(2, 2)
    write_pickle(folder / "data_batch_1", {b"batch_label": b"x", b"data": b1, b"labels": [0, 1, 2]})
    write_pickle(folder / "data_batch_2", {b"data": b2, b"labels": [9, 3]})
    write_pickle(folder / "test_batch", {"data": t, "labels": [4, 5]})  # str keys also accepted
    for where in (folder, tmp_path):
        ds = D.load_dataset(where)
        assert ds.name == "cifar10" and ds.num_classes == 10
        assert ds.train_images.shape == (5, 3, 32, 32) and ds.test_images.shape == (2, 3, 32, 32)
        assert ds.train_labels.tolist() == [0, 1, 2, 9, 3] and ds.test_labels.tolist() == [4, 5]
    # row layout: 1024 red values, 1024 green, 1024 blue, each row-major 32x32
    n, c, y, x = 1, 2, 5, 7
    assert ds.train_images[n, c, y, x] == b1[n, c * 1024 + y * 32 + x]
    nhwc = D.load_dataset(folder, layout="NHWC")
    assert nhwc.train_images[n, y, x, c] == b1[n, c * 1024 + y * 32 + x]
    assert nhwc.in_channels == 3 and nhwc.image_hw == (32, 32)


def test_load_cifar100_folder_uses_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    write_pickle(
        folder / "train",
        {b"data": cifar_rows(3, 0), b"fine_labels": [99, 0, 42], b"coarse_labels": [19, 0, 3]},
    )
    write_pickle(
        folder / "test", {b"data": cifar_rows(1, 1), b"fine_labels": [7], b"coarse_labels": [1]}
    )
    ds = D.load_dataset(tmp_path)
    assert ds.name == "cifar100" and ds.num_classes == 100
    assert ds.train_labels.tolist() == [99, 0, 42] and ds.test_labels.tolist() == [7]


def test_cifar_pickle_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    write_pickle(tmp_path / "data_batch_1", {b"data": Evil(), b"labels": [0]})
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        D.load_dataset(tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_cifar_batch_with_wrong_keys_or_shape(tmp_path):
    write_pickle(tmp_path / "data_batch_1", {b"data": cifar_rows(2, 0)})
    with pytest.raises(ValueError, match="'labels'"):
        D.load_dataset(tmp_path)
    write_pickle(
        tmp_path / "data_batch_1", {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}
    )
    with pytest.raises(ValueError, match="3072"):
        D.load_dataset(tmp_path)


def test_load_npz_variants(tmp_path):
    imgs = tiny_images(10, 8, 8)
    labels = np.arange(10) % 2
    np.savez(tmp_path / "a.npz", images=imgs, labels=labels)
    ds = D.load_dataset(tmp_path / "a.npz", test_fraction=0.2)
    assert ds.name == "npz" and len(ds.test_labels) == 2 and ds.num_classes == 2
    assert ds.train_images.shape == (8, 1, 8, 8)

    color = np.random.default_rng(0).integers(0, 256, size=(4, 8, 8, 3), dtype=np.uint8)
    np.savez(
        tmp_path / "b.npz",
        x_train=color,
        y_train=np.arange(4),
        x_test=color[:1],
        y_test=np.array([2]),
    )
    ds = D.load_dataset(tmp_path / "b.npz")
    assert ds.train_images.shape == (4, 3, 8, 8)
    assert np.array_equal(ds.train_images, color.transpose(0, 3, 1, 2))
    assert ds.num_classes == 4

    np.savez(
        tmp_path / "c.npz",
        train_images=color.transpose(0, 3, 1, 2),
        train_labels=np.arange(4),
        test_images=color[:2].transpose(0, 3, 1, 2),
        test_labels=np.arange(2),
    )
    assert np.array_equal(D.load_dataset(tmp_path / "c.npz").train_images, ds.train_images)


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "keys.npz", pixels=np.zeros((2, 4, 4), np.uint8), y=np.zeros(2))
    with pytest.raises(ValueError, match="x_train"):
        D.load_dataset(tmp_path / "keys.npz")
    np.savez(
        tmp_path / "ambiguous.npz", images=np.zeros((4, 3, 5, 3), np.uint8), labels=np.arange(4)
    )
    with pytest.raises(ValueError, match="NCHW or NHWC"):
        D.load_dataset(tmp_path / "ambiguous.npz")
    np.savez(tmp_path / "float.npz", images=np.zeros((10, 4, 4)), labels=np.arange(10) % 2)
    with pytest.raises(ValueError, match="uint8"):
        D.load_dataset(tmp_path / "float.npz")


def test_load_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="name_or_path must be one of 'mnist10k'"):
        D.load_dataset("cifar10")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="not a supported format"):
        D.load_dataset(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="no recognised data set"):
        D.load_dataset(tmp_path)
    with pytest.raises(ValueError, match="layout"):
        D.load_dataset("mnist10k", layout="CHW")
    with pytest.raises(TypeError, match="name_or_path"):
        D.load_dataset(3)


def test_load_dataset_mnist10k():
    ds = D.load_dataset("mnist10k")
    assert ds.source == "embedded" and ds.num_classes == 10
    assert ds.train_images.shape == (8000, 1, 28, 28) and ds.test_images.shape == (2000, 1, 28, 28)
    assert list(np.bincount(ds.test_labels)) == [round(0.2 * c) for c in MNIST10K_COUNTS]


# ---------- atomic files


def test_atomic_write_bytes_and_replace(tmp_path):
    p = tmp_path / "f.bin"
    checkpoint.atomic_write_bytes(p, b"one")
    checkpoint.atomic_write_bytes(p, b"two")
    assert p.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["f.bin"]
    umask = os.umask(0)
    os.umask(umask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~umask


def test_failed_write_keeps_old_file_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "ckpt"
    checkpoint.atomic_write_bytes(p, b"good")

    def writer(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        checkpoint.atomic_save(writer, p)
    assert p.read_bytes() == b"good" and os.listdir(tmp_path) == ["ckpt"]


def test_atomic_write_json(tmp_path):
    p = tmp_path / "h.json"
    obj = {"epoch": 1, "loss": 0.5, "acc": None, "name": "ünï"}
    checkpoint.atomic_write_json(p, obj)
    assert json.loads(p.read_text(encoding="utf-8")) == obj
    with pytest.raises(TypeError):
        checkpoint.atomic_write_json(p, {"bad": object()})
    assert json.loads(p.read_text(encoding="utf-8")) == obj


def test_atomic_write_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpoint.atomic_write_bytes(tmp_path / "missing" / "f", b"x")
    with pytest.raises(TypeError, match="bytes"):
        checkpoint.atomic_write_bytes(tmp_path / "f", "text")
    with pytest.raises(TypeError, match="writer"):
        checkpoint.atomic_save(b"x", tmp_path / "f")


# ---------- model registry front


def test_models_front_rejects_unknown_backend():
    with pytest.raises(ValueError, match="backend must be one of 'torch', 'jax'"):
        model_registry.get("lenet300_100", backend="tensorflow")
    with pytest.raises(ValueError, match="backend"):
        model_registry.available("numpy")


def test_models_front_names_a_missing_framework(monkeypatch):
    def missing(name):
        raise ModuleNotFoundError("No module named 'jax'", name="jax")

    monkeypatch.setattr(model_registry.importlib, "import_module", missing)
    with pytest.raises(ImportError, match=r"pip install 'tedepr\[jax\]'"):
        model_registry.get("lenet300_100", backend="jax")
