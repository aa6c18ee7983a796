"""Deleting and renaming a session folder, and when it was last active. No torch: the
console's home screen and the CLI use it.

Both take the session's lock for the moment they act, so a runner that holds it (training,
paused, or suspended with Ctrl-Z) is never pulled from under it, and none can start on a
folder half gone. Refusals are one-line UserErrors.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from lrconsole.core.session.holder import Holder, flock_owner, lock_holder
from lrconsole.core.session.layout import LOCK, MANIFEST, METRICS, checkpoint_files
from lrconsole.errors import SessionBusy, UserError

# A name a shell, `lrconsole SESSION` and a control socket path all take as it is: no
# folder separators, no leading dot (hidden) or dash (an option), short enough that
# `<sessions>/<name>/control.sock` stays within the OS's limit for socket paths.
NAME = re.compile(r"\w[\w.+-]{0,63}")


def check_name(name: str) -> str | None:
    """None for a valid new session name, else why not (one line)."""
    if not name:
        return "enter a name"
    if NAME.fullmatch(name) is None:
        return (
            f"not a valid session name: {name!r} (letters, digits, '.', '_', '+', '-'; "
            "at most 64; not starting with '.' or '-')"
        )
    return None


def busy(folder: Path, doing: str, holder: str) -> SessionBusy:
    return SessionBusy(
        f"cannot {doing} session {folder.name!r}: a runner holds it ({holder}); "
        f"stop it first with `lrconsole stop {folder.name}`"
    )


def check_free(folder: Path, doing: str) -> None:
    """SessionBusy naming the holder when a live process holds the session now (before
    asking a question whose answer could not be acted on)."""
    holder = lock_holder(folder)
    if holder is not None:
        raise busy(folder, doing, holder.describe())


@contextlib.contextmanager
def holding(folder: Path, doing: str) -> Iterator[None]:
    """Hold the session's lock while the body runs; SessionBusy naming the holder if a
    live process has it."""
    try:
        handle = open(folder / LOCK, "a+")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise UserError(f"cannot {doing} {folder}: {exc.strerror or exc}") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = Holder(flock_owner(folder / LOCK), handle.read(64).strip()).describe()
            raise busy(folder, doing, holder) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _session(folder: Path) -> None:
    if folder.is_symlink():
        raise UserError(f"{folder} is a link: remove or rename it by hand")
    if not (folder / MANIFEST).is_file():
        raise UserError(f"{folder}: not a session (no {MANIFEST})")


def delete_session(folder: Path) -> None:
    """Remove a session folder and everything in it. Refused while a runner holds it.

    The folder is first renamed to a hidden name beside it (atomic), so a removal that
    fails half-way never leaves a half session that lists or opens as one."""
    _session(folder)
    trash = folder.parent / f".deleting-{folder.name}-{uuid.uuid4().hex[:8]}"
    with holding(folder, "delete"):
        try:
            os.rename(folder, trash)
        except OSError as exc:
            raise UserError(f"cannot delete {folder}: {exc.strerror or exc}") from None
    try:
        shutil.rmtree(trash)
    except OSError as exc:
        raise UserError(
            f"session {folder.name!r} is gone, but removing its files stopped at {exc.filename}: "
            f"{exc.strerror or exc}"
        ) from None


def rename_session(folder: Path, new_name: str) -> Path:
    """Rename a session folder inside its parent; returns the new folder. Refused for an
    invalid name, a name taken, or while a runner holds the session."""
    _session(folder)
    why = check_name(new_name)
    if why is not None:
        raise UserError(why)
    target = folder.parent / new_name
    if target.exists() or target.is_symlink():
        raise UserError(f"cannot rename {folder.name!r}: {target} already exists")
    with holding(folder, "rename"):
        try:
            # The manifest keeps the name the session was created under: commands take the
            # folder's name (as for a copied folder), and one rename stays atomic.
            os.rename(folder, target)
        except OSError as exc:
            raise UserError(
                f"cannot rename {folder} to {new_name}: {exc.strerror or exc}"
            ) from None
    return target


def last_activity(folder: Path, updated: str = "") -> float:
    """When the session last changed (a POSIX time): the newest of the manifest's `updated`
    stamp, metrics.csv and the checkpoints. 0.0 when none can be read."""
    times = [0.0]
    with contextlib.suppress(ValueError):
        times.append(dt.datetime.fromisoformat(updated).timestamp())
    for path in [folder / METRICS, *checkpoint_files(folder)[-1:]]:
        with contextlib.suppress(OSError):
            times.append(path.stat().st_mtime)
    return max(times)


def format_size(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.0f} kB"


def folder_size(folder: Path) -> int:
    """Bytes in the files under `folder` (links not followed)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total
