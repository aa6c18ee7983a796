"""The segment engine in one process: controls, events, optimizer state, exact resume."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch

from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.plan.segment import OptimizerSpec, Segment
from lrconsole.core.train import events as ev
from lrconsole.core.train.trainer import Trainer


def open_trainer(folder: Path, segments: list[Segment], **kw: object) -> Trainer:
    schedule = Schedule(segments, **kw)  # type: ignore[arg-type]
    return Trainer.open(folder, schedule=schedule, tensorboard=False)


def test_lr_written_into_every_param_group_is_the_operators(tmp_path: Path) -> None:
    trainer = open_trainer(tmp_path / "s", [Segment(0.03, epochs=2), Segment(0.007, epochs=1)])
    seen: list[float] = []
    trainer.engine.on(
        ev.BatchEnd, lambda e: seen.append(trainer.engine.optimizer.param_groups[0]["lr"])
    )
    trainer.engine.run()
    trainer.close()
    assert seen == [0.03] * 28 + [0.007] * 14


def test_set_lr_takes_effect_at_the_very_next_step(tmp_path: Path) -> None:
    trainer = open_trainer(tmp_path / "s", [Segment(0.03, epochs=3)])
    engine = trainer.engine
    lrs: list[tuple[int, float]] = []

    def on_batch(event: ev.BatchEnd) -> None:
        lrs.append((event.global_step, event.lr))
        if event.global_step == 20:
            engine.set_lr(0.002)

    engine.on(ev.BatchEnd, on_batch)
    engine.run()
    trainer.close()
    assert dict(lrs)[20] == 0.03
    assert dict(lrs)[21] == 0.002  # step 21 is the next optimizer step
    assert all(lr == 0.002 for step, lr in lrs if step > 20)
    # The split is recorded, so the exported path replays it exactly.
    segments = trainer.schedule().segments
    assert [(s.lr, s.length(14)) for s in segments] == [(0.03, 20), (0.002, 22)]


def test_pause_from_another_thread_stops_at_a_batch_boundary(tmp_path: Path) -> None:
    trainer = open_trainer(tmp_path / "s", [Segment(0.03, epochs=400)])
    engine = trainer.engine
    paused = threading.Event()
    engine.on(ev.Paused, lambda e: paused.set())
    runner = threading.Thread(target=engine.run, kwargs={"wait": True})
    runner.start()
    time.sleep(0.3)
    engine.pause()
    assert paused.wait(5)
    step = engine.global_step
    time.sleep(0.2)
    assert engine.global_step == step  # nothing trains while paused
    assert engine.state()["state"] == "paused"
    engine.resume()
    time.sleep(0.2)
    assert engine.global_step > step
    engine.request_exit("shutdown")
    runner.join(5)
    assert not runner.is_alive()
    trainer.close()


def test_empty_queue_waits_like_the_lessons_prompt(tmp_path: Path) -> None:
    trainer = open_trainer(tmp_path / "s", [Segment(0.03, epochs=1)])
    engine = trainer.engine
    reasons: list[str] = []
    engine.on(ev.Paused, lambda e: reasons.append(e.reason))
    thread = threading.Thread(target=engine.run, kwargs={"wait": True})
    thread.start()
    deadline = time.monotonic() + 5
    while "queue_empty" not in reasons and time.monotonic() < deadline:
        time.sleep(0.01)
    assert reasons == ["queue_empty"] and engine.global_epoch == 1
    engine.queue([Segment(0.01, epochs=2)])
    while engine.global_epoch < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.global_epoch == 3
    engine.request_exit("shutdown")
    thread.join(5)
    trainer.close()


def test_stop_after_epoch_and_replace_queue(tmp_path: Path) -> None:
    trainer = open_trainer(tmp_path / "s", [Segment(0.03, epochs=5), Segment(0.01, epochs=5)])
    engine = trainer.engine

    def on_batch(event: ev.BatchEnd) -> None:
        if event.global_step == 16:  # inside epoch 2
            engine.stop_after_epoch()
            engine.queue([Segment(0.001, epochs=1)], replace=True)

    engine.on(ev.BatchEnd, on_batch)
    reasons: list[str] = []
    engine.on(ev.Paused, lambda e: (reasons.append(e.reason), engine.resume()))
    engine.run()
    trainer.close()
    assert reasons == ["stop"]
    assert [s.describe() for s in trainer.plan.segments] == ["2 epochs @ 0.03", "1 epoch @ 0.001"]
    assert engine.global_epoch == 3


def test_optimizer_state_is_kept_unless_a_segment_asks_for_a_fresh_one(tmp_path: Path) -> None:
    spec = OptimizerSpec("sgd", {"momentum": 0.9})
    keep = open_trainer(
        tmp_path / "a", [Segment(0.03, epochs=1), Segment(0.01, epochs=1)], optimizer=spec
    )
    opt_before = keep.engine.optimizer
    keep.engine.run()
    keep.close()
    assert keep.engine.optimizer is opt_before
    fresh = open_trainer(
        tmp_path / "b",
        [Segment(0.03, epochs=1), Segment(0.01, epochs=1, fresh_optimizer=True)],
        optimizer=spec,
    )
    first = fresh.engine.optimizer
    fresh.engine.run()
    fresh.close()
    assert fresh.engine.optimizer is not first
    assert fresh.history[-1]["metrics"] != keep.history[-1]["metrics"]


def test_mid_epoch_checkpoint_resumes_bit_for_bit(tmp_path: Path) -> None:
    segments = [Segment(0.03, epochs=3), Segment(0.01, epochs=2)]
    whole = open_trainer(tmp_path / "whole", segments)
    whole.engine.run()
    whole.close()

    part = open_trainer(tmp_path / "part", segments)

    def on_batch(event: ev.BatchEnd) -> None:
        if event.global_step == 33:  # mid epoch 3: save there and leave
            part.engine.request_exit("stop")

    part.engine.on(ev.BatchEnd, on_batch)
    assert part.engine.run() == "stop"
    part.close()
    assert part.manifest.global_step == 33 and part.manifest.global_epoch == 2

    again = Trainer.open(tmp_path / "part", tensorboard=False)
    assert again.engine.run() == "done"
    again.close()
    pairs = zip(whole.history, again.history, strict=True)
    assert again.history == [{**a, "time": b["time"]} for a, b in pairs]
    a = whole.engine.model.state_dict()
    b = again.engine.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(("now", "at"), [(False, 28), (True, 20)])
def test_an_edit_that_ends_the_plan_just_after_the_boundary_check_ends_it_there(
    tmp_path: Path, now: bool, at: int
) -> None:
    """The operator's F6 (end after this epoch) or F7 (end now) can land between the loop's
    cheap check and the next step. The step is not trained past the plan's new end (a CI
    run once died there with an IndexError); the run ends there, and the path replays."""
    trainer = open_trainer(tmp_path / "s", [Segment(0.03, epochs=4)])
    engine = trainer.engine
    check = engine.needs_boundary
    ended: list[tuple[int, int]] = []

    def check_then_edit() -> bool:
        answer = check()
        if not answer and engine.global_step == at and not ended:
            ended.append(engine.end_segment(now=now))  # right after the check said "train on"
        return answer

    engine.needs_boundary = check_then_edit  # type: ignore[method-assign]
    assert engine.run() == "done"
    trainer.close()
    assert ended == [(0, at)]
    assert engine.global_step == at
    assert [(s.lr, s.length(14)) for s in trainer.schedule().segments] == [(0.03, at)]
