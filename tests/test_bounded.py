"""Bounded memory and time per epoch (issue 12, item 5): the runner's history stays under
its cap however many epochs it serves, and a plan of 10,000 segments trains correctly."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from lrconsole.client import RunnerClient
from lrconsole.core.plan.plan import Plan
from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.plan.segment import Segment, TaskSpec
from lrconsole.core.session import writer
from lrconsole.core.session.history import CAP, RECENT, EpochHistory
from lrconsole.core.train import events as ev
from lrconsole.core.train.trainer import Trainer
from lrconsole.runner.server import ControlServer


def row(epoch: int, segment: int = 0) -> dict[str, Any]:
    return {
        "global_epoch": epoch,
        "global_step": epoch * 14,
        "segment": segment,
        "lr": 0.01,
        "metrics": {"train_loss": 1.0 / epoch},
    }


def epochs_of(rows: Any) -> list[int]:
    return [int(r["global_epoch"]) for r in rows]


def test_a_history_of_100000_epochs_stays_under_its_cap() -> None:
    history = EpochHistory()
    # 20 segments of 5,000 epochs each: their first and last rows must survive thinning.
    for epoch in range(1, 100_001):
        history.append(row(epoch, (epoch - 1) // 5000))
        assert len(history) <= CAP
    epochs = epochs_of(history)
    assert epochs[0] == 1 and epochs[-1] == 100_000
    assert epochs == sorted(set(epochs))
    assert epochs[-RECENT:] == list(range(100_001 - RECENT, 100_001))  # full resolution
    for seg in range(20):
        assert seg * 5000 + 1 in epochs and (seg + 1) * 5000 in epochs
    # The older part is spread over the whole range, not piled at one end.
    gaps = [b - a for a, b in zip(epochs, epochs[1:], strict=False)]
    assert max(gaps) <= history.stride
    history.truncate(60_000)  # a rollback: by epoch, not by index
    assert epochs_of(history)[-1] == 60_000 and epochs_of(history)[0] == 1
    history.append(row(60_001, 20))
    assert epochs_of(history)[-2:] == [60_000, 60_001]


def test_a_history_of_one_epoch_segments_thins_its_segment_marks_too() -> None:
    history = EpochHistory(cap=400, recent=100)
    for epoch in range(1, 20_001):
        history.append(row(epoch, epoch))  # a new segment every epoch
    epochs = epochs_of(history)
    assert len(epochs) <= 400
    assert epochs[0] == 1 and epochs[-1] == 20_000
    assert epochs[-100:] == list(range(19_901, 20_001))


def test_an_epoch_trained_again_replaces_the_rows_past_it() -> None:
    history = EpochHistory([row(e) for e in range(1, 11)])
    history.append(row(7))  # a resumed run trains epoch 7 again
    assert epochs_of(history) == list(range(1, 8))


def test_the_server_keeps_a_bounded_history_and_rolls_it_back_by_epoch(tmp_path: Path) -> None:
    sock = tmp_path / "c.sock"
    server = ControlServer(sock, lambda cmd, args: {"protocol": 1}, [row(e) for e in range(1, 11)])
    server.start()
    try:
        for epoch in range(11, 100_001):
            server.publish("epoch", row(epoch), urgent=False)

        async def check() -> None:
            client = await RunnerClient.connect(sock, timeout=30)
            history = client.snapshot["history"]
            assert len(history) <= CAP
            assert epochs_of(history)[0] == 1 and epochs_of(history)[-1] == 100_000
            server.publish("rollback", {"global_epoch": 50_000, "global_step": 700_000})
            await client.wait_for("rollback")
            server.publish("epoch", row(50_001), urgent=True)
            await client.wait_for("epoch")
            again = await RunnerClient.connect(sock, timeout=30)
            epochs = epochs_of(again.snapshot["history"])
            # Epoch 50,000 itself may have been thinned away: nothing past it is held.
            assert epochs[0] == 1 and epochs[-1] == 50_001 and 49_000 < epochs[-2] <= 50_000
            assert len(epochs) <= CAP
            await client.close()
            await again.close()

        asyncio.run(check())
    finally:
        server.close("shutdown")


def test_the_trainers_history_is_bounded_and_a_rollback_finds_the_best_on_disk(
    tmp_path: Path,
) -> None:
    trainer = Trainer.open(
        tmp_path / "s", schedule=Schedule([Segment(0.01, epochs=6)]), tensorboard=False
    )
    try:
        trainer.engine.run()
        session = trainer.session
        losses = [r["metrics"]["test_loss"] for r in trainer.history]
        assert len(losses) == 6
        # 20,000 more epochs recorded (as an endless run would): memory stays capped.
        for epoch in range(7, 20_007):
            session.history.append(row(epoch))
        assert len(trainer.history) <= CAP
        assert epochs_of(trainer.history)[-1] == 20_006
        # A rollback to epoch 3: the best of epochs 1..3 comes from metrics.csv, every row.
        session.metrics_log.sync()
        session.branch_off(3, 6, list(trainer.manifest.segments))
        best = trainer.manifest.best
        assert best is not None and best["metric"] == "test_loss"
        assert best["value"] == min(losses[:3])
        assert best["epoch"] == 1 + losses[:3].index(min(losses[:3]))
        kept = epochs_of(trainer.history)  # thinned by the 20,000: epoch 1 always stays
        assert kept[0] == 1 and kept[-1] <= 3
    finally:
        trainer.close()


def test_the_plan_reads_the_lr_of_10000_segments_at_their_boundaries() -> None:
    segments = [Segment(1e-3 * (1 + i % 7), epochs=1 + i % 3) for i in range(10_000)]
    plan = Plan(segments, steps_per_epoch=5)
    for i in (0, 1, 2, 4_999, 9_998, 9_999):
        start = plan.starts[i]
        assert plan.locate(start) == (i, 0)
        assert plan.lr_at_step(start) == segments[i].lr
        assert plan.locate(plan.end_of(i) - 1) == (i, segments[i].epochs * 5 - 1)  # type: ignore[operator]
    assert plan.locate(plan.total_steps) == (10_000, 0)


@pytest.mark.slow
def test_a_plan_of_10000_segments_trains_each_at_its_lr(tmp_path: Path) -> None:
    lrs = [0.01, 0.003, 0.0005]
    segments = [Segment(lrs[i % 3], epochs=1) for i in range(10_000)]
    schedule = Schedule(segments, task=TaskSpec("lesson"), threads=1)
    trainer = Trainer.open(tmp_path / "long", schedule=schedule, tensorboard=False)
    engine = trainer.engine
    seen: list[tuple[int, int, float]] = []

    def on_epoch(event: ev.EpochEnd) -> None:
        seen.append((event.global_epoch, event.segment, event.lr))
        if event.global_epoch >= 12:
            engine.request_exit("enough")

    saved: list[int] = []
    engine.on(ev.EpochEnd, on_epoch)
    engine.on(ev.CheckpointSaved, lambda event: saved.append(event.global_epoch))
    assert engine.run() == "enough"
    trainer.close()
    assert seen == [(e, e - 1, lrs[(e - 1) % 3]) for e in range(1, 13)]
    # A manifest of 10,000 segments costs about a second of YAML: segment ends stop
    # checkpointing once that is known, and the close still saves where the run stands.
    assert trainer.checkpointer is not None and trainer.checkpointer.commit_s > 0.01
    assert len(saved) < 12 and saved[-1] == 12
    assert trainer.manifest.global_epoch == 12
    assert len(trainer.manifest.segments) == 10_000
    again = Trainer.open(tmp_path / "long", tensorboard=False)
    assert (again.engine.global_epoch, again.engine.lr) == (12, lrs[12 % 3])
    again.close()


def test_a_short_plan_checkpoints_at_every_segment_end(tmp_path: Path) -> None:
    segments = [Segment(0.01, epochs=2), Segment(0.005, epochs=1), Segment(0.002, epochs=2)]
    schedule = Schedule(segments, task=TaskSpec("lesson"), threads=1)
    trainer = Trainer.open(tmp_path / "short", schedule=schedule, tensorboard=False)
    saved: list[int] = []
    trainer.engine.on(ev.CheckpointSaved, lambda event: saved.append(event.global_epoch))
    trainer.engine.run()
    trainer.close()
    assert {2, 3, 5} <= set(saved)


def test_a_lowered_write_runs_at_a_lower_priority_and_reports_its_error() -> None:
    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    before = niceness()
    seen = writer.run_lowered(niceness)
    assert niceness() == before  # the caller's thread keeps its priority
    if sys.platform == "linux":
        assert seen >= writer.WRITER_NICE
    with pytest.raises(OSError, match="disk full"):
        writer.run_lowered(lambda: (_ for _ in ()).throw(OSError("disk full")))
