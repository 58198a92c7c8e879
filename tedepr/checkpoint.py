"""Atomic file writing and verified, rotating checkpoints, shared by both backends and the CLI.

A write goes to a fresh temporary file in the destination's directory, is flushed and fsync'ed, and
then renamed over the destination with `os.replace` (atomic on POSIX and Windows). A reader
therefore sees either the complete old file or the complete new one, never a torn write — so an
interrupted run can always resume from its last checkpoint.

Checkpoints (`save_checkpoint_bytes`, `load_latest_checkpoint`) add two guards against what
atomicity cannot prevent — a file truncated or corrupted afterwards (a copy gone wrong, a bad disk)
and a write that fails (a full disk):

* a SHA-256 digest of every checkpoint is kept beside it in ``<name>.sha256`` (``sha256sum``
  format), and a file whose digest is not listed there is reported and not used;
* the previous checkpoint is kept as ``<stem>.prev<suffix>`` (``last.pt`` → ``last.prev.pt``).

A new checkpoint is written in an order that keeps one verifiable copy on disk at every instant:
(1) its digest is added to the digest file, (2) it is written atomically to ``<name>.new``,
(3) the current file becomes the previous one, (4) ``<name>.new`` becomes the current one, and
(5) the digest file is trimmed to the two files left. A process killed anywhere in between, or a
write failing anywhere, leaves the last complete checkpoint readable and listed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

__all__ = [
    "CheckpointError",
    "CorruptCheckpointWarning",
    "atomic_save",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "checkpoint_files",
    "load_latest_checkpoint",
    "read_checkpoint_bytes",
    "save_checkpoint_bytes",
]

T = TypeVar("T")

logger = logging.getLogger(__name__)


def _fsync_directory(directory: Path) -> None:
    # The rename is only durable once the directory entry is on disk; not all platforms allow
    # opening a directory (Windows does not), and there the rename itself is the best we can do.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(writer: Callable[[IO[bytes]], Any], path: str | os.PathLike) -> Path:
    """Write a file atomically: ``writer(f)`` fills a temporary file, which then replaces ``path``.

    Parameters
    ----------
    writer : callable
        Called once with an open, writable binary file object, e.g.
        ``lambda f: torch.save(obj, f)``.
    path : str or path-like
        The destination. Its directory must exist. An existing file is replaced only after the new
        contents are completely written and synced; if ``writer`` raises, ``path`` is left untouched
        and the temporary file is removed.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    if not callable(writer):
        raise TypeError(
            f"writer must be a callable taking a binary file object; got {type(writer).__name__}"
        )
    path = Path(path)
    directory = path.parent
    if not directory.is_dir():
        raise FileNotFoundError(f"path: directory {str(directory)!r} does not exist")
    # O_EXCL guarantees that two concurrent writers never share a temporary file; mode 0o666 lets
    # the process umask decide the final permissions, as for an ordinary open().
    tmp = directory / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)
    logger.debug("wrote %s atomically", path)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically replace ``path`` with the bytes ``data`` (see `atomic_save`)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes-like; got {type(data).__name__}")
    return atomic_save(lambda f: f.write(data), path)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Atomically replace ``path`` with ``text`` encoded as ``encoding``."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str; got {type(text).__name__}")
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> Path:
    """Atomically replace ``path`` with ``obj`` serialised as JSON (UTF-8, trailing newline).

    The object is serialised before anything is written, so an unserialisable ``obj`` raises
    ``TypeError`` and leaves ``path`` untouched. Non-finite floats are written as
    ``NaN``/``Infinity`` (Python's `json` default) so that a diverged run's history is still
    recorded.
    """
    text = json.dumps(obj, indent=indent, ensure_ascii=False) + "\n"
    return atomic_write_text(path, text)


# ---------------------------------------------------------------- verified, rotating checkpoints


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: truncated, corrupted (checksum mismatch) or unreadable."""


class CorruptCheckpointWarning(RuntimeWarning):
    """A checkpoint was found damaged and skipped; an older good one (if any) is used instead."""


def checkpoint_files(path: str | os.PathLike) -> dict[str, Path]:
    """The files that make up the checkpoint ``path``: ``current``, ``previous``, ``staging``
    (a new checkpoint being written) and ``digests`` (the ``sha256sum``-format digest file)."""
    path = Path(path)
    return {
        "current": path,
        "previous": path.with_name(f"{path.stem}.prev{path.suffix}"),
        "staging": path.with_name(path.name + ".new"),
        "digests": path.with_name(path.name + ".sha256"),
    }


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_digests(digests: Path) -> set[str] | None:
    """The digests listed in ``digests``, or None when there is no (readable) digest file."""
    try:
        text = digests.read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    found = set()
    for line in text.splitlines():
        value = line.split(maxsplit=1)[0] if line.strip() else ""
        if len(value) == 64 and all(c in "0123456789abcdef" for c in value):
            found.add(value)
    return found


def _write_digests(digests: Path, entries: list[tuple[str, str]]) -> None:
    atomic_write_text(digests, "".join(f"{d}  {name}\n" for d, name in entries))


def save_checkpoint_bytes(path: str | os.PathLike, data: bytes) -> str:
    """Write the serialised checkpoint ``data`` to ``path``, keeping the previous one and digests.

    The order of the steps (module docstring) keeps the last complete checkpoint verifiable if the
    process dies or a write fails (``OSError``, e.g. a full disk, is raised to the caller) at any
    point. Returns the new file's SHA-256 digest.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes-like; got {type(data).__name__}")
    data = bytes(data)
    files = checkpoint_files(path)
    current, previous, staging = files["current"], files["previous"], files["staging"]
    # temporaries of a writer killed mid-write (one writer per checkpoint: rank 0 of one run)
    for name in (staging.name, files["digests"].name):
        for stale in current.parent.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)
    new = _digest(data)
    old = {
        key: _digest(files[key].read_bytes())
        for key in ("current", "previous")
        if files[key].exists()
    }
    # (1) every file that may exist after any later step is listed before that step happens
    listed = [(new, staging.name)] + [(d, files[k].name) for k, d in old.items()]
    _write_digests(files["digests"], listed)
    atomic_write_bytes(staging, data)  # (2)
    if current.exists():
        os.replace(current, previous)  # (3)
    os.replace(staging, current)  # (4)
    _fsync_directory(current.parent)
    keep = [(new, current.name)]
    if "current" in old:
        keep.append((old["current"], previous.name))
    elif "previous" in old:
        keep.append((old["previous"], previous.name))
    _write_digests(files["digests"], keep)  # (5)
    logger.debug("wrote checkpoint %s (sha256 %s)", current, new)
    return new


def _verified(path: Path, data: bytes, digests: set[str] | None) -> None:
    if digests is None:
        return
    if _digest(data) not in digests:
        raise CheckpointError(
            f"{str(path)!r} is truncated or corrupted: its SHA-256 does not match the digest "
            f"recorded in {path.name}.sha256 ({len(data)} bytes read)"
        )


def read_checkpoint_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of the checkpoint file ``path``, verified against the digest file beside it.

    Raises `CheckpointError` when a digest file exists and does not list the file's digest; a
    checkpoint without a digest file (written before digests were kept) is read as it is.
    """
    path = Path(path)
    data = path.read_bytes()
    digests = _read_digests(checkpoint_files(path)["digests"])
    if digests is None:
        # the digest file is named after the current checkpoint, also for .prev/.new files
        for base in (path.name.replace(".prev", "", 1), path.name.removesuffix(".new")):
            if base != path.name:
                digests = _read_digests(path.with_name(base + ".sha256"))
                if digests is not None:
                    break
    _verified(path, data, digests)
    return data


def load_latest_checkpoint(
    path: str | os.PathLike, parse: Callable[[bytes, Path], T]
) -> tuple[Path, T] | None:
    """The newest usable checkpoint of ``path``: ``(file, parse(bytes, file))``, or None if none.

    Tries the current file, then a complete staging file (a write interrupted between steps 3
    and 4), then the previous one. A file that fails its digest or that ``parse`` rejects is
    reported (a `CorruptCheckpointWarning` and a log warning) and skipped. Raises
    `CheckpointError` when checkpoint files exist but none of them is usable — resuming from
    scratch over a damaged run would silently discard it.
    """
    files = checkpoint_files(path)
    digests = _read_digests(files["digests"])
    problems = []
    for key in ("current", "staging", "previous"):
        candidate = files[key]
        if not candidate.exists():
            continue
        if key == "staging" and digests is None:
            continue  # an unlisted staging file was never complete
        try:
            data = candidate.read_bytes()
            _verified(candidate, data, digests)
            parsed = parse(data, candidate)
        except Exception as exc:  # noqa: BLE001 (every reason a file is unusable is reported)
            problems.append(f"{candidate.name}: {exc}")
            message = f"checkpoint {str(candidate)!r} is unusable and is skipped: {exc}"
            logger.warning(message)
            warnings.warn(message, CorruptCheckpointWarning, stacklevel=2)
            continue
        if problems:
            logger.warning("using the older checkpoint %s instead", candidate)
        return candidate, parsed
    if problems:
        raise CheckpointError(
            f"no usable checkpoint at {str(files['current'])!r}: " + "; ".join(problems)
        )
    return None
