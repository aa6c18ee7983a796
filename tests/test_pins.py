"""Bounded disk with pins (issue 12, item 4): pruning keeps the newest few checkpoints and
the newest few segment boundaries, plus the epochs the user pinned, on disk or live."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import yaml

from lrconsole.client import RunnerClient
from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.plan.segment import Segment
from lrconsole.core.session.layout import (
    checkpoint_files,
    checkpoint_name,
    checkpoint_step,
    kept_checkpoints,
)
from lrconsole.core.train.trainer import Trainer
from lrconsole.runner.launch import ensure_runner
from tests.conftest import lrconsole
from tests.test_steering import wait_state

SPE = 14  # the lesson task's steps per epoch


def epochs_on_disk(folder: Path) -> list[int]:
    return [(checkpoint_step(p) or 0) // SPE for p in checkpoint_files(folder)]


def test_the_rule_keeps_the_newest_the_newest_boundaries_and_the_pins() -> None:
    files = [Path(checkpoint_name(step)) for step in range(10, 110, 10)]  # steps 10..100
    edges = {0, 20, 40, 60, 100}
    kept = kept_checkpoints(files, edges, 2, pinned=[30])
    steps = sorted(checkpoint_step(p) or 0 for p in kept)
    # newest 2: 90, 100; newest 2 boundaries: 60, 100; pinned: 30. Not 20 or 40.
    assert steps == [30, 60, 90, 100]
    assert kept_checkpoints(files, edges, 0, pinned=[30]) == {Path(checkpoint_name(30))}


def test_a_long_plan_keeps_a_bounded_number_of_checkpoints_and_the_pinned_one(
    sessions: Path,
) -> None:
    folder = sessions / "long"
    plan = Schedule([Segment(0.01, epochs=1) for _ in range(6)], keep_checkpoints=2)
    trainer = Trainer.open(folder, schedule=plan, tensorboard=False, checkpoint_interval=0)
    trainer.engine.run()
    trainer.close()
    # Every segment end was checkpointed; 2 newest (5, 6) and 2 newest boundaries stay.
    assert epochs_on_disk(folder) == [5, 6]
    done = lrconsole("--sessions-dir", str(sessions), "pin", "long", "5")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "epoch 5 pinned; pinned epochs: 5"
    assert yaml.safe_load((folder / "manifest.yaml").read_text())["pinned_steps"] == [5 * SPE]
    more = Schedule([Segment(0.01, epochs=1) for _ in range(10)], keep_checkpoints=2)
    trainer = Trainer.open(folder, schedule=more, tensorboard=False, checkpoint_interval=0)
    trainer.engine.run()
    trainer.close()
    assert epochs_on_disk(folder) == [5, 9, 10]  # 10 segments later, the pin stays
    listed = lrconsole("--sessions-dir", str(sessions), "pin", "long")
    assert listed.stdout.splitlines() == ["kept epochs: 5, 9, 10", "pinned epochs: 5"]
    # A pruned epoch cannot be pinned; one not pinned cannot be unpinned: one line, exit 2.
    for args, message in [
        (["pin", "long", "3"], "no checkpoint at epoch 3 to pin; kept epochs: 5, 9, 10"),
        (["pin", "long", "9", "--off"], "epoch 9 is not pinned; pinned epochs: 5"),
    ]:
        refused = lrconsole("--sessions-dir", str(sessions), *args)
        assert refused.returncode == 2
        assert refused.stderr == f"lrconsole: error: {message}\n"
    done = lrconsole("--sessions-dir", str(sessions), "pin", "long", "5", "--off")
    assert done.stdout.strip() == "epoch 5 unpinned; pinned epochs: none"
    assert "pinned_steps" not in yaml.safe_load((folder / "manifest.yaml").read_text())


async def test_a_live_runner_pins_and_the_rollback_points_say_so(sessions: Path) -> None:
    folder = sessions / "live"
    sock = ensure_runner(folder, create={"task": "lesson", "seed": 0})
    client = await RunnerClient.connect(sock)
    try:
        await client.call("queue", segments=[{"epochs": 1, "lr": 0.01}] * 3)
        await client.call("resume")
        await wait_state(client, lambda s: s["global_epoch"] == 3 and s["state"] == "paused")
        points = await client.call("rollback_points")
        assert 1 in points["epochs"] and points["pinned"] == []
        done = lrconsole("--sessions-dir", str(sessions), "pin", "live", "1")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "epoch 1 pinned; pinned epochs: 1"
        assert (await client.call("rollback_points"))["pinned"] == [1]
        manifest = yaml.safe_load((folder / "manifest.yaml").read_text())
        assert manifest["pinned_steps"] == [SPE]
    finally:
        pid = int(client.snapshot["runner"]["pid"])
        await client.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
