"""`lrconsole attach HOST:SESSION` runs `ssh -L` to the runner's control.sock for the user.
The ssh here is a fake one (LRCONSOLE_SSH): a script that logs its arguments, answers
`pwd` with a home folder, and relays the `-L LOCAL:REMOTE` unix socket as ssh would, to a
real runner's control.sock."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lrconsole.client import RunnerClient
from lrconsole.core.session.discover import runner_pid
from lrconsole.core.session.layout import SOCKET
from lrconsole.runner.launch import ensure_runner
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

FAKE_SSH = r"""
import json, os, socket, sys, threading
argv = sys.argv[1:]
with open(os.environ["FAKE_SSH_LOG"], "a") as log:
    log.write(json.dumps({"pid": os.getpid(), "argv": argv}) + "\n")
if os.environ.get("FAKE_SSH_FAIL"):
    print("Warning: a line before the last", file=sys.stderr)
    print("ssh: connect to host fakehost port 22: Connection refused", file=sys.stderr)
    sys.exit(255)
words, forward, i = [], None, 0
while i < len(argv):
    if argv[i] in ("-L", "-o"):
        forward = argv[i + 1] if argv[i] == "-L" else forward
        i += 2
    else:
        words += [] if argv[i].startswith("-") else [argv[i]]
        i += 1
if words[1:] == ["pwd"]:
    print(os.environ["FAKE_SSH_HOME"])
    sys.exit(0)
listen, target = forward.split(":")
server = socket.socket(socket.AF_UNIX)
server.bind(listen)
server.listen()

def pipe(a, b):
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

while True:
    near, _ = server.accept()
    far = socket.socket(socket.AF_UNIX)
    try:
        far.connect(target)
    except OSError as exc:  # what ssh prints when the far end refuses the channel
        print(f"channel 2: open failed: connect failed: {exc.strerror}", file=sys.stderr)
        sys.stderr.flush()
        near.close()
        continue
    threading.Thread(target=pipe, args=(near, far), daemon=True).start()
    threading.Thread(target=pipe, args=(far, near), daemon=True).start()
"""


class FakeSsh:
    def __init__(self, root: Path, home: Path) -> None:
        self.script = root / "fake_ssh.py"
        self.script.write_text(FAKE_SSH)
        self.log = root / "ssh.log"
        self.tmp = root / "tmp"  # the attach's TMPDIR: its private folder must be gone after
        self.tmp.mkdir()
        self.env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(ROOT),
            "LRCONSOLE_SSH": f"{sys.executable} {self.script}",
            "FAKE_SSH_LOG": str(self.log),
            "FAKE_SSH_HOME": str(home),
            "TMPDIR": str(self.tmp),
        }

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def attach(self, *args: str, **env: str) -> subprocess.Popen[str]:
        # cwd: a folder without sessions, as on the machine one attaches from
        return subprocess.Popen(
            [sys.executable, "-m", "lrconsole", "attach", *args],
            cwd=self.tmp.parent,
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def assert_cleaned_up(self) -> None:
        assert list(self.tmp.iterdir()) == []  # the socket's private folder is removed
        for call in self.calls():  # and no ssh is left running
            with pytest.raises(ProcessLookupError):
                os.kill(call["pid"], 0)


@pytest.fixture
def short_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="sshat", dir="/tmp"))  # socket paths: 107 bytes max
    yield root
    import shutil

    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def far(short_root: Path) -> Iterator[Path]:
    """A paused runner on the lesson in HOME/sessions/far on the "remote" machine."""
    folder = short_root / "home" / "sessions" / "far"
    folder.parent.mkdir(parents=True)
    ensure_runner(folder, create={"task": "lesson", "seed": 0})
    yield folder
    pid = runner_pid(folder)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def call(sock: Path, cmd: str, **args: Any) -> dict[str, Any]:
    client = await RunnerClient.connect(sock, hello=False)
    try:
        return await client.call(cmd, **args)
    finally:
        await client.close()


def wait_gone(folder: Path) -> None:
    deadline = time.monotonic() + 30
    while runner_pid(folder) is not None and time.monotonic() < deadline:
        time.sleep(0.05)


def test_attach_host_path_lines_runs_ssh_and_cleans_up(short_root: Path, far: Path) -> None:
    ssh = FakeSsh(short_root, short_root / "home")
    attach = ssh.attach(f"gpu-box:{far}", "--lines")
    assert attach.stdout is not None
    assert attach.stdout.readline().startswith("far: paused (queue_empty)  epoch 0")
    asyncio.run(call(far / SOCKET, "queue", segments=[{"epochs": 2, "lr": 0.03}]))
    lines: list[str] = []
    while len([x for x in lines if x.startswith("epoch ")]) < 2:
        line = attach.stdout.readline()
        assert line, attach.stderr.read() if attach.stderr else ""
        lines.append(line)
    asyncio.run(call(far / SOCKET, "shutdown"))
    out, err = attach.communicate(timeout=30)
    assert attach.returncode == 0, err
    assert 'bye: {"reason": "shutdown"}' in out
    # One ssh, the README's command: no remote shell, fail if the forward cannot be set up,
    # and its own connection (not a shared ControlMaster one that would outlive it).
    (only,) = ssh.calls()
    local = only["argv"][6].split(":")[0]
    assert only["argv"] == [
        "-N",
        "-o",
        "ExitOnForwardFailure=yes",
        "-o",
        "ControlPath=none",
        "-L",
        f"{local}:{far}/{SOCKET}",
        "gpu-box",
    ]
    assert Path(local).parent.parent == ssh.tmp and Path(local).name == SOCKET
    ssh.assert_cleaned_up()


def test_a_bare_name_is_in_the_remote_home_sessions(short_root: Path, far: Path) -> None:
    ssh = FakeSsh(short_root, short_root / "home")
    attach = ssh.attach("me@gpu-box:far", "--lines")
    assert attach.stdout is not None
    assert attach.stdout.readline().startswith("far: paused (queue_empty)  epoch 0")
    asyncio.run(call(far / SOCKET, "shutdown"))
    _, err = attach.communicate(timeout=30)
    assert attach.returncode == 0, err
    home, fwd = ssh.calls()
    assert home["argv"] == ["me@gpu-box", "pwd"]  # the home first: ssh forwards paths as given
    assert fwd["argv"][6].endswith(f":{far}/{SOCKET}") and fwd["argv"][-1] == "me@gpu-box"
    ssh.assert_cleaned_up()
    wait_gone(far)


def test_no_runner_at_the_remote_path_is_one_line(short_root: Path) -> None:
    ssh = FakeSsh(short_root, short_root / "home")
    for extra in (["--lines"], []):  # the console checks before it starts, too
        attach = ssh.attach("gpu-box:/nowhere/exp1", *extra)
        out, err = attach.communicate(timeout=60)
        assert attach.returncode == 2, err
        assert err.splitlines() == [
            "lrconsole: error: no runner answers at gpu-box:/nowhere/exp1/control.sock: "
            "ssh: channel 2: open failed: connect failed: No such file or directory"
        ]
        assert out == ""
    ssh.assert_cleaned_up()


def test_ssh_failing_at_once_is_one_line_exit_2(short_root: Path) -> None:
    ssh = FakeSsh(short_root, short_root / "home")
    for target in ("gpu-box:/x/sessions/exp1", "gpu-box:exp1"):  # the forward; the home
        attach = ssh.attach(target, "--lines", FAKE_SSH_FAIL="1")
        out, err = attach.communicate(timeout=60)
        assert attach.returncode == 2 and out == ""
        assert err.splitlines() == [
            "lrconsole: error: ssh to gpu-box failed (exit 255): "
            "ssh: connect to host fakehost port 22: Connection refused"
        ]
    ssh.assert_cleaned_up()
    missing = ssh.attach("gpu-box:/x", "--lines", LRCONSOLE_SSH="/nonexistent/ssh")
    _, err = missing.communicate(timeout=60)
    assert missing.returncode == 2
    assert err.splitlines() == [
        "lrconsole: error: cannot run '/nonexistent/ssh': No such file or directory (LRCONSOLE_SSH)"
    ]


def test_bad_host_session_is_one_line_and_local_names_stay_local(short_root: Path) -> None:
    ssh = FakeSsh(short_root, short_root / "home")
    for text, why in (
        ("a:b:c", "with one ':'"),
        ("gpu-box:", "with one ':'"),
        (":far", "'' is not an ssh host"),
        ("-oProxyCommand=x:far", "'-oProxyCommand=x' is not an ssh host"),
    ):
        attach = ssh.attach("--lines", "--", text)  # `--`: else argparse takes "-o..."
        _, err = attach.communicate(timeout=60)
        assert attach.returncode == 2, (text, err)
        assert len(err.splitlines()) == 1 and why in err, err
        assert err.startswith(f"lrconsole: error: {text!r}: ")
    # A session with a ':' in its name (made before `run` and `new` refused such names) is
    # attached here, and a path with a '/' before its ':' is a local path, as scp reads it.
    local = short_root / "sessions" / "a:b"
    local.mkdir(parents=True)
    (local / "manifest.yaml").write_text("not read before the socket\n")
    for text in ("a:b", "./sessions/a:b"):
        attach = ssh.attach(text, "--lines")
        _, err = attach.communicate(timeout=60)
        assert attach.returncode == 2
        assert f"no runner answers at sessions/a:b/{SOCKET}: " in err, err
    assert ssh.calls() == []  # ssh never ran


def test_sigterm_takes_the_forward_down(short_root: Path, far: Path) -> None:
    ssh = FakeSsh(short_root, short_root / "home")
    attach = ssh.attach(f"gpu-box:{far}", "--lines")
    assert attach.stdout is not None and attach.stdout.readline().startswith("far: paused")
    attach.send_signal(signal.SIGTERM)  # the default action would orphan ssh -N
    attach.communicate(timeout=30)
    assert attach.returncode == 128 + signal.SIGTERM
    ssh.assert_cleaned_up()
    assert asyncio.run(call(far / SOCKET, "status"))["state"] == "paused"  # the run goes on


def test_the_console_gets_the_forwarded_socket(
    short_root: Path, far: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --lines it is the console of `attach --socket`, on the forwarded socket
    (replaced here by a status call through it: the console needs a terminal)."""
    from lrconsole.cli import main, remote

    ssh = FakeSsh(short_root, short_root / "home")
    for name in ("LRCONSOLE_SSH", "FAKE_SSH_LOG", "FAKE_SSH_HOME"):
        monkeypatch.setenv(name, ssh.env[name])
    monkeypatch.setattr(tempfile, "tempdir", str(ssh.tmp))
    seen: list[tuple[Path, str]] = []

    def console(args: Any) -> int:
        seen.append((args.socket, remote.socket_status(args.socket)["state"]))
        return 0

    monkeypatch.setattr(remote, "cmd_attach_socket", console)
    assert main(["attach", "gpu-box:far"]) == 0
    ((socket, state),) = seen
    assert state == "paused" and socket.parent.parent == ssh.tmp
    ssh.assert_cleaned_up()
