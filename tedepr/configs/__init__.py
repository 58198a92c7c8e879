"""Run configurations: flat TOML files whose keys mirror the ``tedepr run`` flags.

``load("paper/cifar10_vgg16")`` reads a packaged config (`available()` lists them; they live in
``tedepr/configs/paper/``), ``load("my_run.toml")`` a file of your own. Either way the result is a
plain dict holding only the keys the file sets, each validated against `KEYS`; the command line
fills in the rest and its flags override the file.

A config is flat: every key is a top-level ``key = value`` line, except the two tables
``model_options`` (keywords for ``tedepr.models.get``) and ``dataset_options`` (keywords for
``tedepr.datasets.load_dataset``). Example::

    model = "vgg16"
    dataset = "cifar10"
    sparsities = [0.99, 0.995]
    seeds = [0, 1]
    epochs = 160
    [model_options]
    batch_norm = true

This module imports only the standard library and `tedepr.datasets` (NumPy): no framework.
"""

from __future__ import annotations

import difflib
import math
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from tedepr import datasets as _datasets

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["KEYS", "Key", "DATASETS", "FORMATS", "BACKENDS", "OPTIMIZERS", "SCHEDULES"]
__all__ += ["DATASET_OPTIONS", "load", "validate", "available"]

DATASETS = ("mnist10k", "mnist", "cifar10", "cifar100", "tiny-imagenet", "imagenet", "ucf11")
FORMATS = ("tt", "tr", "tucker", "cp")
BACKENDS = ("torch", "jax")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "step", "constant")
#: The keys ``dataset_options`` may hold (``load_dataset`` keywords; ``layout`` and ``kind`` are
#: the command line's to choose).
DATASET_OPTIONS = (
    "test_fraction",
    "seed",
    "image_size",
    "max_per_class",
    "frames",
    "frame_size",
    "grayscale",
    "group_split",
)


class Key(NamedTuple):
    """One allowed config key: its TOML type and what it means."""

    type: str
    meaning: str


#: The allowed keys of a run config, with their types and meaning (the ``tedepr run`` flags).
KEYS: dict[str, Key] = {
    "model": Key("str", "a tedepr.models zoo name (tedepr.models.available(backend))"),
    "dataset": Key("str", "one of " + ", ".join(DATASETS)),
    "data": Key("str", "path to the data set in its standard on-disk layout (not for mnist10k)"),
    "methods": Key("list of str", "the methods to compare (their meaning is the CLI's)"),
    "sparsities": Key("list of float in [0, 1)", "fractions of the dense model's weights removed"),
    "seeds": Key("list of int >= 0", "one run per seed and method and sparsity"),
    "epochs": Key("int >= 1", "training epochs of every run"),
    "format": Key("str", "tensor format of the low-rank methods: " + ", ".join(FORMATS)),
    "backend": Key("str", "training backend: " + ", ".join(BACKENDS)),
    "device": Key("str", "device string of the backend, e.g. 'cpu', 'cuda', 'cuda:1'"),
    "batch_size": Key("int >= 1", "training batch size"),
    "optimizer": Key("str", "one of " + ", ".join(OPTIMIZERS)),
    "lr": Key("float > 0", "peak learning rate"),
    "momentum": Key("float in [0, 1)", "SGD momentum; Adam/AdamW beta1"),
    "weight_decay": Key("float >= 0", "L2 (sgd, adam) or decoupled (adamw) weight decay"),
    "schedule": Key("str", "learning-rate schedule: " + ", ".join(SCHEDULES)),
    "subset": Key("int >= 1", "train on only this many training samples (the first, fixed order)"),
    "model_options": Key("table", "keywords passed to tedepr.models.get"),
    "dataset_options": Key(
        "table", "keywords passed to tedepr.datasets.load_dataset: " + ", ".join(DATASET_OPTIONS)
    ),
    "description": Key("str", "free text: what the experiment is and where its recipe comes from"),
}

_CHOICES = {
    "dataset": DATASETS,
    "format": FORMATS,
    "backend": BACKENDS,
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
}


def _did_you_mean(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _check_str(key: str, v) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"{key} must be a non-empty string ({KEYS[key].meaning}); got {v!r}")
    if key in _CHOICES and v not in _CHOICES[key]:
        raise ValueError(
            f"{key} must be one of {', '.join(map(repr, _CHOICES[key]))}; got {v!r}"
            + _did_you_mean(v, _CHOICES[key])
        )
    return v


def _check_int(key: str, v, minimum: int) -> int:
    if not _is_int(v) or v < minimum:
        raise ValueError(f"{key} must be an int >= {minimum}; got {v!r}")
    return v


def _check_float(key: str, v, low: float, high: float | None, low_open: bool) -> float:
    ok = _is_number(v) and (v > low if low_open else v >= low) and (high is None or v < high)
    if not ok:
        bound = (
            f"{'>' if low_open else '>='} {low:g}" if high is None else f"in [{low:g}, {high:g})"
        )
        raise ValueError(f"{key} must be a number {bound}; got {v!r}")
    return float(v)


def _check_list(key: str, v, check) -> list:
    if not isinstance(v, list) or not v:
        raise ValueError(f"{key} must be a non-empty list ({KEYS[key].type}); got {v!r}")
    out = [check(f"{key}[{i}]", item) for i, item in enumerate(v)]
    duplicates = sorted({x for x in out if out.count(x) > 1}, key=str)
    if duplicates:
        raise ValueError(f"{key} lists {duplicates[0]!r} more than once")
    return out


def _check_table(key: str, v) -> dict:
    if not isinstance(v, dict):
        raise ValueError(f"{key} must be a table ([{key}] or {{...}}); got {v!r}")
    return dict(v)


def _method(key: str, v) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"{key} must be a non-empty string (a method name); got {v!r}")
    return v


def _sparsity(key: str, v) -> float:
    return _check_float(key, v, 0.0, 1.0, low_open=False)


def _seed(key: str, v) -> int:
    return _check_int(key, v, 0)


_CHECKS = {
    "model": _check_str,
    "dataset": _check_str,
    "data": _check_str,
    "device": _check_str,
    "description": _check_str,
    "format": _check_str,
    "backend": _check_str,
    "optimizer": _check_str,
    "schedule": _check_str,
    "methods": lambda k, v: _check_list(k, v, _method),
    "sparsities": lambda k, v: _check_list(k, v, _sparsity),
    "seeds": lambda k, v: _check_list(k, v, _seed),
    "epochs": lambda k, v: _check_int(k, v, 1),
    "batch_size": lambda k, v: _check_int(k, v, 1),
    "subset": lambda k, v: _check_int(k, v, 1),
    "lr": lambda k, v: _check_float(k, v, 0.0, None, low_open=True),
    "momentum": lambda k, v: _check_float(k, v, 0.0, 1.0, low_open=False),
    "weight_decay": lambda k, v: _check_float(k, v, 0.0, None, low_open=False),
    "model_options": _check_table,
    "dataset_options": _check_table,
}
assert set(_CHECKS) == set(KEYS)


def _check_dataset_options(options: dict, dataset: str | None) -> dict:
    for name in options:
        if name not in DATASET_OPTIONS:
            raise ValueError(
                f"dataset_options.{name} is not a load_dataset option; allowed: "
                f"{', '.join(DATASET_OPTIONS)}" + _did_you_mean(name, DATASET_OPTIONS)
            )
    if "test_fraction" in options:
        v = options["test_fraction"]
        if not _is_number(v) or not 0.0 < v < 1.0:
            raise ValueError(f"dataset_options.test_fraction must be a number in (0, 1); got {v!r}")
    if "seed" in options:
        _check_int("dataset_options.seed", options["seed"], 0)
    specific = {k: v for k, v in options.items() if k not in ("test_fraction", "seed")}
    try:
        if dataset is not None:
            _datasets.check_options(dataset, **specific)
        else:  # values only; applicability is checked once the data set is known
            _datasets._check_options(None, specific)
    except ValueError as exc:
        raise ValueError(f"dataset_options: {exc}") from exc
    return dict(options)


def validate(config: dict[str, Any]) -> dict[str, Any]:
    """Validate a config dict (e.g. parsed TOML, or merged with command-line flags).

    Returns a new dict with the same keys (numbers that must be floats converted to float).
    Raises ValueError naming the first unknown key (with a close match, if any) or the first key
    with a wrong type or value, and what is allowed.
    """
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict; got {type(config).__name__}")
    out = {}
    for key, value in config.items():
        if key not in KEYS:
            raise ValueError(
                f"unknown config key {key!r}{_did_you_mean(key, KEYS)}; the keys are "
                f"{', '.join(KEYS)}"
            )
        out[key] = _CHECKS[key](key, value)
    if "model_options" in out:
        for name in out["model_options"]:
            if name in ("num_classes", "in_channels", "image_size"):
                raise ValueError(
                    f"model_options.{name} comes from the data set; it cannot be set in a config"
                )
    if "dataset_options" in out:
        out["dataset_options"] = _check_dataset_options(out["dataset_options"], out.get("dataset"))
    if out.get("dataset") == "mnist10k" and "data" in out:
        raise ValueError("data must not be set for dataset 'mnist10k' (the embedded digits)")
    return out


def _packaged() -> dict[str, Any]:
    root = resources.files(__name__)
    return {
        f"{group.name}/{entry.name[: -len('.toml')]}": entry
        for group in root.iterdir()
        if group.is_dir() and not group.name.startswith(("_", "."))
        for entry in group.iterdir()
        if entry.name.endswith(".toml")
    }


def available() -> list[str]:
    """The packaged config names, sorted (e.g. ``"paper/cifar10_vgg16"``)."""
    return sorted(_packaged())


def load(ref: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a run config.

    Parameters
    ----------
    ref : str or path
        A ``.toml`` file, or a packaged name from `available()` (``"paper/cifar10_vgg16"``; a
        trailing ``.toml`` is allowed).

    Returns
    -------
    dict
        Only the keys present in the file, validated (see `validate`).

    Raises
    ------
    FileNotFoundError
        A ``.toml`` path that does not exist.
    ValueError
        An unknown packaged name, invalid TOML, or an invalid key or value — the message names
        the file and the key.
    """
    if not isinstance(ref, (str, os.PathLike)):
        raise TypeError(f"ref must be a str or path; got {type(ref).__name__}")
    packaged = _packaged()
    text = str(ref)
    name = text[: -len(".toml")] if text.endswith(".toml") else text
    path = Path(ref).expanduser()
    groups = {n.split("/")[0] + "/" for n in packaged}
    if path.is_file():  # a file of the user's wins over a packaged name
        where, raw = str(path), path.read_bytes()
    elif name in packaged:
        where, raw = f"config {name!r}", packaged[name].read_bytes()
    elif not name.startswith(tuple(groups)) and (text.endswith(".toml") or os.sep in text):
        raise FileNotFoundError(f"ref: config file {text!r} does not exist")
    else:
        raise ValueError(
            f"ref must be a .toml file or a packaged config ({', '.join(sorted(packaged))}); "
            f"got {text!r}" + _did_you_mean(name, packaged)
        )
    try:
        parsed = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where}: not valid TOML: {exc}") from exc
    try:
        return validate(parsed)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc
