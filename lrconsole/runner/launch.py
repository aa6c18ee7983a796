"""Start a session's runner in the background, or find the one already there. No torch.

The runner is `python -m lrconsole.runner`, in a new process session so that closing the
console (or the SSH connection) leaves training running. Its output goes to
`<session>/runner.log`.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lrconsole.core.atomic import why_unwritable
from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.session.holder import lock_holder, process_age
from lrconsole.core.session.layout import (
    LOCK,
    MANIFEST,
    RUNNER_LOG,
    RUNNER_SCHEDULE,
    SOCKET,
)
from lrconsole.errors import NotAnswering, SessionBusy, UserError

MAX_SOCKET_PATH = 100  # AF_UNIX paths are limited to 108 bytes
STARTING_S = 30.0  # a lock holder this young with no socket is probably starting up


def socket_path(folder: Path) -> Path:
    path = folder / SOCKET
    if len(str(path)) > MAX_SOCKET_PATH:
        raise UserError(f"{path}: path too long for a Unix socket; use a shorter --sessions-dir")
    return path


def runner_alive(folder: Path, timeout: float = 2.0) -> bool:
    """True when a runner answers a status request on the session's socket.

    A bare connect is not enough: a runner being killed can still accept for a moment.
    """
    path = folder / SOCKET
    if not path.exists():
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(timeout)
    try:
        probe.connect(str(path))
        probe.sendall(b'{"v":1,"id":0,"cmd":"status"}\n')
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = probe.recv(4096)
            if not chunk:
                return False
            reply += chunk
        return b'"type":"reply"' in reply
    except OSError:
        return False
    finally:
        probe.close()


def ensure_runner(
    folder: Path,
    *,
    schedule: Schedule | None = None,
    create: dict[str, Any] | None = None,
    timeout: float = 60.0,
    idle_timeout: float | None = None,
    paused: bool = False,
) -> Path:
    """The session's control socket, starting a runner first if none answers.

    `schedule` creates or extends the session from a schedule; `create` = {"task": SPEC,
    "seed": N} creates an empty one that waits for segments. `paused`: a session reopened
    with queued work left waits for the operator (space) instead of training at once.
    """
    path = socket_path(folder)
    if runner_alive(folder):
        return path
    check_answering(folder)
    command = [sys.executable, "-m", "lrconsole.runner", str(folder)]
    if schedule is not None:
        command += ["--schedule", str(folder / RUNNER_SCHEDULE)]
    elif create is not None:
        command += [
            "--task",
            str(create.get("task") or "lesson"),
            "--seed",
            str(create.get("seed") or 0),
        ]
    if idle_timeout is not None:
        command += ["--idle-timeout", str(idle_timeout)]
    if paused:
        command.append("--paused")
    try:
        folder.mkdir(parents=True)
        new_folder = True  # made by this call: atomically, so only one launcher thinks so
    except FileExistsError:
        new_folder = False
    except OSError as exc:
        raise UserError(f"{folder}: cannot create: {why_unwritable(folder, exc)}") from None
    created = {name for name in (RUNNER_LOG, RUNNER_SCHEDULE) if not (folder / name).exists()}
    try:
        process = spawn(folder, command, schedule)
    except (OSError, UserError) as exc:  # a full disk, a read-only folder
        forget_failed_start(folder, new_folder, created)
        if isinstance(exc, UserError):
            raise
        why = why_unwritable(folder, exc)
        raise UserError(f"{folder}: cannot start a runner: {why}") from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if runner_alive(folder):
            return path
        code = process.poll()
        if code is not None:
            error = last_error(folder)
            forget_failed_start(folder, new_folder, created)
            raise UserError(f"the runner for {folder.name!r} exited ({code}): {error}")
        time.sleep(0.05)
    raise UserError(
        f"the runner for {folder.name!r} did not answer within {timeout:.0f}s; "
        f"see {folder / RUNNER_LOG}"
    )


def spawn(folder: Path, command: list[str], schedule: Schedule | None) -> subprocess.Popen[bytes]:
    """Write the runner's schedule and start it, its output going to runner.log."""
    if schedule is not None:
        schedule.dump(folder / RUNNER_SCHEDULE)
    log = open(folder / RUNNER_LOG, "ab")  # noqa: SIM115 - handed to the child
    try:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n".encode())
        log.flush()
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    finally:
        with contextlib.suppress(OSError):  # a flush that failed has said so already
            log.close()


def forget_failed_start(folder: Path, new_folder: bool, created: set[str]) -> None:
    """A session that was never created leaves nothing behind: not a half folder that
    `show` calls "not a session" and a later `run` trips over.

    Only while holding the session's lock, and only what this launcher made: a runner
    that lost the race to another launcher's must not take the winner's files with it.
    """
    try:
        handle = open(folder / LOCK, "a+")  # noqa: SIM115 - closed below
    except OSError:  # not even a lock file fits (a full disk): no runner can hold one
        if new_folder and not (folder / LOCK).exists():
            shutil.rmtree(folder, ignore_errors=True)
        return
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # another process holds the session: what is here is its own
        if (folder / MANIFEST).exists():
            return  # a session came of it after all (or was there before)
        if new_folder:  # made by this call, and no session came of it
            shutil.rmtree(folder, ignore_errors=True)
            return
        for name in created:
            with contextlib.suppress(FileNotFoundError):
                (folder / name).unlink()
    finally:
        handle.close()


def check_answering(folder: Path) -> None:
    """Raise NotAnswering (exit 3) when a live process holds the session's lock but no
    runner answered: suspended (SIGSTOP, Ctrl-Z) or wedged. A request sent to it would be
    lost, and a new runner would only find the session in use."""
    holder = lock_holder(folder)
    if holder is not None:
        why = "suspended?"
        age = process_age(holder.pid) if holder.pid is not None else None
        if age is not None and age[0] not in "Tt" and age[1] < STARTING_S:
            # A runner holds the lock from its first moment, and opens its socket once
            # torch and the task are loaded: a few seconds.
            why = f"started {age[1]:.0f} s ago: still starting? try again in a few seconds"
        raise NotAnswering(f"not answering: {holder.describe()} holds the session ({why})")


def check_free(folder: Path) -> None:
    """Raise SessionBusy (exit 2) when any process holds the session: a runner that
    answers (background, or a foreground `lrconsole run`) or one that does not."""
    if runner_alive(folder):
        holder = lock_holder(folder)
        who = holder.describe() if holder is not None else "a runner"
        name = folder.name
        raise SessionBusy(
            f"session {name!r} is in use by {who}; attach to it with `lrconsole attach "
            f"{name}` or end it with `lrconsole stop {name}`"
        )
    check_answering(folder)


def last_error(folder: Path) -> str:
    """The last meaningful line of the runner's log: what a user needs to see."""
    try:
        lines = (folder / RUNNER_LOG).read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    for line in reversed(lines):
        if line.strip() and not line.startswith("---"):
            return line.strip().removeprefix("lrconsole: error: ")
    return "no output"
