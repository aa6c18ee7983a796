"""Start a session's runner in the background, or find the one already there. No torch.

The runner is `python -m lrconsole.runner`, in a new process session so that closing the
console (or the SSH connection) leaves training running. Its output goes to
`<session>/runner.log`.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.session.layout import (
    LAUNCH_FILES,
    MANIFEST,
    RUNNER_LOG,
    RUNNER_SCHEDULE,
    SOCKET,
)
from lrconsole.errors import UserError

MAX_SOCKET_PATH = 100  # AF_UNIX paths are limited to 108 bytes


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
    new_folder = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "lrconsole.runner", str(folder)]
    if schedule is not None:
        plan = folder / RUNNER_SCHEDULE
        schedule.dump(plan)
        command += ["--schedule", str(plan)]
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
    log = open(folder / RUNNER_LOG, "ab")  # noqa: SIM115 - handed to the child
    try:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    finally:
        log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if runner_alive(folder):
            return path
        code = process.poll()
        if code is not None:
            error = last_error(folder)
            if not (folder / MANIFEST).exists():
                forget_failed_start(folder, new_folder)
            raise UserError(f"the runner for {folder.name!r} exited ({code}): {error}")
        time.sleep(0.05)
    raise UserError(
        f"the runner for {folder.name!r} did not answer within {timeout:.0f}s; "
        f"see {folder / RUNNER_LOG}"
    )


def forget_failed_start(folder: Path, new_folder: bool) -> None:
    """A session that was never created leaves nothing behind: not a half folder that
    `show` calls "not a session" and a later `run` trips over."""
    if new_folder:  # made by this call, and no session came of it
        shutil.rmtree(folder, ignore_errors=True)
        return
    for name in (*LAUNCH_FILES, SOCKET):
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()


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
