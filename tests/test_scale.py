"""Real models: background checkpoints, the adaptive interval, no loss read per step,
`prune`, and the CUDA path (skipped without a GPU)."""

from __future__ import annotations

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

from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.plan.segment import Segment, TaskSpec
from lrconsole.core.session.layout import checkpoint_files
from lrconsole.core.session.manifest import Manifest
from lrconsole.core.session.store import load_checkpoint
from lrconsole.core.tasks.task import load_task
from lrconsole.core.train import events as ev
from lrconsole.core.train.rng import seed_everything
from lrconsole.core.train.trainer import Trainer
from tests.conftest import ROOT, lrconsole, metric_rows

# A 1.1M-parameter MLP with Adam: a 13 MB checkpoint, so that a write takes long enough
# for a SIGKILL to land in the middle of it. Its copies overlap the next step as a big
# model's do (the runner imports this file).
TASK = """
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from lrconsole import Task
from lrconsole.core.train.handlers import Checkpointer

Checkpointer.OVERLAP_MIN = 0

def make_task(width: int = 1024, steps: int = 6, batch: int = 32, device: str = "cpu") -> Task:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(steps * batch, 64, generator=g)
    y = torch.randn(steps * batch, 8, generator=g)
    model = nn.Sequential(
        nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 8)
    ).to(device)
    return Task(
        model=model,
        train_loader=DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True),
        eval_sets={"test": [(x[:64], y[:64])]},
        loss=nn.functional.mse_loss,
        optimizer="adam",
        device=device,
    )
"""


def write_task(folder: Path) -> str:
    path = folder / "mlp_task.py"
    path.write_text(TASK)
    return f"{path}:make_task"


def write_plan(path: Path, task: str, epochs: list[tuple[int, float]], *top: str) -> Path:
    lines = ["version: 1", f"task: {{spec: '{task}'}}", "seed: 0", *top, "segments:"]
    lines += [f"  - {{epochs: {e}, lr: {lr}}}" for e, lr in epochs]
    path.write_text("\n".join(lines) + "\n")
    return path


def temp_files(folder: Path) -> list[Path]:
    return list((folder / "checkpoints").glob(".*.tmp"))


@pytest.mark.slow
def test_sigkill_during_a_background_write_resumes_bit_exactly(tmp_path: Path) -> None:
    task = write_task(tmp_path)
    plan = write_plan(tmp_path / "plan.yaml", task, [(25, 1e-3), (25, 3e-4)])
    ref = tmp_path / "ref"
    done = lrconsole("--sessions-dir", str(ref), "run", "whole", "--schedule", str(plan))
    assert done.returncode == 0, done.stderr
    expected = metric_rows(ref / "whole")
    assert len(expected) == 51

    sessions = tmp_path / "sessions"
    folder = sessions / "victim"
    landed, manifest_before = 0, None
    for attempt in range(8):
        args = ["--sessions-dir", str(sessions), "run", "victim", "--checkpoint-every", "0"]
        if attempt == 0:
            args += ["--schedule", str(plan)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "lrconsole", *args],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        seen = 0
        # Kill at the second background write seen in this run (the first may be the
        # resume's own), the moment its temp file is there.
        while proc.poll() is None and time.monotonic() < deadline:
            if folder.exists() and temp_files(folder):
                seen += 1
                if seen >= 2:
                    break
                while temp_files(folder) and time.monotonic() < deadline:
                    time.sleep(0.0005)
            time.sleep(0.0005)
        if proc.poll() is not None:  # finished before a kill could land
            break
        manifest_before = Manifest.read(folder)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        if temp_files(folder):
            landed += 1  # the write was cut off: its temp file is left behind
            # The manifest names a checkpoint written whole, never the one cut off.
            m = Manifest.read(folder)
            assert m.checkpoint is not None
            assert load_checkpoint(folder / m.checkpoint)["global_step"] == m.global_step
    assert landed >= 1, "no SIGKILL landed during a background write"
    assert manifest_before is not None
    resumed = lrconsole("--sessions-dir", str(sessions), "run", "victim", timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert metric_rows(folder) == expected
    assert not temp_files(folder)  # the next open removed what the kills left


class Counted(torch.Tensor):
    """A loss that counts how often Python reads its value (each a device sync on CUDA)."""

    reads = 0

    def item(self) -> Any:  # type: ignore[override]
        Counted.reads += 1
        return super().item()

    def __float__(self) -> float:
        Counted.reads += 1
        return super().__float__()

    def tolist(self) -> Any:  # type: ignore[override]
        Counted.reads += 1
        return super().tolist()


def counting_task(lag: bool | None = None) -> Any:
    task = load_task(TaskSpec("lesson"))
    plain = task.loss

    def loss(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        value = plain(y_hat, y)
        return value.as_subclass(Counted) if torch.is_grad_enabled() else value

    task.loss = loss
    return task


def overlapped_run(folder: Path, slow_copy: float) -> tuple[Trainer, list[ev.CheckpointSaved]]:
    """The 1.1M MLP, a checkpoint at every epoch end, parameter copies overlapping the
    next step (`slow_copy` seconds late: the step must wait for them)."""
    namespace: dict[str, Any] = {}
    exec(TASK, namespace)  # noqa: S102 - the test's own task source
    seed_everything(0)  # the same initial weights for each run
    trainer = Trainer.open(
        folder,
        schedule=Schedule([Segment(1e-3, epochs=4)]),
        task=namespace["make_task"](width=256),
        tensorboard=False,
        checkpoint_interval=0,
    )
    saved: list[ev.CheckpointSaved] = []
    trainer.engine.on(ev.CheckpointSaved, saved.append)
    checkpointer = trainer.checkpointer
    assert checkpointer is not None
    checkpointer.OVERLAP_MIN = 0 if slow_copy else 1 << 62
    copy = checkpointer.snapshot.copy_deferred

    def late() -> None:
        time.sleep(slow_copy)
        copy()

    checkpointer.snapshot.copy_deferred = late  # type: ignore[method-assign]
    assert trainer.engine.run() == "done"
    trainer.close()
    return trainer, saved


def test_overlapped_copies_hold_the_next_optimizer_step(tmp_path: Path) -> None:
    """Parameters and optimizer state are copied while the next step's forward and
    backward run; that step's optimizer.step waits for the copy, so every checkpoint
    holds exactly the state of its step, as one copied at once does."""
    from lrconsole.core.session.writer import STEP_GATE

    waited = STEP_GATE.waited_s
    late, saved = overlapped_run(tmp_path / "late", slow_copy=0.2)
    assert STEP_GATE.waited_s - waited > 0.1 * len(saved)  # the steps did wait
    assert late.checkpointer is not None and late.checkpointer.blocked_s >= 0.1 * len(saved)
    plain, plain_saved = overlapped_run(tmp_path / "plain", slow_copy=0.0)
    assert [e.global_step for e in saved] == [e.global_step for e in plain_saved]
    kept = [e.path for e in saved if (tmp_path / "late" / e.path).exists()]
    assert len(kept) >= 3  # the newest few (older ones are pruned)
    for path in kept:
        a = load_checkpoint(tmp_path / "late" / path)
        b = load_checkpoint(tmp_path / "plain" / path)
        for part in ("model", "optimizer"):
            flat_a, flat_b = flatten(a[part]), flatten(b[part])
            assert flat_a.keys() == flat_b.keys()
            assert all(torch.equal(flat_a[k], flat_b[k]) for k in flat_a), (part, path)
    assert metric_rows(tmp_path / "late") == metric_rows(tmp_path / "plain")


def flatten(value: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return {prefix: value}
    if not isinstance(value, (dict, list, tuple)):
        return {}
    items = value.items() if isinstance(value, dict) else enumerate(value)
    out: dict[str, torch.Tensor] = {}
    for key, item in items:
        out.update(flatten(item, f"{prefix}/{key}"))
    return out


@pytest.mark.parametrize("lag", [True, None])
def test_no_loss_is_read_on_the_training_step(tmp_path: Path, lag: bool | None) -> None:
    """`lag` True: the path a device's loss takes (a copy, read a step late), on a CPU;
    it never reads the loss itself. None: a CPU's loss, read at once (no sync to avoid)."""
    Counted.reads = 0
    trainer = Trainer.open(
        tmp_path / "s",
        schedule=Schedule([Segment(0.03, epochs=4)]),
        task=counting_task(),
        tensorboard=False,
    )
    trainer.engine.losses.lag = lag
    batches: list[ev.BatchEnd] = []
    trainer.engine.on(ev.BatchEnd, batches.append)
    assert trainer.engine.run() == "done"
    trainer.close()
    steps = trainer.engine.global_step
    assert steps == 4 * 14
    # Lagged: was one .item() per step. On a CPU, one read of the detached loss a step.
    assert Counted.reads == (0 if lag else steps)
    # The batch chart still gets every step, with its loss, in order.
    assert [b.global_step for b in batches] == list(range(1, steps + 1))
    assert all(math.isfinite(b.loss) and b.loss > 0 for b in batches)


HOT = [Segment(0.03, epochs=5), Segment(5.0, epochs=3)]  # the lesson spikes in epoch 6


def run_hot(folder: Path, lag: bool) -> tuple[Trainer, list[ev.BatchEnd], list[str], str]:
    # The loss guard alone: on a CPU the gradient guard judges each step at once, so with
    # the loss read late it would name the same step first (tests/test_gradnorm.py).
    plan = Schedule(HOT, grad_guard={"grad_spike_factor": None})
    trainer = Trainer.open(folder, schedule=plan, tensorboard=False, checkpoint_interval=0)
    trainer.engine.losses.lag = lag
    batches: list[ev.BatchEnd] = []
    errors: list[str] = []
    trainer.engine.on(ev.BatchEnd, batches.append)
    trainer.engine.on(ev.Error, lambda e: errors.append(e.message))
    reason = trainer.engine.run()
    trainer.close()
    return trainer, batches, errors, reason


def test_a_guard_that_reads_the_loss_a_step_late_decides_the_same(tmp_path: Path) -> None:
    """As on CUDA: each loss is judged when the next step is queued. The bad step, the
    message, the checkpoint kept and every batch point are those of an unlagged run."""
    now, now_batches, now_errors, now_reason = run_hot(tmp_path / "now", lag=False)
    late, late_batches, late_errors, late_reason = run_hot(tmp_path / "late", lag=True)
    assert now_reason == late_reason == "diverged"
    assert late.engine.diverged_at == now.engine.diverged_at is not None
    assert late_errors == now_errors and len(now_errors) == 1
    # Every batch point the same; the lagged run trained one step past the bad one.
    pairs = [(b.global_step, b.loss) for b in late_batches]
    assert pairs[:-1] == [(b.global_step, b.loss) for b in now_batches]
    assert pairs[-1][0] == now_batches[-1].global_step + 1
    a, b = Manifest.read(tmp_path / "now"), Manifest.read(tmp_path / "late")
    assert (a.checkpoint, a.diverged) == (b.checkpoint, b.diverged)
    assert a.global_epoch == 5  # nothing past the bad step was checkpointed
    # Rolled back, the lagged session trains on to the same numbers.
    for name in ("now", "late"):
        Trainer.rollback_to(tmp_path / name, 5, tensorboard=False)
    fixed = [Segment(0.01, epochs=2)]
    for name in ("now", "late"):
        t = Trainer.open(tmp_path / name, schedule=Schedule(HOT[:1] + fixed), tensorboard=False)
        t.engine.losses.lag = name == "late"
        assert t.engine.run() == "done"
        t.close()
    assert metric_rows(tmp_path / "now") == metric_rows(tmp_path / "late")


def test_the_interval_adapts_to_the_checkpoint_cost(tmp_path: Path) -> None:
    """A checkpoint per epoch end was asked for (every 1 ms), but the lesson's epochs take
    a few ms: checkpoints come at most every 50x their blocking time."""
    trainer = Trainer.open(
        tmp_path / "s",
        schedule=Schedule([Segment(0.03, epochs=60)]),
        tensorboard=False,
        checkpoint_interval=0.001,
    )
    saved: list[ev.CheckpointSaved] = []
    trainer.engine.on(ev.CheckpointSaved, saved.append)
    assert trainer.engine.run() == "done"
    trainer.close()
    stats = Manifest.read(tmp_path / "s").checkpointing
    assert stats is not None
    assert stats["interval_s"] >= max(0.001, 50 * stats["blocking_s"]) - 1e-3
    assert stats["bytes"] > 0 and 0 <= stats["share"] < 1
    # The interval grew from the 1 ms asked for to the checkpoint's cost, so far fewer
    # than the 60 epoch ends took one. (A count bound from the last interval alone was
    # flaky: earlier intervals, set from other saves' costs, can be shorter.)
    assert stats["interval_s"] >= 0.01
    assert len(saved) < 60


def test_show_and_prune(tmp_path: Path) -> None:
    sessions = tmp_path / "sessions"
    plan = write_plan(
        tmp_path / "plan.yaml", "lesson", [(3, 0.03), (3, 0.01), (3, 0.005)], "keep_checkpoints: 2"
    )
    done = lrconsole(
        "--sessions-dir",
        str(sessions),
        "run",
        "p",
        "--schedule",
        str(plan),
        "--checkpoint-every",
        "0",
    )
    assert done.returncode == 0, done.stderr
    folder = sessions / "p"
    assert Manifest.read(folder).keep_checkpoints == 2  # from the YAML
    before = {p.name: p.stat().st_size for p in checkpoint_files(folder)}
    # A checkpoint at every epoch end; kept: the 2 newest (epochs 8, 9) and the 2 newest
    # segment boundaries (epochs 6, 9); not the boundary at epoch 3.
    assert sorted(before) == ["step-000000084.pt", "step-000000112.pt", "step-000000126.pt"]
    shown = lrconsole("--sessions-dir", str(sessions), "show", "p")
    assert shown.returncode == 0, shown.stderr
    size = Manifest.read(folder).checkpointing["bytes"]  # type: ignore[index]
    assert f"checkpoint {size / 1e3:.0f} KB: training waited" in shown.stdout
    assert "% of training time spent waiting on checkpoints" in shown.stdout

    pruned = lrconsole("--sessions-dir", str(sessions), "prune", "p", "--keep", "1")
    assert pruned.returncode == 0, pruned.stderr
    after = [p.name for p in checkpoint_files(folder)]
    assert after == ["step-000000126.pt"]  # only the one the session stands at
    freed = sum(size for name, size in before.items() if name not in after)
    assert f"freed {freed / 1e6:.1f} MB: removed {len(before) - 1} checkpoints" in pruned.stdout
    assert "kept epochs: 9" in pruned.stdout
    resumed = lrconsole("--sessions-dir", str(sessions), "show", "p")
    assert resumed.returncode == 0 and "epoch 9" in resumed.stdout

    missing = lrconsole("--sessions-dir", str(sessions), "prune", "nope")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
def test_cuda_trains_checkpoints_and_resumes_exactly_without_a_sync_per_step(
    tmp_path: Path,
) -> None:
    sys.path.insert(0, str(tmp_path))
    write_task(tmp_path)
    import importlib

    module = importlib.import_module("mlp_task")
    plan = [Segment(1e-3, epochs=3), Segment(3e-4, epochs=3)]

    def run(folder: Path, segments: list[Segment]) -> Trainer:
        task = module.make_task(width=256, steps=12, device="cuda")
        return Trainer.open(folder, schedule=Schedule(segments), task=task, tensorboard=False)

    whole = run(tmp_path / "whole", plan)
    strict: list[int] = []

    def watch(event: ev.BatchEnd) -> None:
        # In the middle of epoch 2 (steps 13-24), past the warm-up: a sync raises there.
        if event.global_step == 14:
            torch.cuda.set_sync_debug_mode("error")
        elif event.global_step == 20:
            torch.cuda.set_sync_debug_mode("default")
        if torch.cuda.get_sync_debug_mode() == 2:
            strict.append(event.global_step)

    whole.engine.on(ev.BatchEnd, watch)
    try:
        assert whole.engine.run() == "done"
    finally:
        torch.cuda.set_sync_debug_mode("default")
    whole.close()
    assert strict == [14, 15, 16, 17, 18, 19]  # five whole steps trained in between
    checkpoint = Manifest.read(tmp_path / "whole").checkpoint
    assert checkpoint is not None
    assert "cuda" in load_checkpoint(tmp_path / "whole" / checkpoint)["rng"]

    half = run(tmp_path / "half", plan[:1])
    assert half.engine.run() == "done"
    half.close()
    rest = run(tmp_path / "half", plan)
    assert next(rest.model.parameters()).device.type == "cuda"
    assert rest.engine.run() == "done"
    rest.close()
    assert metric_rows(tmp_path / "half") == metric_rows(tmp_path / "whole")
