"""Remote attach: `--socket PATH` reaches a runner through a forwarded socket, as after
`ssh -L /tmp/x.sock:/path/sessions/NAME/control.sock host`. The forward here is a real
second process relaying a second socket path to the runner's control.sock."""

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
from lrconsole.core.session.layout import SOCKET
from lrconsole.runner.launch import ensure_runner, runner_alive
from tests.conftest import ROOT, lrconsole

pytestmark = pytest.mark.slow

# A unix-socket relay, what `ssh -L` does between two machines: one line per connection.
FORWARDER = """
import os, socket, sys, threading
listen, target = sys.argv[1], sys.argv[2]
server = socket.socket(socket.AF_UNIX)
server.bind(listen)
os.chmod(listen, 0o600)
server.listen()
print("ready", flush=True)

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
    far.connect(target)
    print("forwarded", flush=True)
    threading.Thread(target=pipe, args=(near, far), daemon=True).start()
    threading.Thread(target=pipe, args=(far, near), daemon=True).start()
"""


@pytest.fixture
def remote(sessions: Path) -> Iterator[tuple[Path, Path, subprocess.Popen[str]]]:
    """A paused runner on the lesson (its folder) and a forwarded socket path to it."""
    folder = sessions / "far"
    sock = ensure_runner(folder, create={"task": "lesson", "seed": 0})
    short = Path(tempfile.mkdtemp(prefix="fwd", dir="/tmp"))  # socket paths max 107 bytes
    forwarded = short / "x.sock"
    relay = subprocess.Popen(
        [sys.executable, "-c", FORWARDER, str(forwarded), str(sock)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert relay.stdout is not None and relay.stdout.readline() == "ready\n"
    yield folder, forwarded, relay
    relay.kill()
    relay.wait()
    forwarded.unlink(missing_ok=True)
    short.rmdir()
    from lrconsole.core.session.discover import runner_pid

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


def attach_lines(forwarded: Path) -> subprocess.Popen[str]:
    # No --sessions-dir: nothing of the session exists where this runs.
    return subprocess.Popen(
        [sys.executable, "-m", "lrconsole", "attach", "--socket", str(forwarded), "--lines"],
        cwd=tempfile.gettempdir(),
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_status_and_attach_lines_through_a_forwarded_socket(
    remote: tuple[Path, Path, subprocess.Popen[str]],
) -> None:
    folder, forwarded, relay = remote
    assert forwarded.resolve() != (folder / SOCKET).resolve()
    status = lrconsole("status", "--socket", str(forwarded))
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith(f"{forwarded}: paused (queue_empty)  epoch 0  step 0")
    as_json = lrconsole("status", "--socket", str(forwarded), "--json")
    assert json.loads(as_json.stdout)["state"] == "paused"

    attach = attach_lines(forwarded)
    assert attach.stdout is not None
    # The session's name comes from the runner, over the socket.
    assert attach.stdout.readline().startswith("far: paused (queue_empty)  epoch 0")
    asyncio.run(call(folder / SOCKET, "queue", segments=[{"epochs": 3, "lr": 0.03}]))
    lines = []
    while len([x for x in lines if x.startswith("epoch ")]) < 3:
        line = attach.stdout.readline()
        assert line, attach.stderr.read() if attach.stderr else ""
        lines.append(line)
    asyncio.run(call(folder / SOCKET, "shutdown"))
    out, err = attach.communicate(timeout=30)
    assert attach.returncode == 0, err
    assert 'bye: {"reason": "shutdown"}' in out
    # The epochs printed through the forward are the session's own metrics.
    epochs = [x.split() for x in lines if x.startswith("epoch ")]
    rows = (folder / "metrics.csv").read_text().splitlines()[1:]
    for printed, row in zip(epochs, rows, strict=True):
        values = row.split(",")
        assert printed[1] == values[0]
        assert printed[5] == f"{float(values[4]):.5g}" and printed[7] == f"{float(values[5]):.5g}"
    assert relay.stdout is not None
    relay.kill()
    forwarded_count = relay.stdout.read().count("forwarded")
    assert forwarded_count == 3  # status, status --json, attach: all went through the relay


def test_attach_lines_through_a_forward_exits_4_when_the_runner_dies(
    remote: tuple[Path, Path, subprocess.Popen[str]],
) -> None:
    folder, forwarded, _ = remote
    attach = attach_lines(forwarded)
    assert attach.stdout is not None and attach.stdout.readline().startswith("far: ")
    from lrconsole.core.session.discover import runner_pid

    pid = runner_pid(folder)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _, err = attach.communicate(timeout=30)
    assert attach.returncode == 4
    assert f"lost the runner at {forwarded}" in err.splitlines()[-1]


def test_bad_socket_arguments_are_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "none.sock"
    for command in (["status"], ["attach", "--lines"], ["attach"]):
        done = lrconsole(*command, "--socket", str(missing))
        assert done.returncode == 2, (command, done.stderr)
        assert done.stderr.startswith(f"lrconsole: error: no runner answers at {missing}")
        assert len(done.stderr.splitlines()) == 1 and done.stdout == ""
    for args in (["status"], ["attach", "x", "--socket", str(missing)]):
        done = lrconsole(*args)
        assert done.returncode == 2 and "give a SESSION or --socket PATH" in done.stderr


async def test_the_console_steers_through_a_forwarded_socket(
    remote: tuple[Path, Path, subprocess.Popen[str]],
) -> None:
    from textual.worker import WorkerCancelled

    from lrconsole.cli.remote import socket_app
    from lrconsole.tui.screens.run import RunScreen

    folder, forwarded, _ = remote
    app = socket_app(Path("sessions"), forwarded)
    async with app.run_test(size=(120, 40)) as pilot:

        async def until(predicate: Any, what: str) -> None:
            deadline = time.monotonic() + 60
            while not predicate():
                assert time.monotonic() < deadline, f"timed out waiting for {what}"
                await pilot.pause(0.05)

        await until(lambda: isinstance(app.screen, RunScreen), "the run screen")
        screen = app.screen
        assert isinstance(screen, RunScreen)
        await until(lambda: screen.controller.connected, "the connection")
        assert screen.model.session["name"] == "far"
        # Enter queues the planner's default segment (30 @ 0.03) on the far runner.
        await pilot.press("enter")
        await until(lambda: screen.model.global_epoch >= 30, "30 epochs")
        await screen.controller.close(shutdown=True)
        app.workers.cancel_all()
        with contextlib.suppress(WorkerCancelled):
            await app.workers.wait_for_complete()
    deadline = time.monotonic() + 30
    while runner_alive(folder) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not runner_alive(folder)
    rows = (folder / "metrics.csv").read_text().splitlines()[1:]
    assert len(rows) == 30 and {r.split(",")[3] for r in rows} == {"0.03"}


def test_a_suspended_runner_behind_a_forward_is_not_answering(
    remote: tuple[Path, Path, subprocess.Popen[str]],
) -> None:
    from lrconsole.core.session.discover import runner_pid

    folder, forwarded, _ = remote
    pid = runner_pid(folder)
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        for command in (["status"], ["attach", "--lines"]):
            done = lrconsole(*command, "--socket", str(forwarded))
            assert done.returncode == 3, (command, done.stderr)
            assert done.stderr.startswith(f"lrconsole: error: not answering: {forwarded}: ")
            assert len(done.stderr.splitlines()) == 1
    finally:
        os.kill(pid, signal.SIGCONT)
    assert lrconsole("status", "--socket", str(forwarded)).returncode == 0
