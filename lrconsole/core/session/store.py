"""A session folder's torch side and its lock: checkpoints saved, loaded and pruned."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import pickle
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import torch

from lrconsole.core.atomic import atomic_write, why_unwritable
from lrconsole.core.plan.plan import Plan
from lrconsole.core.session.holder import Holder, flock_owner
from lrconsole.core.session.layout import (
    BRANCHES,
    CHECKPOINTS,
    LOCK,
    checkpoint_files,
    checkpoint_name,
    kept_checkpoints,
)
from lrconsole.core.session.manifest import SessionError
from lrconsole.errors import SessionBusy

STATE_FORMAT = 1


class SessionLock:
    """An exclusive flock on `<session>/lock`; the kernel drops it if we die."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        try:
            handle = open(self.path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
        except OSError as exc:  # a read-only folder, a full disk, a file in the way
            raise SessionError(
                f"{self.path.parent}: cannot lock the session: {why_unwritable(self.path, exc)}"
            ) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = Holder(flock_owner(self.path), handle.read(64).strip()).describe()
            handle.close()
            raise SessionBusy(
                f"session {self.path.parent.name!r} is in use by {holder}; "
                f"attach to it with `lrconsole attach {self.path.parent.name}` "
                f"or end it with `lrconsole stop {self.path.parent.name}`"
            ) from None
        try:
            handle.seek(0)
            handle.truncate()
            os.write(handle.fileno(), f"{os.getpid()}\n".encode())  # unbuffered: fails here
        except OSError as exc:
            folder = self.path.parent
            if [p.name for p in folder.iterdir()] == [LOCK]:  # a folder made for nothing
                with contextlib.suppress(OSError):  # we hold the lock: ours to remove
                    self.path.unlink()
                    folder.rmdir()
            handle.close()
            raise SessionError(
                f"{self.path.parent}: cannot lock the session: {why_unwritable(self.path, exc)}"
            ) from None
        self._handle = handle
        remove_stale_temps(self.path.parent)  # we hold the lock: nobody else writes here

    def release(self) -> None:
        if self._handle is not None:
            self._handle.seek(0)
            self._handle.truncate()
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def remove_stale_temps(folder: Path) -> list[Path]:
    """Remove the `.<name>.<random>.tmp` files that writes killed mid-way left behind
    (core.atomic); call only while holding the session's lock. Returns what went."""
    gone = []
    for sub in ("", CHECKPOINTS, BRANCHES):
        for path in (folder / sub).glob(".*.tmp"):
            with contextlib.suppress(OSError):  # a read-only folder: harmless leftovers
                path.unlink()
                gone.append(path)
    return gone


# -- checkpoints ------------------------------------------------------------------------
def save_checkpoint(folder: Path, state: dict[str, Any]) -> str:
    """Write `state` atomically; returns the path relative to the session."""
    rel = checkpoint_name(int(state["global_step"]))
    atomic_write(folder / rel, lambda handle: torch.save(state, handle))
    return rel


ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load with weights_only=True: a file that carries pickled code is refused.

    A file that is not a whole, intact zip archive is corrupt or truncated; only an intact
    archive whose unpickler refuses a global "carries pickled objects".
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SessionError(f"{path}: checkpoint is missing") from None
    except OSError as exc:
        raise SessionError(f"{path}: cannot read checkpoint: {exc.strerror or exc}") from None
    damage = _archive_damage(data)
    if damage is not None:
        raise SessionError(f"{path}: corrupt or truncated checkpoint ({damage})")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = REFUSED_GLOBAL.search(str(exc))
        if refused is not None:
            raise SessionError(
                f"{path}: refused: the checkpoint carries pickled objects that weights_only "
                f"loading does not allow ({refused.group(1)})"
            ) from None
        reason = brief(_torch_reason(str(exc)) or type(exc).__name__)
        raise SessionError(f"{path}: corrupt or truncated checkpoint ({reason})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        reason = brief(str(exc) or type(exc).__name__)
        raise SessionError(f"{path}: corrupt or truncated checkpoint ({reason})") from None
    if not isinstance(state, dict) or not {"model", "optimizer", "rng", "global_step"} <= set(
        state
    ):
        raise SessionError(f"{path}: not an lrconsole checkpoint")
    if int(state.get("format", 1)) > STATE_FORMAT:
        raise SessionError(
            f"{path}: checkpoint format {state['format']} is newer than this lrconsole"
        )
    if not _guard_ok(state.get("guard")):
        raise SessionError(f"{path}: not an lrconsole checkpoint (malformed guard state)")
    return state


# torch names the global it refused: "Unsupported global: GLOBAL os.system was not an
# allowed global ..." or "Trying to load unsupported GLOBAL posix.system whose module ...".
REFUSED_GLOBAL = re.compile(r"\bGLOBAL ([\w.]+)")
# The advice torch wraps around every weights_only failure: not the reason.
TORCH_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation")


def _archive_damage(data: bytes) -> str | None:
    """Why `data` is not an intact zip archive (as torch.save writes), or None."""
    if not data:
        return "the file is empty"
    if not data.startswith(ZIP_MAGIC):
        return "not a torch zip archive"
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                if info.CRC == 0 and info.file_size:
                    continue  # written with torch's CRC32 turned off: nothing to compare
                with archive.open(info) as member:  # reading to the end checks the CRC
                    while member.read(1 << 20):
                        pass
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError) as exc:
        return f"the zip archive is damaged: {brief(str(exc) or type(exc).__name__)}"
    return None


def _torch_reason(message: str) -> str:
    """The line of a torch error that says what went wrong, without its advice."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if not line.startswith(TORCH_BOILERPLATE):
            return line.removeprefix("WeightsUnpickler error:").strip() or line
    return lines[0] if lines else ""


def brief(text: str, limit: int = 120) -> str:
    """The first line of `text`, cut at a word boundary to at most `limit` characters."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0] if lines else ""
    if len(line) <= limit:
        return line
    cut = line[: limit - 1]
    if " " in cut:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:.") + "..."


def _guard_ok(guard: Any) -> bool:
    """The divergence guard's memory (Engine.guard_state): absent in older checkpoints."""
    if guard is None:
        return True
    if not isinstance(guard, dict):
        return False
    means = guard.get("recent_means", [])
    number = (int, float)
    return (
        isinstance(means, list)
        and all(isinstance(x, number) and not isinstance(x, bool) for x in means)
        and isinstance(guard.get("epoch_sum", 0.0), number)
        and isinstance(guard.get("epoch_count", 0), int)
    )


def prune_checkpoints(
    folder: Path,
    plan: Plan,
    keep_recent: int,
    keep: Iterable[str],
    since: float | None = None,
    pinned: Iterable[int] = (),
) -> None:
    """Remove the checkpoints `kept_checkpoints` does not keep.

    `since` (a time.time()): files written after it are kept too. A background write
    prunes when it is done; a checkpoint the training thread wrote meanwhile (early
    stopping's best epoch) was not the rule's to judge.
    """
    files = checkpoint_files(folder)
    edges = set(plan.starts) | {plan.total_steps}
    kept = kept_checkpoints(files, edges, keep_recent, pinned) | {folder / k for k in keep}
    for path in files:
        if path not in kept:
            if since is not None and _written_after(path, since):
                continue
            path.unlink(missing_ok=True)


def _written_after(path: Path, since: float) -> bool:
    try:
        return path.stat().st_mtime >= since
    except OSError:
        return False
