"""Who holds a session's lock, asked of the OS rather than of the lock file. No torch.

The lock file names the PID that wrote it, but a foreign process can hold the flock
without writing (or after another wrote), so the kernel's own table is the truth:
/proc/locks on Linux. Where it cannot tell, we say so instead of guessing.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from lrconsole.core.session.layout import LOCK


@dataclass(frozen=True)
class Holder:
    """A live holder of the lock: its PID when the OS names it, and the file's word."""

    pid: int | None
    written: str  # what the lock file says ("" when empty)

    def describe(self) -> str:
        if self.pid is not None:
            return f"PID {self.pid}"
        said = f" (the lock file names PID {self.written})" if self.written else ""
        return f"a process the OS does not name{said}"


def lock_holder(folder: Path) -> Holder | None:
    """The process holding `<folder>/lock`, or None when nobody holds it (or no lock).

    Asks /proc/locks first: probing by taking the flock would, for that moment, make a
    runner that is starting find the session in use.
    """
    path = folder / LOCK
    try:
        written = path.read_text(errors="replace")[:64].strip()
    except OSError:
        return None
    owners = flock_owners(path)
    if owners is not None:
        return Holder(owners[0], written) if owners else None
    try:  # no lock table to read: probe
        handle = open(path)  # noqa: SIM115 - closed below; read-only: creates nothing
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return Holder(None, written)
        except OSError:
            return None
        fcntl.flock(handle, fcntl.LOCK_UN)  # ours for a moment: nobody else holds it
        return None


def flock_owner(path: Path) -> int | None:
    """The PID the kernel lists for a flock on `path` (Linux /proc/locks), else None."""
    owners = flock_owners(path)
    return owners[0] if owners else None


def flock_owners(path: Path) -> list[int] | None:
    """The PIDs the kernel lists as holding a flock on `path` ([] for none), or None
    where there is no lock table to read (not Linux)."""
    try:
        info = os.stat(path)
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    owners = []
    for line in table.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue  # a waiter ("1: -> FLOCK ...") is not the holder
        try:
            major, minor, inode = fields[5].split(":")
            same = (int(inode), int(major, 16), int(minor, 16)) == (
                info.st_ino,
                os.major(info.st_dev),
                os.minor(info.st_dev),
            )
            if same:
                owners.append(int(fields[4]))
        except ValueError:
            continue
    return owners


def process_age(pid: int) -> tuple[str, float] | None:
    """(state letter, seconds since it started) of a live process, from /proc; None where
    /proc cannot tell (not Linux, or gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        fields = stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return fields[0], max(0.0, uptime - started)
