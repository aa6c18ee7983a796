"""Gradient diagnostics and the gradient guard (issue 13, sections 2 and 3): the norm of
every step without a read per step, its columns, and a guard that decides the same after
a SIGKILL and a resume."""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.plan.segment import Segment
from lrconsole.core.tasks.lesson import make_lesson_task
from lrconsole.core.train import events as ev
from lrconsole.core.train.gradnorm import SMALL, GradStats, grads_of, total_norm
from lrconsole.core.train.step import train_step
from lrconsole.core.train.trainer import Trainer
from lrconsole.errors import UserError
from tests.conftest import ROOT, lrconsole, metric_rows
from tests.test_scale import Counted

# A task whose gradients (not its loss) are scaled at one training step, or at every step
# (at: 0). The step counter is a buffer of the model: checkpointed, so a resumed run
# scales the same step.
SCALED_TASK = """
import torch
from torch import nn
from lrconsole.core.tasks.lesson import make_lesson_task


class Scaled(nn.Module):
    def __init__(self, inner, at, scale):
        super().__init__()
        self.inner, self.at, self.scale = inner, at, scale
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        out = self.inner(x)
        if not self.training:
            return out
        self.steps += 1
        if self.at == 0 or int(self.steps) == self.at:
            out = out * self.scale - out.detach() * (self.scale - 1)  # same value
        return out


def make(at=0, scale=1000.0):
    task = make_lesson_task()
    task.model = Scaled(task.model, at, scale)
    return task
"""


def scaled_schedule(tmp: Path, epochs: int, at: int, scale: float, **top: Any) -> Path:
    task_file = tmp / "scaled_task.py"
    task_file.write_text(SCALED_TASK)
    doc = {
        "version": 1,
        "task": {"spec": f"{task_file}:make", "args": {"at": at, "scale": scale}},
        "seed": 0,
        **top,
        "segments": [{"epochs": epochs, "lr": 0.01}],
    }
    path = tmp / "plan.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def read_csv(folder: Path) -> list[dict[str, str]]:
    with open(folder / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_norm_is_the_total_norm_before_clipping_of_every_step(tmp_path: Path) -> None:
    trainer = Trainer.open(
        tmp_path / "s", schedule=Schedule([Segment(0.03, epochs=3)]), tensorboard=False
    )
    engine, by_hand = trainer.engine, []
    step = engine.optimizer.step

    def recording_step(*args: Any, **kw: Any) -> Any:
        grads = [p.grad for p in engine.model.parameters() if p.grad is not None]
        by_hand.append(torch.nn.utils.get_total_norm(grads))
        return step(*args, **kw)

    engine.optimizer.step = recording_step  # type: ignore[method-assign]
    epochs: list[ev.EpochEnd] = []
    engine.on(ev.EpochEnd, epochs.append)
    assert engine.run() == "done"
    trainer.close()
    assert len(by_hand) == 3 * 14
    rows = read_csv(tmp_path / "s")
    for i, (event, row) in enumerate(zip(epochs, rows, strict=True)):
        norms = torch.stack(by_hand[i * 14 : (i + 1) * 14])
        # The same to float32 rounding (a small model's grads are normed in one piece).
        assert event.grad_norm == pytest.approx(float(norms.mean()), rel=1e-6)
        assert event.grad_norm_max == pytest.approx(float(norms.max()), rel=1e-6)
        assert "grad_norm" not in event.metrics  # top level, not a loss-chart metric
        assert float(row["grad_norm"]) == event.grad_norm
        assert float(row["grad_norm_max"]) == event.grad_norm_max
    assert event.to_dict()["grad_norm"] == event.grad_norm  # on the wire too


def test_clip_scales_the_grads_to_the_clip_and_reports_the_norm_before() -> None:
    torch.manual_seed(0)
    task = make_lesson_task()
    optimizer = torch.optim.SGD(task.model.parameters(), lr=0.0)  # lr 0: the grads stay
    batch = next(iter(task.train_loader))
    stats = GradStats()
    train_step(task.model, optimizer, task.loss, batch, "cpu", clip=None, grad_stats=stats)
    grads = [p.grad for p in task.model.parameters() if p.grad is not None]
    unclipped = torch.nn.utils.get_total_norm(grads)
    assert stats.last is not None
    assert float(stats.last) == pytest.approx(float(unclipped), rel=1e-6)
    assert float(unclipped) > 0.5
    train_step(task.model, optimizer, task.loss, batch, "cpu", clip=0.5, grad_stats=stats)
    grads = [p.grad for p in task.model.parameters() if p.grad is not None]
    assert float(stats.last) == pytest.approx(float(unclipped), rel=1e-6)  # before clipping
    assert float(torch.nn.utils.get_total_norm(grads)) == pytest.approx(0.5, rel=1e-5)
    assert stats.read() == {
        "grad_norm": pytest.approx(float(unclipped), rel=1e-6),
        "grad_norm_max": pytest.approx(float(unclipped), rel=1e-6),
    }


def test_total_norm_small_and_large_models_match_get_total_norm() -> None:
    g = torch.Generator().manual_seed(0)
    for shapes in ([(5, 4), (4,)], [(300, 300), (300,), (7,)]):  # one piece; foreach
        grads = [torch.randn(shape, generator=g) for shape in shapes]
        expected = float(torch.nn.utils.get_total_norm(grads))
        assert float(total_norm(grads)) == pytest.approx(expected, rel=1e-6)
    assert sum(t.numel() for t in grads) > SMALL
    assert float(total_norm([])) == 0.0


def test_the_cached_norm_of_an_optimizer_equals_total_norm_to_the_bit() -> None:
    """GradStats.norm_of finds the parameters once per optimizer; the norm is the same."""
    g = torch.Generator().manual_seed(0)
    stats = GradStats()
    for shapes in ([(5, 4), (4,)], [(300, 300), (300,), (7,)]):
        params = [torch.nn.Parameter(torch.zeros(shape)) for shape in shapes]
        optimizer = torch.optim.SGD(params, lr=0.1)
        for step in range(3):
            for i, p in enumerate(params):  # the last step: one parameter has no gradient
                p.grad = None if step == 2 and i == 0 else torch.randn(p.shape, generator=g)
            expected = total_norm(grads_of(optimizer))
            assert torch.equal(stats.norm_of(optimizer), expected)


def test_stats_keep_non_finite_norms_and_resume_to_the_bit() -> None:
    stats = GradStats()
    for value in (1.0, math.inf, 2.0):
        stats.add(torch.tensor(value))
    assert stats.read() == {"grad_norm": math.inf, "grad_norm_max": math.inf}
    stats.add(torch.tensor(1.0))
    stats.add(torch.tensor(math.nan))
    read = stats.read()
    assert math.isnan(read["grad_norm"]) and math.isnan(read["grad_norm_max"])
    # Across a fold (every CHUNK steps), checkpointed twice: the same sum to the bit.
    norms = torch.rand(GradStats.CHUNK + 50, generator=torch.Generator().manual_seed(0)) * 7
    whole, resumed = GradStats(), GradStats()
    for i, n in enumerate(norms):
        whole.add(n)
        if i in (100, GradStats.CHUNK + 20):
            state, resumed = resumed.state_dict(), GradStats()
            resumed.load_state_dict(state)
        resumed.add(n)
    assert resumed.read() == whole.read()


def test_no_norm_is_read_on_the_training_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every read of a norm's value is counted (on CUDA each is a sync): none per step,
    only at epoch ends and checkpoints."""
    plain = GradStats.norm_of
    counted = lambda stats, opt: plain(stats, opt).as_subclass(Counted)  # noqa: E731
    monkeypatch.setattr(GradStats, "norm_of", counted)
    Counted.reads = 0
    trainer = Trainer.open(
        tmp_path / "s", schedule=Schedule([Segment(0.03, epochs=4)]), tensorboard=False
    )
    trainer.engine.grads.lag_on_cpu = True  # the path a CUDA device takes
    reads_at: list[tuple[int, int]] = []
    trainer.engine.on(ev.BatchEnd, lambda e: reads_at.append((e.batch, Counted.reads)))
    assert trainer.engine.run() == "done"
    trainer.close()
    assert len(reads_at) == 4 * 14
    # Inside an epoch (batch 1 to 14) the count never moves: no read on a step.
    for epoch in range(4):
        inside = reads_at[epoch * 14 : (epoch + 1) * 14]
        assert {reads for _, reads in inside} == {inside[0][1]}
    assert 4 <= Counted.reads <= 8  # the epoch ends' reads (and a checkpoint's)
    assert len(read_csv(tmp_path / "s")) == 4


@pytest.mark.slow
def test_diagnostics_off_writes_no_columns_and_old_files_keep_reading(sessions: Path) -> None:
    schedule = sessions / "plan.yaml"
    schedule.write_text("version: 1\ntask: lesson\nseed: 0\nsegments:\n  - {epochs: 3, lr: 0.03}\n")
    off = lrconsole(
        "--sessions-dir", str(sessions), "run", "s", "--schedule", str(schedule), "--no-grad-norm"
    )
    assert off.returncode == 0, off.stderr
    header = (sessions / "s" / "metrics.csv").read_text().splitlines()[0]
    assert "grad_norm" not in header
    # The same session, continued with diagnostics on: the old rows read, blank there.
    longer = sessions / "longer.yaml"
    longer.write_text(schedule.read_text() + "  - {epochs: 2, lr: 0.01}\n")
    on = lrconsole("--sessions-dir", str(sessions), "run", "s", "--schedule", str(longer))
    assert on.returncode == 0, on.stderr
    rows = read_csv(sessions / "s")
    assert [r["grad_norm"] for r in rows[:3]] == ["", "", ""]
    assert all(float(r["grad_norm"]) > 0 for r in rows[3:]) and len(rows) == 5
    assert list(rows[0])[-1] == "time"  # still the field written last
    shown = lrconsole("--sessions-dir", str(sessions), "show", "s")
    assert shown.returncode == 0, shown.stderr
    listed = lrconsole("--sessions-dir", str(sessions), "sessions")
    assert "test_loss" in listed.stdout and "grad_norm" not in listed.stdout  # not a metric
    # And off again: the columns earlier epochs filled are kept, blank from here.
    more = sessions / "more.yaml"
    more.write_text(longer.read_text() + "  - {epochs: 1, lr: 0.01}\n")
    again = lrconsole(
        "--sessions-dir", str(sessions), "run", "s", "--schedule", str(more), "--no-grad-norm"
    )
    assert again.returncode == 0, again.stderr
    rows = read_csv(sessions / "s")
    assert len(rows) == 6 and rows[3]["grad_norm"] != "" and rows[5]["grad_norm"] == ""


def test_tensorboard_gets_the_norms_and_the_layers(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = Trainer.open(
        tmp_path / "s", schedule=Schedule([Segment(0.03, epochs=2)]), grad_norm_layers=True
    )
    assert trainer.engine.run() == "done"
    trainer.close()
    acc = EventAccumulator(str(tmp_path / "s" / "tb" / "path-0"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"grad/norm", "grad/norm_max", "loss/train"} <= set(tags)
    layers = [t for t in tags if t.startswith("grad/layer/")]
    assert len(layers) == len(list(trainer.engine.model.parameters()))
    assert [e.step for e in acc.Scalars("grad/norm")] == [1, 2]


def test_the_guard_fields_are_checked_stored_and_shown(sessions: Path) -> None:
    with pytest.raises(UserError, match="grad_vanish"):
        Schedule.loads("task: lesson\ngrad_vanish: -1\nsegments: [{epochs: 1, lr: 0.1}]\n")
    with pytest.raises(UserError, match="grad_spike_factor"):
        Schedule.loads("task: lesson\ngrad_spike_factor: 0.5\nsegments: [{epochs: 1, lr: 0.1}]\n")
    text = (
        "version: 1\ntask: lesson\nseed: 0\ngrad_spike_factor: null\ngrad_vanish: 1.0e-09\n"
        "grad_vanish_patience: 4\nsegments:\n  - {epochs: 2, lr: 0.03}\n"
    )
    schedule = Schedule.loads(text)
    assert schedule.grad_guard == {
        "grad_spike_factor": None,
        "grad_vanish": 1e-9,
        "grad_vanish_patience": 4,
    }
    assert Schedule.loads(schedule.dumps()).grad_guard == schedule.grad_guard
    path = sessions / "plan.yaml"
    path.write_text(text)
    done = lrconsole("--sessions-dir", str(sessions), "run", "g", "--schedule", str(path))
    assert done.returncode == 0, done.stderr
    shown = lrconsole("--sessions-dir", str(sessions), "show", "g")
    assert "gradient norm off, vanishing mean below 1e-09 for 4 epochs" in shown.stdout
    exported = lrconsole("--sessions-dir", str(sessions), "export", "g")
    assert Schedule.loads(exported.stdout).grad_guard == schedule.grad_guard
    bad = path.with_name("bad.yaml")
    bad.write_text(text.replace("grad_vanish: 1.0e-09", "grad_vanish: 0"))
    refused = lrconsole("--sessions-dir", str(sessions), "run", "b", "--schedule", str(bad))
    assert refused.returncode == 2
    assert "bad.yaml:5" in refused.stderr and "grad_vanish" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_vanishing_gradients_pause_the_run_naming_the_epochs(tmp_path: Path) -> None:
    plan = scaled_schedule(tmp_path, 6, 0, 1e-9, grad_vanish=1e-5, grad_vanish_patience=2)
    trainer = Trainer.open(tmp_path / "s", schedule=Schedule.load(plan), tensorboard=False)
    errors: list[ev.Error] = []
    trainer.engine.on(ev.Error, errors.append)
    assert trainer.engine.run() == "diverged"
    trainer.close()
    assert trainer.engine.global_epoch == 2
    assert len(errors) == 1
    message = errors[0].message
    assert "gradient norm vanished" in message and "epochs 1-2" in message, message
    assert trainer.manifest.diverged is not None and trainer.manifest.diverged["epoch"] == 2


def test_a_gradient_off_the_guard_limit_trips_it_but_not_the_loss_guard(tmp_path: Path) -> None:
    plan = scaled_schedule(tmp_path, 5, 14 * 2 + 5, 1000.0)
    trainer = Trainer.open(tmp_path / "s", schedule=Schedule.load(plan), tensorboard=False)
    errors: list[ev.Error] = []
    trainer.engine.on(ev.Error, errors.append)
    assert trainer.engine.run() == "diverged"
    trainer.close()
    assert [e.message.split(" spiked")[0] for e in errors] == ["the gradient norm"]
    assert "at step 33 (epoch 3" in errors[0].message
    assert trainer.engine.diverged_at == (33, 3)
    assert trainer.engine.global_step == 33  # stopped at once: no step past the bad one
    # Off (null): the same run trains past that step.
    off = scaled_schedule(tmp_path, 3, 14 * 2 + 5, 1000.0, grad_spike_factor=None)
    quiet = Trainer.open(tmp_path / "q", schedule=Schedule.load(off), tensorboard=False)
    quiet_errors: list[ev.Error] = []
    quiet.engine.on(ev.Error, quiet_errors.append)
    quiet.engine.run()
    quiet.close()
    assert quiet.engine.global_step > 33
    assert not any("gradient" in e.message for e in quiet_errors)


def test_a_rolled_back_run_trips_the_guard_at_the_same_step(tmp_path: Path) -> None:
    """The guard's memory comes back with the checkpoint: two epochs in, a fresh guard
    would have no limit yet (it learns the norm level over epochs) and let step 33 pass."""
    plan = scaled_schedule(tmp_path, 5, 33, 1000.0)
    trainer = Trainer.open(
        tmp_path / "s", schedule=Schedule.load(plan), tensorboard=False, checkpoint_interval=0
    )
    engine = trainer.engine
    assert engine.run() == "diverged" and engine.diverged_at == (33, 3)
    trainer.rollback(2)
    assert engine.global_step == 28 and engine.grads.guard.recent_means
    engine.queue([Segment(0.01, epochs=3)])
    assert engine.run() == "diverged" and engine.diverged_at == (33, 3)
    trainer.close()


@pytest.mark.slow
def test_a_continued_run_trips_the_guard_at_the_same_step(tmp_path: Path) -> None:
    """A new process continues from the checkpoint at epoch 2 and fires at step 33, as the
    unbroken run did (without the guard's memory it could not: no limit yet)."""
    sessions = tmp_path / "sessions"
    short = scaled_schedule(tmp_path, 2, 33, 1000.0)
    first = lrconsole("--sessions-dir", str(sessions), "run", "c", "--schedule", str(short))
    assert first.returncode == 0, first.stderr
    longer = tmp_path / "longer.yaml"
    doc = yaml.safe_load(short.read_text())
    doc["segments"].append({"epochs": 3, "lr": 0.01})
    longer.write_text(yaml.safe_dump(doc))
    second = lrconsole("--sessions-dir", str(sessions), "run", "c", "--schedule", str(longer))
    assert second.returncode == 1, second.stderr
    assert "diverged at step 33 (epoch 3)" in second.stderr, second.stderr


def run_args(sessions: Path, plan: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "lrconsole",
        "--sessions-dir",
        str(sessions),
        "run",
        "victim",
        "--schedule",
        str(plan),
        "--checkpoint-every",
        "0",  # every epoch: all epochs before the divergence are kept
    ]


@pytest.mark.slow
def test_a_resumed_run_trips_the_gradient_guard_at_the_same_step(tmp_path: Path) -> None:
    bad_step = 14 * 120 + 5  # in epoch 121
    plan = scaled_schedule(tmp_path, 160, bad_step, 1000.0)
    # A checkpoint every epoch: the epochs before the divergence are all kept.
    whole = subprocess.run(
        run_args(tmp_path / "ref", plan), cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert whole.returncode == 1, whole.stderr
    assert f"diverged at step {bad_step} (epoch 121)" in whole.stderr, whole.stderr
    reference = yaml.safe_load((tmp_path / "ref" / "victim" / "manifest.yaml").read_text())
    assert reference["diverged"]["step"] == bad_step

    sessions = tmp_path / "kill"
    folder = sessions / "victim"
    proc = subprocess.Popen(
        run_args(sessions, plan), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            rows = len((folder / "metrics.csv").read_text().splitlines()) - 1
        except FileNotFoundError:
            rows = 0
        if rows >= 40:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    killed_at = yaml.safe_load((folder / "manifest.yaml").read_text())["position"]
    assert 0 < killed_at["global_step"] < bad_step
    again = ["--sessions-dir", str(sessions), "run", "victim", "--checkpoint-every", "0"]
    resumed = lrconsole(*again, timeout=300)
    assert resumed.returncode == 1, resumed.stderr
    assert f"diverged at step {bad_step} (epoch 121)" in resumed.stderr, resumed.stderr
    manifest = yaml.safe_load((folder / "manifest.yaml").read_text())
    assert manifest["diverged"] == reference["diverged"]
    # Every epoch both kept (the norms included) is the same to the bit.
    ours, theirs = metric_rows(folder), metric_rows(tmp_path / "ref" / "victim")
    common = min(len(ours), len(theirs))
    assert common == 121 and ours[:common] == theirs[:common]  # header and epochs 1-120
    assert "grad_norm" in ours[0]
    assert all(math.isfinite(float(r[ours[0].index("grad_norm")])) for r in ours[1:common])
