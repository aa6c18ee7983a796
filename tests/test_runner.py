"""The runner process and its control socket, with real processes and real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lrconsole.client import CommandFailed, ConnectionLost, RunnerClient
from lrconsole.core.session.manifest import Manifest
from lrconsole.runner.launch import ensure_runner, runner_alive
from tests.conftest import lrconsole, metric_rows

pytestmark = pytest.mark.slow


def start(folder: Path, **kw: object) -> Path:
    return ensure_runner(folder, create={"task": "lesson", "seed": 0}, **kw)  # type: ignore[arg-type]


def runner_pid(client: RunnerClient) -> int:
    return int(client.snapshot["runner"]["pid"])


@pytest.fixture
async def runner(sessions: Path) -> AsyncIterator[tuple[Path, RunnerClient]]:
    folder = sessions / "live"
    sock = start(folder)
    client = await RunnerClient.connect(sock)
    yield folder, client
    pid = runner_pid(client)
    await client.close()
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


async def wait_epoch(client: RunnerClient, epoch: int, timeout: float = 30) -> None:
    async def scan() -> None:
        while True:
            event = await client.next_event()
            if event.name == "epoch" and event.data["global_epoch"] >= epoch:
                return

    await asyncio.wait_for(scan(), timeout)


async def test_snapshot_queue_events_pause_and_two_clients(
    runner: tuple[Path, RunnerClient],
) -> None:
    folder, client = runner
    snap = client.snapshot
    assert snap["protocol"] == 1
    assert snap["session"]["task"] == "lesson" and snap["session"]["steps_per_epoch"] == 14
    assert snap["state"]["state"] == "paused" and snap["state"]["reason"] == "queue_empty"
    assert snap["history"] == [] and snap["plan"]["segments"] == []
    assert stat.S_IMODE(os.stat(folder / "control.sock").st_mode) == 0o600

    second = await RunnerClient.connect(folder / "control.sock", client="second")
    plan = await client.call("queue", segments=[{"epochs": 400, "lr": 0.03}])
    assert plan["segments"] == [{"epochs": 400, "lr": 0.03}]
    await wait_epoch(client, 3)
    await wait_epoch(second, 3)  # every client sees every event
    await client.call("pause")
    paused = await client.wait_for("paused")
    assert paused.data["reason"] == "operator"
    state = await second.call("status")
    assert state["state"] == "paused"
    step = state["global_step"]
    await asyncio.sleep(0.3)
    assert (await client.call("status"))["global_step"] == step

    late = await RunnerClient.connect(folder / "control.sock", client="late")
    assert len(late.snapshot["history"]) == state["global_epoch"]  # a late console draws it all
    await late.close()
    await client.call("resume")
    await client.wait_for("resumed")
    await second.close()


async def test_set_lr_takes_effect_at_the_very_next_step(
    runner: tuple[Path, RunnerClient], tmp_path: Path
) -> None:
    folder, client = runner
    await client.call("queue", segments=[{"epochs": 400, "lr": 0.03}])
    await wait_epoch(client, 2)
    result = await client.call("set_lr", lr=0.002)
    step = result["global_step"]
    event = await client.wait_for("lr_set")
    assert event.data == {"lr": 0.002, "global_step": step}
    plan = (await client.wait_for("plan")).data
    first, second = plan["segments"]
    assert first["lr"] == 0.03 and second["lr"] == 0.002
    head = first.get("steps", first.get("epochs", 0) * 14)
    assert head == step  # steps before `step` ran at 0.03, `step` itself at 0.002

    async def batches_after() -> float:
        while True:
            e = await client.next_event()
            if e.name == "batch" and e.data["global_step"] > step:
                return float(e.data["lr"])

    assert await asyncio.wait_for(batches_after(), 10) == 0.002
    await client.call("stop_after_epoch")
    await client.wait_for("paused", timeout=30)
    await client.call("shutdown")
    with pytest.raises(ConnectionLost):
        await client.wait_for("never", timeout=10)
    # The exported path, replayed headless, gives the same numbers.
    out = tmp_path / "path.yaml"
    assert lrconsole("export", str(folder), "-o", str(out)).returncode == 0
    replay = lrconsole("--sessions-dir", str(tmp_path), "run", "replay", "--schedule", str(out))
    assert replay.returncode == 0, replay.stderr
    assert metric_rows(tmp_path / "replay") == metric_rows(folder)


async def test_bad_commands_get_error_replies(runner: tuple[Path, RunnerClient]) -> None:
    _, client = runner
    cases = [
        ("queue", {"segments": [{"epochs": 0, "lr": 0.1}]}, "bad_args"),
        ("queue", {"segments": [{"epochs": 3, "lr": 11}]}, "bad_args"),
        ("queue", {"segments": "many"}, "bad_args"),
        ("set_lr", {"lr": "fast"}, "bad_args"),
        ("set_lr", {"lr": -1}, "bad_args"),
        ("set_lr", {"lr": 0.1}, "not_now"),  # nothing queued yet
        ("pause", {"now": True}, "bad_args"),
        ("explode", {}, "unknown_command"),
    ]
    for cmd, args, code in cases:
        with pytest.raises(CommandFailed) as info:
            await client.call(cmd, **args)
        assert info.value.code == code, (cmd, args, info.value)
    assert (await client.call("status"))["state"] == "paused"


async def test_sigkill_gives_a_closed_connection_and_restart_resumes_exactly(
    sessions: Path, tmp_path: Path
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("task: lesson\nsegments:\n  - {epochs: 150, lr: 0.03}\n")
    reference = lrconsole("--sessions-dir", str(tmp_path), "run", "ref", "--schedule", str(plan))
    assert reference.returncode == 0

    folder = sessions / "crash"
    sock = start(folder)
    client = await RunnerClient.connect(sock)
    await client.call("queue", segments=[{"epochs": 150, "lr": 0.03}])
    await wait_epoch(client, 60)
    os.kill(runner_pid(client), signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(ConnectionLost):
        await client.wait_for("never", timeout=10)
    assert time.monotonic() - started < 5  # a closed connection, never a hang
    with pytest.raises(ConnectionLost):
        await client.call("status")

    sock = ensure_runner(folder)  # restart: resumes from the last checkpoint
    again = await RunnerClient.connect(sock)
    if again.snapshot["state"]["global_epoch"] < 150:
        await wait_epoch(again, 150, timeout=60)
    await again.call("shutdown")
    await again.close()
    deadline = time.monotonic() + 20
    while runner_alive(folder) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert metric_rows(folder) == metric_rows(tmp_path / "ref")


async def test_a_dying_trainer_sends_a_fatal_error_and_closes(
    sessions: Path, tmp_path: Path
) -> None:
    task_file = tmp_path / "fragile.py"
    task_file.write_text(
        "from lrconsole.core.tasks.lesson import make_lesson_task\n"
        "def make():\n"
        "    task = make_lesson_task()\n"
        "    calls = [0]\n"
        "    inner = task.loss\n"
        "    def loss(a, b):\n"
        "        calls[0] += 1\n"
        "        if calls[0] > 200:\n"
        "            raise RuntimeError('out of memory (simulated)')\n"
        "        return inner(a, b)\n"
        "    task.loss = loss\n"
        "    return task\n"
    )
    folder = sessions / "fragile"
    sock = ensure_runner(folder, create={"task": f"{task_file}:make", "seed": 0})
    client = await RunnerClient.connect(sock)
    await client.call("queue", segments=[{"epochs": 5, "lr": 0.03}, {"epochs": 50, "lr": 0.01}])
    error = await client.wait_for("error", timeout=30)
    assert error.data["fatal"] is True
    assert "out of memory (simulated)" in error.data["message"]
    with pytest.raises(ConnectionLost):
        await client.wait_for("never", timeout=10)
    await client.close()
    manifest = Manifest.read(folder)
    assert manifest.global_epoch == 5  # the last good checkpoint (segment 0's end) stays


async def test_a_client_that_stops_reading_is_dropped_and_training_goes_on(
    runner: tuple[Path, RunnerClient],
) -> None:
    folder, client = runner
    await client.call("queue", segments=[{"epochs": 2000, "lr": 0.01}])
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(str(folder / "control.sock"))
    stuck.setblocking(False)
    request = b'{"v":1,"id":1,"cmd":"status"}\n' * 200
    sent = 0
    dropped = False
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not dropped:
        try:
            sent += stuck.send(request)
        except BlockingIOError:
            await asyncio.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError):
            dropped = True
        await asyncio.sleep(0)
    stuck.close()
    assert dropped, f"sent {sent} bytes without being dropped"
    before = (await client.call("status"))["global_epoch"]
    await wait_epoch(client, before + 5)  # training never waited for the stuck client


async def test_idle_runner_saves_and_exits(sessions: Path) -> None:
    folder = sessions / "idle"
    start(folder, idle_timeout=1.0)
    deadline = time.monotonic() + 20
    while runner_alive(folder) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not runner_alive(folder)
    assert Manifest.read(folder).state == "stopped"


async def test_cli_status_stop_and_a_second_owner(sessions: Path) -> None:
    folder = sessions / "cli"
    start(folder)
    status = lrconsole("--sessions-dir", str(sessions), "status", "cli")
    assert status.returncode == 0 and "paused (queue_empty)" in status.stdout
    busy = lrconsole("--sessions-dir", str(sessions), "run", "cli")
    assert busy.returncode == 2 and "in use by PID" in busy.stderr
    stop = lrconsole("--sessions-dir", str(sessions), "stop", "cli")
    assert stop.returncode == 0 and "stopped" in stop.stdout
    assert not runner_alive(folder)
    status = lrconsole("--sessions-dir", str(sessions), "status", "cli", "--json")
    assert '"state": "stopped"' in status.stdout
