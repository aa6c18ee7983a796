"""The planned LR curve (the preview) and branch overlays, on the console's model."""

from __future__ import annotations

import math
from pathlib import Path

from lrconsole.tui.model import RunModel
from lrconsole.tui.screens.run import load_branches


def snapshot(history_epochs: int, segments: list[dict[str, object]]) -> dict[str, object]:
    history = [
        {
            "global_epoch": e,
            "global_step": e * 2,
            "segment": 0,
            "lr": 0.1,
            "metrics": {"test_loss": 1.0 / e},
            "time": 0.0,
        }
        for e in range(1, history_epochs + 1)
    ]
    return {
        "session": {
            "name": "p",
            "steps_per_epoch": 2,
            "metrics": ["test_loss"],
            "monitor": "test_loss",
        },
        "state": {"state": "paused", "reason": "operator"},
        "plan": {"segments": segments, "done_steps": history_epochs * 2, "current": 1},
        "history": history,
    }


def test_the_preview_follows_the_queue_after_the_history() -> None:
    model = RunModel()
    segments = [
        {"epochs": 3, "lr": 0.1},
        {"epochs": 4, "lr": 0.05, "shape": "cosine", "params": {"lr_end": 0.01}},
    ]
    model.load_snapshot(snapshot(3, segments))
    planned = model.planned_lr()
    assert planned is not None and len(planned) == 7
    buckets = planned.buckets(7)
    assert all(math.isinf(lo) for lo, _ in buckets[:3])  # nothing drawn over the history
    firsts = [lo for lo, _ in buckets[3:]]
    assert firsts[0] == 0.05 and firsts == sorted(firsts, reverse=True)  # cosine goes down
    model.plan = {**model.plan, "segments": segments[:1]}
    assert model.planned_lr() is None  # nothing queued: no preview


def test_branches_are_read_from_the_session(tmp_path: Path) -> None:
    (tmp_path / "branches").mkdir()
    (tmp_path / "branches" / "path-0.csv").write_text(
        "global_epoch,global_step,segment,lr,test_loss,time\n3,6,1,10,5.0,0\n4,8,1,10,9.0,0\n"
    )
    (tmp_path / "manifest.yaml").write_text(
        "format: 1\nname: p\ntask: {spec: lesson, args: {}}\nsteps_per_epoch: 2\n"
        "metrics: [test_loss]\nposition: {global_epoch: 2, global_step: 4}\nsegments: []\n"
        "branches:\n  - {path: 0, fork_epoch: 2, epochs: 4, metrics: branches/path-0.csv}\n"
    )
    model = RunModel()
    model.load_snapshot(snapshot(2, [{"epochs": 2, "lr": 0.1}]))
    branches = load_branches(tmp_path, model)
    series = branches["path 0"]
    assert len(series) == 4 and series.last == 9.0
