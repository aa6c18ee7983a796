"""Atomic file writes: a temp file in the same folder, fsync, then os.replace."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO


def atomic_write(path: Path, write: Callable[[IO[bytes]], None], mode: int | None = None) -> None:
    """Call `write` on a temp file beside `path`, then move it into place.

    The file gets `mode` when given (for files that must stay private), else the mode
    of the file it replaces, else 0666 less the umask, as `open()` would give it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        with contextlib.suppress(FileNotFoundError):
            mode = stat.S_IMODE(os.stat(path).st_mode)
    fd, tmp = _create_temp(path, 0o666 if mode is None else mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            if mode is not None:  # the umask must not narrow a kept or explicit mode
                with contextlib.suppress(OSError):  # some file systems have no modes
                    os.fchmod(handle.fileno(), mode)
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with _suppress_os_error():
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str, mode: int | None = None) -> None:
    data = text.encode("utf-8")
    atomic_write(path, lambda handle: None if handle.write(data) else None, mode)


def why_unwritable(path: Path, exc: OSError) -> str:
    """A short reason for a failed write of `path`, naming a file that blocks its folder."""
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):
        for parent in path.parents:
            if parent.exists() and not parent.is_dir():
                return f"{parent} is a file, not a folder"
    return exc.strerror or str(exc)


def _create_temp(path: Path, mode: int) -> tuple[int, str]:
    """Create `.<name>.<random>.tmp` beside `path` with `mode` (the umask applies)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = str(path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp"))
        try:
            return os.open(tmp, flags, mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(path.parent))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _suppress_os_error:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: object, tb: object) -> bool:
        return isinstance(exc, OSError)
