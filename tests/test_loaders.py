"""Image-folder and video loaders of tedepr.datasets: Tiny-ImageNet, ImageNet (ImageFolder) and
UCF11 (frame folders and videos). Every test writes a tiny copy of the on-disk layout with Pillow
(8x8 images) and loads it back."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import tedepr.datasets as D

Image = pytest.importorskip("PIL.Image", reason="the image-folder loaders need Pillow")


def save(path: Path, value, size=(8, 8), mode="RGB") -> None:
    """A solid image of ``value`` (an int or an RGB triple), ``size`` = (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)


# ---------- Tiny-ImageNet

WNIDS = ("n03444034", "n01443537", "n02124075")  # wnids.txt order: not sorted
COLOURS = {"n01443537": (250, 0, 0), "n02124075": (0, 250, 0), "n03444034": (0, 0, 250)}


def write_tiny_imagenet(root: Path, per_class: int = 3, val_per_class: int = 2) -> Path:
    top = root / "tiny-imagenet-200"
    top.mkdir(parents=True)
    (top / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    for w in WNIDS:
        for i in range(per_class):
            save(top / "train" / w / "images" / f"{w}_{i}.JPEG", COLOURS[w])
        (top / "train" / w / f"{w}_boxes.txt").write_text("")  # present in the real set
    lines, k = [], 0
    for _ in range(val_per_class):
        for w in WNIDS:
            save(top / "val" / "images" / f"val_{k}.JPEG", COLOURS[w])
            lines.append(f"val_{k}.JPEG\t{w}\t0\t0\t7\t7")
            k += 1
    (top / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    save(top / "test" / "images" / "test_0.JPEG", (9, 9, 9))  # unlabelled: never read
    return top


def dominant_channel(images: np.ndarray) -> np.ndarray:
    """The channel holding the colour of each NCHW image (JPEG is lossy: compare the means)."""
    return images.reshape(images.shape[0], 3, -1).mean(axis=2).argmax(axis=1)


def test_tiny_imagenet_shapes_labels_and_classes(tmp_path):
    top = write_tiny_imagenet(tmp_path)
    for where in (tmp_path, top):
        ds = D.load_dataset(where)
        assert ds.name == "tiny-imagenet" and ds.num_classes == 3
        assert ds.classes == tuple(sorted(WNIDS))  # labels by sorted wnids
        assert ds.train_images.shape == (9, 3, 8, 8) and ds.train_images.dtype == np.uint8
        assert ds.test_images.shape == (6, 3, 8, 8)
        assert ds.train_labels.dtype == np.int64
    # sorted wnids: n01443537 (red) = 0, n02124075 (green) = 1, n03444034 (blue) = 2
    assert ds.train_labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert np.array_equal(dominant_channel(ds.train_images), ds.train_labels)
    assert ds.test_labels.tolist() == [2, 0, 1, 2, 0, 1]  # annotation order, wnids.txt cycle
    assert np.array_equal(dominant_channel(ds.test_images), ds.test_labels)
    assert ds.model_kwargs == {"num_classes": 3, "in_channels": 3, "image_size": 8}
    nhwc = D.load_dataset(top, layout="NHWC")
    assert nhwc.train_images.shape == (9, 8, 8, 3)
    assert np.array_equal(nhwc.train_images, ds.train_images.transpose(0, 2, 3, 1))


def test_tiny_imagenet_resize_and_max_per_class(tmp_path):
    top = write_tiny_imagenet(tmp_path)
    ds = D.load_dataset(top, image_size=4, max_per_class=1, kind="tiny-imagenet")
    assert ds.train_images.shape == (3, 3, 4, 4) and ds.test_images.shape == (3, 3, 4, 4)
    assert ds.train_labels.tolist() == [0, 1, 2] and sorted(ds.test_labels.tolist()) == [0, 1, 2]
    assert np.array_equal(dominant_channel(ds.train_images), ds.train_labels)


def test_tiny_imagenet_incomplete_layouts_name_what_is_missing(tmp_path):
    top = write_tiny_imagenet(tmp_path)
    ann = top / "val" / "val_annotations.txt"
    text = ann.read_text()
    ann.write_text(text + "val_99.JPEG\tn01443537\t0\t0\t7\t7\n")
    with pytest.raises(FileNotFoundError, match="line 7: val/images/val_99.JPEG does not exist"):
        D.load_dataset(top)
    ann.write_text(text + "val_0.JPEG\tn99999999\t0\t0\t7\t7\n")
    with pytest.raises(ValueError, match="wnid 'n99999999' is not in wnids.txt"):
        D.load_dataset(top)
    ann.unlink()
    with pytest.raises(FileNotFoundError, match="missing: val/val_annotations.txt"):
        D.load_dataset(top)
    ann.write_text(text)
    for f in (top / "train" / "n02124075" / "images").iterdir():
        f.unlink()
    with pytest.raises(FileNotFoundError, match="train/n02124075/images holds no"):
        D.load_dataset(top)
    (top / "train" / "n02124075" / "images").rmdir()
    with pytest.raises(FileNotFoundError, match="missing: train/n02124075/images"):
        D.load_dataset(top)


def test_tiny_imagenet_unreadable_image_is_named(tmp_path):
    top = write_tiny_imagenet(tmp_path)
    (top / "train" / "n01443537" / "images" / "n01443537_0.JPEG").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="n01443537_0.JPEG' is not a readable image"):
        D.load_dataset(top)


# ---------- ImageNet (ImageFolder)


def write_imagefolder(root: Path, sizes=((8, 8), (8, 8))) -> Path:
    for split, n in (("train", 2), ("val", 1)):
        for label, cls in enumerate(("n01440764", "n01443537")):
            for i in range(n):
                save(root / split / cls / f"{cls}_{i}.JPEG", 60 + 120 * label, sizes[label], "L")
    return root


def test_imagenet_folder_shapes_and_labels(tmp_path):
    root = write_imagefolder(tmp_path / "imagenet")
    ds = D.load_dataset(root)
    assert ds.name == "imagenet" and ds.num_classes == 2
    assert ds.classes == ("n01440764", "n01443537")
    assert ds.train_images.shape == (4, 3, 8, 8) and ds.test_images.shape == (2, 3, 8, 8)
    assert ds.train_labels.tolist() == [0, 0, 1, 1] and ds.test_labels.tolist() == [0, 1]
    # grayscale files become RGB with equal channels; the label's shade survives (JPEG +-few)
    means = ds.train_images.reshape(4, 3, -1).mean(axis=2)
    assert np.allclose(means, (60 + 120 * ds.train_labels)[:, None], atol=4)
    nhwc = D.load_dataset(root, layout="NHWC", max_per_class=1)
    assert nhwc.train_images.shape == (2, 8, 8, 3) and nhwc.train_labels.tolist() == [0, 1]


def test_imagenet_sizes_need_image_size_and_resize_crops_the_centre(tmp_path):
    root = write_imagefolder(tmp_path, sizes=((8, 8), (12, 10)))
    with pytest.raises(ValueError, match="images differ in size .* give image_size="):
        D.load_dataset(root)
    ds = D.load_dataset(root, image_size=6)
    assert ds.train_images.shape == (4, 3, 6, 6) and ds.image_hw == (6, 6)
    # centre crop: a 16x8 (w x h) image with dark borders of 4 columns keeps only its bright middle
    img = np.zeros((8, 16), np.uint8)
    img[:, 4:12] = 200
    for f in (root / "train" / "n01440764").iterdir():
        f.unlink()
    Image.fromarray(img).save(root / "train" / "n01440764" / "wide.png")
    ds = D.load_dataset(root, image_size=8)
    wide = ds.train_images[ds.train_labels == 0]
    assert wide.shape == (1, 3, 8, 8) and np.all(wide == 200)


def test_imagenet_bad_layouts(tmp_path):
    root = write_imagefolder(tmp_path / "a")
    flat = tmp_path / "b"
    save(flat / "train" / "c0" / "x.png", 1)
    save(flat / "val" / "ILSVRC2012_val_00000001.JPEG", 1)
    with pytest.raises(FileNotFoundError, match="val/ has no class folders"):
        D.load_dataset(flat)
    save(root / "val" / "n99" / "x.png", 1)
    with pytest.raises(ValueError, match="val/ has classes that train/ lacks: n99"):
        D.load_dataset(root)
    nval = tmp_path / "c"
    save(nval / "train" / "c0" / "x.png", 1)
    with pytest.raises(FileNotFoundError, match="missing val/"):
        D.load_dataset(nval)
    (nval / "val" / "c0").mkdir(parents=True)
    (nval / "train" / "c1").mkdir()
    with pytest.raises(FileNotFoundError, match="train/c1/ holds no"):
        D.load_dataset(nval)


# ---------- UCF11

GROUPS = 2  # v_*_01, v_*_02 per action


def write_ucf11(root: Path, frames: int = 5, mode: str = "L", groups: int = GROUPS) -> Path:
    """Each clip: ``frames`` solid frames, frame k of class c has value 10·k + c (grayscale)."""
    top = root / "UCF11_updated_mpg"
    for label, action in enumerate(D.UCF11_ACTIONS):
        for g in range(1, groups + 1):
            group = top / action / f"v_{action}_{g:02d}"
            clip = group / f"v_{action}_{g:02d}_01"
            for k in range(frames):
                v = 10 * k + label
                save(clip / f"frame{k + 1}.jpg", v if mode == "L" else (v, v, v), (12, 9), mode)
            (group / "Annotation").mkdir()  # the real set has these; no frames inside
            (group / "Annotation" / "clip.xgtf").write_text("")
    return top


def test_ucf11_frames_sampling_shapes_and_labels(tmp_path):
    top = write_ucf11(tmp_path, frames=5)
    ds = D.load_dataset(tmp_path, frames=3, frame_size=4, test_fraction=0.5, seed=0)
    assert ds.name == "ucf11" and ds.num_classes == 11 and ds.classes == D.UCF11_ACTIONS
    n = 11 * GROUPS
    assert ds.train_images.shape[1:] == (1, 3, 16) and ds.test_images.shape[1:] == (1, 3, 16)
    assert len(ds.train_labels) + len(ds.test_labels) == n
    assert sorted(ds.test_labels.tolist()) == list(range(11))  # stratified: one per action
    # 3 of 5 frames at segment centres: floor((k + 1/2) * 5/3) = 0, 2, 4 -> values 10k + label
    for x, y in ((ds.train_images, ds.train_labels), (ds.test_images, ds.test_labels)):
        step_means = x[:, 0].astype(float).mean(axis=2)  # (N, 3)
        expected = np.array([0, 20, 40])[None, :] + y[:, None]
        assert np.allclose(step_means, expected, atol=3)  # JPEG frames: +- a few levels
    assert ds.model_kwargs == {"num_classes": 11, "in_channels": 1, "image_size": 16}
    spec = D.dataset_spec("ucf11", frames=3, frame_size=4)
    assert spec["input_shape"] == ds.train_images.shape[1:] and spec["image_size"] == 16
    nhwc = D.load_dataset(
        top, frames=3, frame_size=(2, 4), grayscale=False, layout="NHWC", test_fraction=0.5
    )
    assert nhwc.train_images.shape[1:] == (3, 2 * 4 * 3, 1)


def test_ucf11_frame_order_is_numeric_and_short_clips_repeat(tmp_path):
    write_ucf11(tmp_path, frames=11, groups=3)  # frame1 ... frame11: 'frame10' after 'frame9'
    opts = {"frame_size": 2, "max_per_class": 2, "test_fraction": 0.5, "kind": "ucf11"}
    ds = D.load_dataset(tmp_path, frames=11, **opts)
    steps = np.concatenate([ds.train_images, ds.test_images])[:, 0].astype(float).mean(axis=2)
    labels = np.concatenate([ds.train_labels, ds.test_labels])
    assert np.allclose(steps, 10 * np.arange(11)[None, :] + labels[:, None], atol=3)
    assert len(labels) == 22  # max_per_class=2 of the 3 clips per action
    long = D.load_dataset(tmp_path, frames=22, **opts)
    steps = long.train_images[:, 0].astype(float).mean(axis=2)
    idx = ((np.arange(22) + 0.5) * 11 / 22).astype(int)  # each frame twice
    assert np.allclose(steps, 10 * idx[None, :] + long.train_labels[:, None], atol=3)


def test_ucf11_group_split_holds_out_whole_groups(tmp_path):
    write_ucf11(tmp_path)
    for g in range(1, GROUPS + 1):  # a second clip in each group
        for action in D.UCF11_ACTIONS:
            clip = tmp_path / "UCF11_updated_mpg" / action / f"v_{action}_{g:02d}"
            for k in range(3):
                save(clip / f"v_{action}_{g:02d}_02" / f"{k}.png", 100 * g, (4, 4), "L")
    ds = D.load_dataset(tmp_path, frames=2, frame_size=2, group_split=True, seed=3)
    assert len(ds.train_labels) == len(ds.test_labels) == 22
    # the second clips carry their group in their value (100 or 200): a group is on one side
    for y in (ds.train_labels, ds.test_labels):
        assert sorted(y.tolist()) == sorted(list(range(11)) * 2)
    train_groups = {
        (int(y), int(v)) for y, v in zip(ds.train_labels, ds.train_images[:, 0, 0, 0]) if v >= 90
    }
    test_groups = {
        (int(y), int(v)) for y, v in zip(ds.test_labels, ds.test_images[:, 0, 0, 0]) if v >= 90
    }
    assert len(train_groups) == len(test_groups) == 11 and not train_groups & test_groups


def test_ucf11_videos(tmp_path):
    ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="video decoding needs imageio-ffmpeg")
    top = write_ucf11(tmp_path, frames=2)
    video = top / "basketball" / "v_basketball_01" / "v_basketball_01_02.avi"
    writer = ffmpeg.write_frames(str(video), (16, 16), fps=10, codec="mpeg4", macro_block_size=1)
    writer.send(None)
    for k in range(8):
        writer.send(np.full((16, 16, 3), 30 * k, np.uint8).tobytes())
    writer.close()
    ds = D.load_dataset(top, frames=4, frame_size=4, max_per_class=3, test_fraction=0.25)
    x = np.concatenate([ds.train_images, ds.test_images])
    y = np.concatenate([ds.train_labels, ds.test_labels])
    assert x.shape == (23, 1, 4, 16) and (y == 0).sum() == 3
    # the video's 4 of 8 frames: floor((k + 1/2)·2) = 1, 3, 5, 7 -> values 30, 90, 150, 210
    video_rows = [s for s in x[:, 0].astype(float).mean(axis=2) if s[0] > 25 and s[-1] > 200]
    assert len(video_rows) == 1 and np.allclose(video_rows[0], [30, 90, 150, 210], atol=4)
    video.write_bytes(b"not a video")
    with pytest.raises(ValueError, match="not a readable video"):
        D.load_dataset(top, frames=2, frame_size=2)


def test_ucf11_incomplete_layouts(tmp_path):
    top = write_ucf11(tmp_path, frames=1)
    for clip in (top / "walking" / "v_walking_01").iterdir():
        if clip.name != "Annotation":
            for f in clip.iterdir():
                f.unlink()
            clip.rmdir()
    for clip in (top / "walking" / "v_walking_02").iterdir():
        if clip.name != "Annotation":
            for f in clip.iterdir():
                f.unlink()
            clip.rmdir()
    with pytest.raises(FileNotFoundError, match="walking/v_\\*/ holds no clip"):
        D.load_dataset(top)
    for g in (top / "walking").iterdir():
        g.rename(top / "walking" / g.name.replace("v_", "x_"))
    with pytest.raises(FileNotFoundError, match="walking/ has no v_\\* group folder"):
        D.load_dataset(top)
    for action in ("walking", "diving"):
        for p in sorted((top / action).rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        (top / action).rmdir()
    with pytest.raises(FileNotFoundError, match="missing: diving/, walking/"):
        D.load_dataset(top)


# ---------- options, kinds and missing extras


def test_option_values_and_applicability_are_validated(tmp_path):
    top = write_tiny_imagenet(tmp_path)
    bad = [
        ({"image_size": 0}, "image_size must be a positive int"),
        ({"max_per_class": 1.5}, "max_per_class must be a positive int"),
        ({"frames": True}, "frames must be a positive int"),
        ({"frame_size": (0, 4)}, "frame_size must be a positive int or a"),
        ({"frame_size": (2, 3, 4)}, "frame_size must be a positive int or a"),
        ({"grayscale": "yes"}, "grayscale must be True or False"),
        ({"kind": "svhn"}, "kind must be None or one of"),
    ]
    for kw, message in bad:
        with pytest.raises(ValueError, match=message):
            D.load_dataset(top, **kw)
    with pytest.raises(ValueError, match="frames applies only to 'ucf11'"):
        D.load_dataset(top, frames=4)
    with pytest.raises(ValueError, match="image_size applies only to 'tiny-imagenet', 'imagenet'"):
        D.load_dataset("mnist10k", image_size=32)


def test_kind_insists_on_a_layout(tmp_path):
    top = write_tiny_imagenet(tmp_path)
    with pytest.raises(FileNotFoundError, match="needs wnids.txt"):
        D.load_dataset(tmp_path / "tiny-imagenet-200" / "train", kind="tiny-imagenet")
    with pytest.raises(
        FileNotFoundError, match="needs the 11 action folders; missing: basketball/"
    ):
        D.load_dataset(top, kind="ucf11")
    with pytest.raises(FileNotFoundError, match="cifar10 python folder needs data_batch_1"):
        D.load_dataset(top, kind="cifar10")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        D.load_dataset(top, kind="mnist")
    with pytest.raises(ValueError, match="not kind='imagenet'"):
        D.load_dataset("mnist10k", kind="imagenet")
    assert D.load_dataset(top, kind="tiny-imagenet").num_classes == 3


def test_missing_pillow_names_the_extra(tmp_path, monkeypatch):
    top = write_tiny_imagenet(tmp_path)
    monkeypatch.setitem(sys.modules, "PIL", None)  # as if Pillow were not installed
    with pytest.raises(ImportError, match=r"pip install 'tedepr\[data\]'"):
        D.load_dataset(top)


def test_missing_ffmpeg_names_the_extra(tmp_path, monkeypatch):
    top = write_ucf11(tmp_path, frames=1)
    (top / "biking" / "v_biking_01" / "v_biking_01_09.mpg").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    with pytest.raises(ImportError, match=r"pip install 'tedepr\[video\]'"):
        D.load_dataset(top)


def test_dataset_spec():
    assert D.dataset_spec("mnist10k") == {
        "num_classes": 10,
        "in_channels": 1,
        "image_size": 28,
        "input_shape": (1, 28, 28),
    }
    assert D.dataset_spec("cifar100")["num_classes"] == 100
    assert D.dataset_spec("tiny-imagenet")["input_shape"] == (3, 64, 64)
    assert D.dataset_spec("imagenet", image_size=64)["input_shape"] == (3, 64, 64)
    assert D.dataset_spec("ucf11")["input_shape"] == (1, D.UCF11_FRAMES, 32 * 32)
    assert D.dataset_spec("ucf11", frame_size=(120, 160), grayscale=False)["image_size"] == 57600
    with pytest.raises(ValueError, match="give image_size="):
        D.dataset_spec("imagenet")
    with pytest.raises(ValueError, match="kind must be one of"):
        D.dataset_spec("npz")
    with pytest.raises(ValueError, match="unknown option 'frame'"):
        D.dataset_spec("ucf11", frame=3)
    with pytest.raises(ValueError, match="frames applies only to 'ucf11'"):
        D.dataset_spec("cifar10", frames=3)


def test_large_jpeg_reduced_scale_decode_matches_a_full_decode(tmp_path):
    # a 96x64 gradient photo resized to 8: the draft-mode decode (1/4 scale) and a full-size
    # decode + the same resize + centre crop agree up to resampling noise
    yy, xx = np.mgrid[0:64, 0:96]
    photo = np.stack([xx * 2.5, yy * 3.5, (xx + yy) * 1.5], axis=-1).astype(np.uint8)
    for split in ("train", "val"):
        path = tmp_path / split / "c0" / "photo.JPEG"
        path.parent.mkdir(parents=True)
        Image.fromarray(photo).save(path, quality=95)
    ds = D.load_dataset(tmp_path, image_size=8, layout="NHWC")
    with Image.open(tmp_path / "train" / "c0" / "photo.JPEG") as im:
        full = im.convert("RGB").resize((12, 8), Image.Resampling.BILINEAR).crop((2, 0, 10, 8))
    diff = np.abs(ds.train_images[0].astype(int) - np.asarray(full, dtype=int))
    assert ds.train_images.shape == (1, 8, 8, 3) and diff.mean() < 4, diff.mean()
