"""`lrconsole attach HOST:SESSION`: runs the `ssh -L` of the README's remote recipe for the
user, attaches through the forwarded socket exactly as `--socket` does, and takes the
forward down afterwards. ssh does the authentication; nothing here listens on TCP. No torch.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import posixpath
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import DEVNULL
from types import FrameType

from lrconsole.core.session.layout import MANIFEST, SOCKET
from lrconsole.errors import UserError

# [USER@]HOST as ssh takes it, never starting with '-' (ssh would read an option there).
HOST = re.compile(r"(?:\w[\w.+-]*@)?\w[\w.-]*")
FORM = "HOST:SESSION ([USER@]HOST, then the session's folder on HOST or its name in ~/sessions)"


def ssh_target(sessions_dir: Path, text: str) -> tuple[str, str] | None:
    """(HOST, SESSION) for `attach HOST:SESSION`, or None for a session on this machine:
    a path with a '/' before its first ':' (as scp reads it), or an existing session whose
    name has a ':' (`run` and `new` accept one)."""
    host, _, session = text.partition(":")
    if "/" in host or text.startswith("."):
        return None
    if (sessions_dir / text / MANIFEST).is_file():
        return None
    if not HOST.fullmatch(host):
        raise UserError(f"{text!r}: no such session here, and {host!r} is not an ssh host: {FORM}")
    if not session or ":" in session:  # `ssh -L` splits its argument at every ':'
        raise UserError(f"{text!r}: give {FORM}, with one ':'")
    return host, session


def ssh_command() -> list[str]:
    """`ssh`, or the command in LRCONSOLE_SSH (another ssh, or one with options)."""
    return shlex.split(os.environ.get("LRCONSOLE_SSH", "")) or ["ssh"]


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"


def remote_folder(ssh: list[str], host: str, session: str) -> str:
    """The session's absolute folder on HOST. A relative path is from the remote home, as
    scp reads it, and a bare name is in ~/sessions (the default `--sessions-dir` of a login
    shell); both ask HOST for its home first, since ssh forwards to a socket path as given."""
    if session.startswith("/"):
        return posixpath.normpath(session)
    relative = session.removeprefix("~/")
    if "/" not in relative and not relative.startswith("."):
        relative = f"sessions/{relative}"
    try:
        done = subprocess.run(
            [*ssh, host, "pwd"], stdin=subprocess.DEVNULL, capture_output=True, text=True
        )
    except OSError as exc:
        raise UserError(f"cannot run {ssh[0]!r}: {exc.strerror or exc} (LRCONSOLE_SSH)") from None
    home = last_line(done.stdout)
    if done.returncode != 0 or not home.startswith("/"):
        raise UserError(f"ssh to {host} failed (exit {done.returncode}): {last_line(done.stderr)}")
    return posixpath.normpath(posixpath.join(home, relative))


@contextlib.contextmanager
def forward(ssh: list[str], host: str, remote: str) -> Iterator[tuple[Path, Callable[[], str]]]:
    """A local socket forwarded to `remote` on HOST by ssh, and what ssh last said; ssh
    stops and the private folder holding the socket goes when the block ends."""
    folder = Path(tempfile.mkdtemp(prefix="lrconsole-ssh-"))  # 0700: only this user gets in
    local, log = folder / SOCKET, folder / "ssh.log"  # a file, not a pipe: it never fills
    # ControlPath=none: this ssh holds the forward itself, so stopping it takes it down (a
    # shared ControlMaster connection would keep it, or could exit before it is up).
    options = ["-o", "ExitOnForwardFailure=yes", "-o", "ControlPath=none"]
    command = [*ssh, "-N", *options, "-L", f"{local}:{remote}", host]
    try:
        with open(log, "w") as errors:
            # Never our stdout: a pipe (`attach --lines | tee`) must close when we exit.
            proc = subprocess.Popen(command, stdin=DEVNULL, stdout=DEVNULL, stderr=errors)
    except OSError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise UserError(f"cannot run {ssh[0]!r}: {exc.strerror or exc} (LRCONSOLE_SSH)") from None
    try:
        while not local.exists():  # ssh listens once it has logged in (maybe after a prompt)
            if proc.poll() is not None:
                said = last_line(log.read_text(errors="replace"))
                raise UserError(f"ssh to {host} failed (exit {proc.returncode}): {said}")
            time.sleep(0.05)
        yield local, lambda: last_line(log.read_text(errors="replace"))
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def exit_on_hangup() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind (SystemExit) so the forward comes down, never orphaned."""

    def leave(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    before = {sig: signal.signal(sig, leave) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def attach_over_ssh(args: argparse.Namespace) -> int | None:
    """`attach HOST:SESSION` (the console, or `--lines`); None when SESSION is local."""
    target = ssh_target(args.sessions_dir, args.session)
    if target is None:
        return None
    host, session = target
    ssh = ssh_command()
    remote = posixpath.join(remote_folder(ssh, host, session), SOCKET)
    where = f"{host}:{remote}"
    from lrconsole.cli import remote as commands

    with exit_on_hangup(), forward(ssh, host, remote) as (local, ssh_said):
        args.socket = local
        try:
            if args.lines:
                commands.socket_status(local)  # no runner there: one line naming HOST:PATH
                return commands.cmd_attach(args)
            return commands.cmd_attach_socket(args)
        except UserError as exc:  # name the remote socket, not the temporary local one
            message, said = str(exc).replace(str(local), where), ssh_said()
            if "open failed" in said:  # ssh got in, but nothing listens at that path
                message = f"no runner answers at {where}: ssh: {said}"
            raise type(exc)(message) from None
