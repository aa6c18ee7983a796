"""Policies, the divergence guard, rollback with branches, and the LR range test."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.plan.segment import ScheduleError, Segment
from lrconsole.core.session.manifest import Manifest
from lrconsole.core.train import events as ev
from lrconsole.core.train.lrfind import lr_find
from lrconsole.core.train.policies import Tracker
from lrconsole.core.train.trainer import Trainer
from tests.conftest import lrconsole, metric_rows, write_schedule


def open_trainer(folder: Path, segments: list[Segment], **kw: object) -> Trainer:
    return Trainer.open(folder, schedule=Schedule(segments), **kw)  # type: ignore[arg-type]


def metrics_of(trainer: Trainer) -> list[dict[str, float]]:
    return [row["metrics"] for row in trainer.history]


# -- policies on synthetic metric sequences -------------------------------------------------
@pytest.mark.parametrize(
    ("values", "min_delta", "waits"),
    [
        ([5, 4, 3, 2], 0.0, [0, 0, 0, 0]),
        ([5, 5, 5, 5], 0.0, [0, 1, 2, 3]),
        ([5, 4.95, 4.9, 3], 0.1, [0, 1, 2, 0]),  # improvements under min_delta do not count
        ([5, 6, 4, 7], 0.0, [0, 1, 0, 1]),
    ],
)
def test_tracker_counts_epochs_without_improvement(
    values: list[float], min_delta: float, waits: list[int]
) -> None:
    tracker = Tracker("min", min_delta)
    assert [(tracker.update(v), tracker.wait)[1] for v in values] == waits


def test_tracker_maximises_accuracy() -> None:
    tracker = Tracker("max", 0.0)
    assert [tracker.update(v) for v in [0.5, 0.6, 0.55, 0.7]] == [True, True, False, True]


def test_policy_parameters_are_checked() -> None:
    seg = Segment.from_dict({"epochs": 5, "lr": 0.1, "plateau": {"patience": 2}})
    assert seg.plateau == {"factor": 0.1, "patience": 2, "min_delta": 0.0, "min_lr": 0.0}
    assert Segment.from_dict({"epochs": 5, "lr": 0.1, "early_stop": True}).early_stop
    for bad in ({"factor": 2}, {"patience": 0}, {"patience": 1.5}, {"colour": 1}, "soon"):
        with pytest.raises(ScheduleError):
            Segment.from_dict({"epochs": 5, "lr": 0.1, "plateau": bad})


def test_plateau_lowers_the_lr_and_the_export_replays_it(tmp_path: Path) -> None:
    # min_delta is huge, so only the first epoch counts as an improvement.
    plateau = {"factor": 0.5, "patience": 2, "min_delta": 1e6, "min_lr": 0.0}
    trainer = open_trainer(tmp_path / "p", [Segment(0.04, epochs=8, plateau=plateau)])
    fired: list[ev.PolicyFired] = []
    trainer.engine.on(ev.PolicyFired, fired.append)
    trainer.engine.run()
    trainer.close()
    assert [f.policy for f in fired] == ["plateau", "plateau"]
    assert [row["lr"] for row in trainer.history] == [0.04] * 3 + [0.02] * 3 + [0.01] * 2
    # Recorded in the session, for the console's chart marks after a reopen.
    marks = Manifest.read(tmp_path / "p").policy_marks
    assert marks == [
        {"epoch": 3, "policy": "plateau", "lr": 0.02},
        {"epoch": 6, "policy": "plateau", "lr": 0.01},
    ]
    out = tmp_path / "path.yaml"
    trainer.schedule().dump(out)
    assert Schedule.load(out).segments[1].plateau == plateau  # recorded in the schedule
    replay = Trainer.open(tmp_path / "r", schedule=Schedule.load(out))
    replay.engine.run()
    replay.close()
    assert metrics_of(replay) == metrics_of(trainer)
    assert [row["lr"] for row in replay.history] == [row["lr"] for row in trainer.history]


def test_early_stopping_restores_the_best_weights_exactly(tmp_path: Path) -> None:
    stop = {"patience": 3, "min_delta": 1e6}
    trainer = open_trainer(tmp_path / "e", [Segment(0.03, epochs=20, early_stop=stop)])
    fired: list[ev.PolicyFired] = []
    trainer.engine.on(ev.PolicyFired, fired.append)
    trainer.engine.run()
    assert [f.policy for f in fired] == ["early_stop"]
    assert "restored the best weights, from epoch 1" in fired[0].message
    assert trainer.engine.global_epoch == 1
    assert trainer.manifest.branches[0]["epochs"] == 4  # epochs 2-4 kept as a branch
    assert trainer.manifest.policy_marks == [{"epoch": 1, "policy": "early_stop", "lr": 0.03}]
    # Training on from the restored epoch gives the abandoned epochs again, bit for bit.
    trainer.engine.queue([Segment(0.03, epochs=3)])
    trainer.engine.run()
    trainer.close()
    reference = open_trainer(tmp_path / "ref", [Segment(0.03, epochs=4)], tensorboard=False)
    reference.engine.run()
    reference.close()
    assert metrics_of(trainer) == metrics_of(reference)


# -- the divergence guard and rollback on the lesson task ----------------------------------
def test_guard_catches_lr_10_and_rollback_restores_the_exact_metrics(
    sessions: Path, tmp_path: Path
) -> None:
    plan = write_schedule(tmp_path / "hot.yaml", [(5, 0.03), (5, 10.0)])
    hot = lrconsole("--sessions-dir", str(sessions), "run", "hot", "--schedule", str(plan))
    assert hot.returncode == 1, hot.stderr
    assert "diverged at step" in hot.stderr and "lrconsole rollback hot" in hot.stderr
    assert "the last good checkpoint (epoch 5) is kept" in hot.stderr
    assert "Traceback" not in hot.stderr
    kept = lrconsole("--sessions-dir", str(sessions), "rollback", "hot")
    assert "epochs: 5" in kept.stdout
    back = lrconsole("--sessions-dir", str(sessions), "rollback", "hot", "--epoch", "5")
    assert back.returncode == 0, back.stderr
    assert "back at epoch 5" in back.stdout
    calm = write_schedule(tmp_path / "calm.yaml", [(5, 0.03), (5, 0.01)])
    run = lrconsole("--sessions-dir", str(sessions), "run", "hot", "--schedule", str(calm))
    assert run.returncode == 0, run.stderr
    reference = lrconsole("--sessions-dir", str(tmp_path), "run", "ref", "--schedule", str(calm))
    assert reference.returncode == 0
    assert metric_rows(sessions / "hot") == metric_rows(tmp_path / "ref")
    show = lrconsole("--sessions-dir", str(sessions), "show", "hot")
    assert "disk use" in show.stdout


def test_a_diverged_step_never_overwrites_the_last_good_checkpoint(tmp_path: Path) -> None:
    trainer = open_trainer(
        tmp_path / "d", [Segment(0.03, epochs=2), Segment(10.0, epochs=5)], checkpoint_interval=0
    )
    errors: list[ev.Error] = []
    trainer.engine.on(ev.Error, errors.append)
    assert trainer.engine.run() == "diverged"
    trainer.close()
    assert errors and not errors[0].fatal
    state = torch.load(tmp_path / "d" / trainer.manifest.checkpoint, weights_only=True)
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    assert trainer.manifest.global_epoch <= trainer.engine.global_epoch


def test_each_path_is_its_own_tensorboard_run_without_overlapping_steps(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = open_trainer(tmp_path / "tb", [Segment(0.03, epochs=4), Segment(0.01, epochs=4)])
    trainer.engine.run()
    trainer.rollback(4)
    trainer.engine.queue([Segment(0.005, epochs=3)])
    trainer.engine.run()
    trainer.close()
    steps = {}
    for run in ("path-0", "path-1"):
        acc = EventAccumulator(str(tmp_path / "tb" / "tb" / run))
        acc.Reload()
        steps[run] = [e.step for e in acc.Scalars("loss/test")]
    assert steps["path-0"] == list(range(1, 9))
    assert steps["path-1"] == [5, 6, 7]


# -- the LR range test ---------------------------------------------------------------------
def test_lr_find_leaves_the_run_untouched(tmp_path: Path) -> None:
    trainer = open_trainer(tmp_path / "f", [Segment(0.03, epochs=3)], tensorboard=False)
    trainer.engine.run()
    engine = trainer.engine
    before = {k: v.clone() for k, v in engine.model.state_dict().items()}
    opt_before = repr(engine.optimizer.state_dict())
    torch_rng, py_rng = torch.get_rng_state(), random.getstate()
    result = lr_find(engine, steps=60)
    assert all(torch.equal(before[k], v) for k, v in engine.model.state_dict().items())
    assert repr(engine.optimizer.state_dict()) == opt_before
    assert torch.equal(torch.get_rng_state(), torch_rng) and random.getstate() == py_rng
    assert result.stopped_early  # the sweep to lr 10 diverges on this task
    assert 1e-6 <= result.suggestion <= 10 and len(result.lrs) == len(result.losses)
    # And training goes on exactly as if no sweep had run.
    engine.queue([Segment(0.01, epochs=2)])
    engine.run()
    trainer.close()
    plain = open_trainer(tmp_path / "g", [Segment(0.03, epochs=3), Segment(0.01, epochs=2)])
    plain.engine.run()
    plain.close()
    assert metrics_of(trainer) == metrics_of(plain)


def test_lr_find_and_preview_commands(sessions: Path, tmp_path: Path) -> None:
    plan = write_schedule(tmp_path / "p.yaml", [(2, 0.03)])
    assert (
        lrconsole("--sessions-dir", str(sessions), "run", "s", "--schedule", str(plan)).returncode
        == 0
    )
    found = lrconsole("--sessions-dir", str(sessions), "lr-find", "s", "--steps", "40")
    assert found.returncode == 0, found.stderr
    assert "suggested lr" in found.stdout and "lr (log)" in found.stdout
    bad = lrconsole("--sessions-dir", str(sessions), "lr-find", "s", "--end-lr", "-1")
    assert bad.returncode == 2 and "end_lr" in bad.stderr
    shaped = tmp_path / "shaped.yaml"
    shaped.write_text(
        "steps_per_epoch: 14\nsegments:\n"
        "  - {epochs: 3, lr: 0.05, shape: linear_warmup}\n"
        "  - {epochs: 10, lr: 0.05, shape: cosine, params: {lr_end: 0.001}}\n"
    )
    preview = lrconsole("preview", str(shaped))
    assert preview.returncode == 0, preview.stderr
    assert "•" in preview.stdout and "13 epochs, 182 steps" in preview.stdout


def test_lr_find_steepest_descent_looks_at_the_whole_sweep() -> None:
    from lrconsole.core.train.lrfind import suggest

    lrs = [1e-6 * 10 ** (i / 10) for i in range(60)]
    # Noisy and flat at first (its lowest point is the second one), then a steep fall
    # around 1e-3, then the rise of divergence.
    losses = [5.0, 4.0, 5.1, 4.9, 5.2] + [5.0] * 25 + [5.0 - 0.3 * i for i in range(10)]
    losses += [2.5 + 0.5 * i for i in range(20)]
    valley, steepest, lowest = suggest(lrs, losses)
    assert lrs[30] < steepest < lrs[40]  # on the fall, not at the noisy start
    assert lowest == lrs[39]
    assert lrs[30] <= valley <= lrs[40]
