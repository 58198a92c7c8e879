"""Atomic file writing shared by both backends' checkpoints and the CLI's result files.

A write goes to a fresh temporary file in the destination's directory, is flushed and fsync'ed, and
then renamed over the destination with `os.replace` (atomic on POSIX and Windows). A reader
therefore sees either the complete old file or the complete new one, never a torn write — so an
interrupted run can always resume from its last checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_save", "atomic_write_bytes", "atomic_write_json", "atomic_write_text"]

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
