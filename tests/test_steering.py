"""Steering the running segment (set LR now, end it, extend or shorten it, queue from the
CLI, resume after a divergence), each with a real runner; export then replay is bit for bit."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from lrconsole.cli.remote import describe_state, format_event
from lrconsole.client import CommandFailed, Event, RunnerClient
from lrconsole.core.plan.plan import Plan
from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.plan.segment import Segment
from lrconsole.runner.launch import ensure_runner, runner_alive
from tests.conftest import lrconsole, metric_rows

SPE = 14  # the lesson task's steps per epoch

Runner = tuple[Path, RunnerClient]


@pytest.fixture
async def runner(sessions: Path) -> AsyncIterator[Runner]:
    folder = sessions / "steered"
    sock = ensure_runner(folder, create={"task": "lesson", "seed": 0})
    client = await RunnerClient.connect(sock)
    yield folder, client
    pid = int(client.snapshot["runner"]["pid"])
    await client.close()
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def cli(folder: Path, *args: str) -> str:
    """A steering command on the session: its one line; it must succeed."""
    done = lrconsole("--sessions-dir", str(folder.parent), args[0], folder.name, *args[1:])
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 1 and done.stderr == ""
    return done.stdout


async def wait_state(
    client: RunnerClient, done: Callable[[dict], bool], timeout: float = 120
) -> dict:
    """Poll `status` until `done(state)`; events may be stale, the state never is."""
    deadline = time.monotonic() + timeout
    while True:
        state = await client.call("status")
        if done(state):
            return state
        assert time.monotonic() < deadline, f"waited for a state; the last: {state}"
        await asyncio.sleep(0.01)


def dry(state: dict) -> bool:
    """Every segment trained, and the runner waits for more."""
    return state["reason"] == "queue_empty" and state["segment"] == state["segments"]


async def pause_mid_epoch(client: RunnerClient, after_epoch: int = 2) -> int:
    """Pause inside an epoch (not at its end) once `after_epoch` epochs are done; the step."""
    await wait_state(client, lambda state: state["global_epoch"] >= after_epoch)
    for _ in range(20):
        await client.call("pause")
        state = await wait_state(client, lambda state: state["reason"] == "operator")
        step = int(state["global_step"])
        if step % SPE:
            return step
        await client.call("resume")
        await wait_state(client, lambda state: state["state"] == "running")
    raise AssertionError("never paused inside an epoch")


async def finish(client: RunnerClient) -> None:
    """Wait for the queue to run dry, then save and stop the runner."""
    await wait_state(client, dry)
    await client.call("shutdown")
    with contextlib.suppress(Exception):
        await client.wait_for("never", timeout=10)


def replay_matches(folder: Path, tmp_path: Path) -> dict:
    """Export the session, replay it headless; every metrics column but time is equal.
    The exported schedule, as data."""
    deadline = time.monotonic() + 20
    while runner_alive(folder) and time.monotonic() < deadline:
        time.sleep(0.05)
    out = tmp_path / "path.yaml"
    assert lrconsole("export", str(folder), "-o", str(out)).returncode == 0
    replay = lrconsole("--sessions-dir", str(tmp_path), "run", "replay", "--schedule", str(out))
    assert replay.returncode == 0, replay.stderr
    assert metric_rows(tmp_path / "replay") == metric_rows(folder)
    assert len(metric_rows(folder)) > 3
    return yaml.safe_load(out.read_text())


Action = Callable[[Path, RunnerClient, int], Awaitable[None]]


async def steer(runner: Runner, tmp_path: Path, segments: list[dict], act: Action) -> dict:
    folder, client = runner
    await client.call("queue", segments=segments)
    step = await pause_mid_epoch(client)
    await act(folder, client, step)
    cli(folder, "resume")
    await finish(client)
    return replay_matches(folder, tmp_path)


pytestmark = pytest.mark.slow


async def test_set_lr_now_splits_the_segment_and_replays(runner: Runner, tmp_path: Path) -> None:
    seen: list[int] = []

    async def act(folder: Path, client: RunnerClient, step: int) -> None:
        seen.append(step)
        line = cli(folder, "set-lr", "0.01")
        epoch, batch = divmod(step, SPE)
        assert f"lr 0.01 from the next step (in epoch {epoch + 1} after batch {batch})" in line
        assert "to the end of the running segment (numbered 2 from there)" in line

    plan = await steer(runner, tmp_path, [{"epochs": 100, "lr": 0.03}], act)
    first, rest = plan["segments"]
    assert first == {"steps": seen[0], "lr": 0.03}
    assert rest == {"steps": 100 * SPE - seen[0], "lr": 0.01}


@pytest.mark.parametrize("now", [False, True])
async def test_end_segment_moves_the_queue_on_and_replays(
    runner: Runner, tmp_path: Path, now: bool
) -> None:
    seen: list[int] = []

    async def act(folder: Path, client: RunnerClient, step: int) -> None:
        seen.append(step)
        line = cli(folder, "end-segment", *(["--now"] if now else []))
        epoch, batch = divmod(step, SPE)
        where = f"in epoch {epoch + 1} after batch {batch}" if now else f"after epoch {epoch + 1}"
        assert f"segment 1 ends {where}; the queue moves on" in line

    segments = [{"epochs": 400, "lr": 0.03}, {"epochs": 3, "lr": 0.01}]
    plan = await steer(runner, tmp_path, segments, act)
    first, second = plan["segments"]
    step = seen[0]
    assert first == (
        {"steps": step, "lr": 0.03} if now else {"epochs": step // SPE + 1, "lr": 0.03}
    )
    assert second == {"epochs": 3, "lr": 0.01}  # the queue moved on, whole


async def test_extend_and_shorten_the_running_segment_replay(
    runner: Runner, tmp_path: Path
) -> None:
    seen: list[int] = []

    async def act(folder: Path, client: RunnerClient, step: int) -> None:
        seen.append(step)
        assert "segment 1 is now 410 epochs" in cli(folder, "extend", "10")
        # Shorter than what is done: it still finishes the epoch in progress.
        line = cli(folder, "extend", "-1000")
        assert f"segment 1 is now {step // SPE + 1} epochs" in line
        assert "stays" in cli(folder, "extend", "-1")  # nothing left to take off
        state = await client.call("status")
        assert state["segments"] == 2 and state["segment"] == 0

    segments = [{"epochs": 400, "lr": 0.03}, {"epochs": 2, "lr": 0.01}]
    plan = await steer(runner, tmp_path, segments, act)
    assert plan["segments"] == [{"epochs": seen[0] // SPE + 1, "lr": 0.03}, segments[1]]


async def test_extend_after_the_queue_ran_dry_trains_on(runner: Runner, tmp_path: Path) -> None:
    folder, client = runner
    await client.call("queue", segments=[{"epochs": 3, "lr": 0.03}])
    await wait_state(client, dry)
    assert "segment 1 is now 12 epochs, ending after epoch 12" in cli(folder, "extend", "9")
    await finish(client)
    assert replay_matches(folder, tmp_path)["segments"] == [{"epochs": 12, "lr": 0.03}]


async def test_cli_queue_with_a_shape_and_extend_it_replay(runner: Runner, tmp_path: Path) -> None:
    folder, client = runner
    await client.call("queue", segments=[{"epochs": 2, "lr": 0.03}])
    await wait_state(client, dry)
    line = cli(folder, "queue", "--epochs", "3", "--lr", "0.02", "--shape", "cosine")
    assert line.strip() == "steered: queued segment 2: 3 epochs @ 0.02 cosine"
    await wait_state(client, dry)
    # The cosine segment ended: extending it keeps the LRs trained (its T_max is pinned).
    assert "segment 2 is now 5 epochs" in cli(folder, "extend", "2")
    await finish(client)
    plan = replay_matches(folder, tmp_path)
    assert plan["segments"][1] == {
        "epochs": 5,
        "lr": 0.02,
        "shape": "cosine",
        "params": {"T_max": 3 * SPE},
    }
    text = (tmp_path / "path.yaml").read_text()
    assert "# segment 1: epochs 1-2\n" in text and "# segment 2: epochs 3-7\n" in text


async def test_resume_after_divergence_needs_a_rollback_or_accept(
    runner: Runner, tmp_path: Path
) -> None:
    folder, client = runner
    await client.call("queue", segments=[{"epochs": 3, "lr": 0.03}, {"epochs": 10, "lr": 5.0}])
    await client.wait_for("error", timeout=60)
    with pytest.raises(CommandFailed) as refused:
        await client.call("resume")
    assert refused.value.code == "diverged" and "roll back" in refused.value.message
    bad = lrconsole("--sessions-dir", str(folder.parent), "resume", folder.name)
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1
    assert "diverged" in bad.stderr and "--accept-divergence" in bad.stderr
    state = await client.call("status")
    assert state["state"] == "paused" and state["diverged"] is not None
    status = cli(folder, "status")
    assert f"diverged in epoch {state['diverged']}" in status and "segment 2 of 2" in status
    await client.call("queue", segments=[{"epochs": 2, "lr": 0.01}])  # queueing: still held
    with pytest.raises(CommandFailed):
        await client.call("resume")
    await client.call("shutdown")
    await client.close()
    while runner_alive(folder):
        time.sleep(0.05)

    # The diverged LR is not shown as plainly queued, and a new runner holds it too.
    show = lrconsole("--sessions-dir", str(folder.parent), "show", folder.name).stdout
    row = next(line for line in show.splitlines() if line.startswith("2 "))
    assert "10 epochs @ 5" in row and "diverged in epoch" in row and "queued" not in row
    assert "--accept-divergence" in show
    again = await RunnerClient.connect(ensure_runner(folder, paused=True))
    try:
        assert again.snapshot["state"]["diverged"] is not None
        with pytest.raises(CommandFailed) as held:
            await again.call("resume")
        assert held.value.code == "diverged"
        accepted = cli(folder, "resume", "--accept-divergence")
        assert "resumed" in accepted
        await again.wait_for("resumed", timeout=30)  # it goes on as planned, at LR 5
    finally:
        await again.call("shutdown")
        await again.close()


async def test_a_rollback_clears_the_divergence(runner: Runner) -> None:
    folder, client = runner
    await client.call("queue", segments=[{"epochs": 3, "lr": 0.03}])
    await wait_state(client, dry)  # a pause: a checkpoint to go back to
    await client.call("queue", segments=[{"epochs": 10, "lr": 5.0}])
    await client.wait_for("error", timeout=60)
    epoch = (await client.call("rollback_points"))["epochs"][-1]
    await client.call("rollback", epoch=epoch, timeout=30)
    await client.wait_for("rollback")
    await client.call("queue", segments=[{"epochs": 2, "lr": 0.01}])
    await client.call("resume")  # no divergence to accept any more
    event = await client.wait_for("epoch", timeout=30)
    assert event.data["global_epoch"] == epoch + 1 and event.data["lr"] == 0.01
    assert (await client.call("status"))["diverged"] is None


async def test_steering_commands_refuse_bad_input_in_one_line(sessions: Path) -> None:
    folder = sessions / "idle"
    ensure_runner(folder, create={"task": "lesson", "seed": 0})
    base = ("--sessions-dir", str(sessions))
    cases = [
        (("set-lr", "idle", "20"), "20 is absurdly large"),
        (("set-lr", "idle", "fast"), "must be a number"),
        (("set-lr", "idle", "nan"), "finite"),
        (("queue", "idle", "--epochs", "3", "--lr", "0.1", "--shape", "wavy"), "unknown shape"),
        (("queue", "idle", "--epochs", "0", "--lr", "0.1"), "at least 1"),
        (("extend", "idle", "0"), "not 0"),
        (("extend", "idle", "1.5"), "whole number"),
        (("end-segment", "idle"), "no segment is running"),  # the runner refuses
        (("set-lr", "idle", "0.1"), "nothing is queued"),
        (("extend", "idle", "3"), "nothing is queued"),
        (("set-lr", "nowhere", "0.1"), "no session 'nowhere'"),
    ]
    for args, message in cases:
        done = lrconsole(*base, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.splitlines()) == 1 and message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    assert lrconsole(*base, "stop", "idle").returncode == 0
    for args in (("set-lr", "idle", "0.1"), ("end-segment", "idle", "--now"), ("resume", "idle")):
        done = lrconsole(*base, *args)
        assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
        assert "no runner is running for idle; start it with `lrconsole run idle --detach`" in (
            done.stderr
        )
    help_text = lrconsole("extend", "--help").stdout
    assert "negative" in help_text


def test_extending_a_shaped_segment_keeps_the_lrs_trained() -> None:
    """Fast: resizing pins a shape's length, so the steps already trained keep their LR."""
    for seg in (
        Segment(0.1, epochs=4, shape="cosine"),
        Segment(0.1, epochs=4, shape="one_cycle"),
        Segment(0.1, epochs=4, shape="cyclic"),
        Segment(0.1, steps=30, shape="linear_warmup", params={"per_epoch": True}),
    ):
        plan = Plan([seg], SPE)
        before = [plan.lr_at_step(s) for s in range(25)]
        plan.resize(0, 10 * SPE)
        assert [plan.lr_at_step(s) for s in range(25)] == before, seg
        plan.resize(0, 25)
        assert [plan.lr_at_step(s) for s in range(25)] == before, seg
        again = Schedule.loads(Schedule(plan.segments, SPE).dumps())  # the export reads back
        assert again.segments == plan.segments


def test_status_counts_segments_from_one() -> None:
    state: dict[str, Any] = {"state": "running", "reason": None, "global_epoch": 5}
    state["global_step"] = 70
    state |= {"lr": 0.03, "segment": 0, "segments": 2, "diverged": None}
    assert describe_state("s", state).endswith("lr 0.03  segment 1 of 2")
    state |= {"state": "paused", "reason": "queue_empty", "segment": 2}
    assert describe_state("s", state).endswith("all 2 segments done")
    start = Event("segment_start", {"index": 0, "segment": {"epochs": 3, "lr": 0.1}}, 1)
    assert format_event(start) == 'segment 1 starts: {"epochs": 3, "lr": 0.1}'
    end = Event("segment_end", {"index": 1, "global_epoch": 4, "global_step": 56}, 2)
    assert format_event(end) == "segment 2 ends after step 56"


def test_stop_after_epoch_never_cuts_the_next_segment(tmp_path: Path) -> None:
    """Fast, in one process: the running segment ends before the epoch does (mid-epoch),
    so the next one starts whole and the stop only pauses at the epoch's end."""
    from lrconsole.core.train import events as ev
    from lrconsole.core.train.trainer import Trainer

    schedule = Schedule([Segment(0.03, steps=20), Segment(0.01, epochs=2)])
    trainer = Trainer.open(tmp_path / "s", schedule=schedule, tensorboard=False)
    engine = trainer.engine

    def on_batch(event: ev.BatchEnd) -> None:
        if event.global_step == 16:  # in segment 1, which ends at step 20 inside epoch 2
            engine.stop_after_epoch()

    engine.on(ev.BatchEnd, on_batch)
    paused: list[int] = []
    engine.on(ev.Paused, lambda e: (paused.append(e.global_step), engine.resume()))
    engine.run()
    trainer.close()
    assert paused == [28]
    assert [s.describe() for s in trainer.plan.segments] == ["20 steps @ 0.03", "2 epochs @ 0.01"]
    assert engine.global_step == 20 + 2 * SPE
