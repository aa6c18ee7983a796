"""The session folder's files read in one place: the metrics reader, checkpoint names,
"better" under a monitor mode and the hello snapshot. No runner, no training."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lrconsole.core.plan.plan import Plan
from lrconsole.core.plan.segment import OptimizerSpec, Segment, TaskSpec
from lrconsole.core.session.discover import read_metrics
from lrconsole.core.session.layout import (
    CHECKPOINTS,
    METRICS,
    checkpoint_files,
    checkpoint_name,
    checkpoint_step,
    checkpoint_steps,
)
from lrconsole.core.session.manifest import Manifest, SessionError
from lrconsole.core.session.metrics import (
    MetricsLog,
    best_of,
    better,
    check_file,
    read_rows,
)
from lrconsole.core.session.snapshot import PROTOCOL_VERSION, build_snapshot
from lrconsole.protocol import VERSION
from lrconsole.tui.disk import snapshot_from_disk

HEADER = "global_epoch,global_step,segment,lr,train_loss,test_loss,time\n"
ROWS = [
    "1,14,0,0.03,2.5,2.7,1700000001.0\n",
    "2,28,0,0.03,1.5,1.6,1700000002.0\n",
    "3,42,0,0.03,1.0,1.2,1700000003.0\n",
]


def write_csv(folder: Path, *lines: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / METRICS
    path.write_text(HEADER + "".join(lines))
    return path


# -- the one reader ---------------------------------------------------------------------
def test_a_torn_last_line_is_left_out(tmp_path: Path) -> None:
    path = write_csv(tmp_path, *ROWS, "4,56,0,0.0")  # a crash cut the line short
    rows = read_rows(path)
    assert [r["global_epoch"] for r in rows] == ["1", "2", "3"]
    assert rows[0] == {
        "global_epoch": "1",
        "global_step": "14",
        "segment": "0",
        "lr": "0.03",
        "train_loss": "2.5",
        "test_loss": "2.7",
        "time": "1700000001.0",
    }
    assert read_rows(path, stop_at_torn=True) == rows


def test_a_short_row_is_skipped_but_stops_a_strict_read(tmp_path: Path) -> None:
    path = write_csv(tmp_path, ROWS[0], "2,28,0\n", ROWS[2])
    assert [r["global_epoch"] for r in read_rows(path)] == ["1", "3"]
    assert [r["global_epoch"] for r in read_rows(path, stop_at_torn=True)] == ["1"]


def test_a_row_without_its_time_stops_only_a_strict_read(tmp_path: Path) -> None:
    path = write_csv(tmp_path, *ROWS[:2], "3,42,0,0.03,1.0,1.2,\n")
    assert [r["global_epoch"] for r in read_rows(path)] == ["1", "2", "3"]
    assert [r["global_epoch"] for r in read_rows(path, stop_at_torn=True)] == ["1", "2"]


def test_garbage_values_are_refused_naming_the_line(tmp_path: Path) -> None:
    # A whole row that is not numbers is damage: one line naming file and line.
    path = write_csv(tmp_path, ROWS[0], "x,y,0,fast,nan,,1700000002.0\n")
    with pytest.raises(SessionError, match=r"metrics.csv: line 3: not a metrics row"):
        check_file(path)
    assert read_rows(path)[1]["global_epoch"] == "x"  # the console's lenient read


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_rows(tmp_path / METRICS)
    assert read_metrics(tmp_path) == []


def test_read_metrics_tail(tmp_path: Path) -> None:
    write_csv(tmp_path, *ROWS, "4,56")
    assert [r["global_epoch"] for r in read_metrics(tmp_path)] == ["1", "2", "3"]
    assert [r["global_epoch"] for r in read_metrics(tmp_path, tail=1)] == ["3"]


def test_the_log_reopens_without_the_torn_line_or_later_epochs(tmp_path: Path) -> None:
    path = write_csv(tmp_path, *ROWS, "4,56,0,0.03,0.9")
    log = MetricsLog(tmp_path, ["train_loss", "test_loss"])
    rows = log.open(keep_epochs=2)
    log.close()
    assert [r["global_epoch"] for r in rows] == [1, 2]
    assert rows[1]["lr"] == 0.03 and rows[1]["test_loss"] == 1.6
    assert path.read_text() == HEADER + ROWS[0] + ROWS[1]
    # Rows up to the checkpoint were synced before it was written: missing is damage.
    with pytest.raises(SessionError, match=r"metrics.csv: ends early: the row of epoch 3"):
        log.open(keep_epochs=10)
    assert path.read_text() == HEADER + ROWS[0] + ROWS[1]


def test_the_log_refuses_a_garbage_epoch(tmp_path: Path) -> None:
    write_csv(tmp_path, ROWS[0], "x,28,0,0.03,1.5,1.6,1700000002.0\n")
    with pytest.raises(SessionError, match=r"metrics.csv: line 3: not a metrics row"):
        MetricsLog(tmp_path, ["train_loss", "test_loss"]).open(keep_epochs=5)


def test_the_console_skips_garbage_rows_and_values(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    write_csv(folder, ROWS[0], "x,y,0,0.03,1,1,1\n", "2,28,0,0.03,oops,1.6,1700000002.0\n")
    manifest(global_step=28).write(folder)
    snapshot = snapshot_from_disk(folder)
    assert snapshot is not None
    history = snapshot["history"]
    assert [h["global_epoch"] for h in history] == [1, 2]
    assert history[1]["metrics"] == {"test_loss": 1.6}


# -- checkpoint names ---------------------------------------------------------------------
def test_checkpoint_step() -> None:
    assert checkpoint_name(123) == f"{CHECKPOINTS}/step-000000123.pt"
    assert checkpoint_step(checkpoint_name(123)) == 123
    assert checkpoint_step(Path("/somewhere/s/checkpoints/step-000000042.pt")) == 42
    assert checkpoint_step("step-7.pt") == 7
    for odd in ("step-.pt", "step-12.pt.tmp", "step-x.pt", "model.pt", ".step-1.pt.ab.tmp"):
        assert checkpoint_step(odd) is None, odd


def test_checkpoint_files_and_steps(tmp_path: Path) -> None:
    folder = tmp_path / CHECKPOINTS
    folder.mkdir()
    for name in ("step-000000028.pt", "step-000000014.pt", "step-zz.pt", "other.pt"):
        (folder / name).write_bytes(b"")
    assert [p.name for p in checkpoint_files(tmp_path)] == [
        "step-000000014.pt",
        "step-000000028.pt",
        "step-zz.pt",
    ]
    assert checkpoint_steps(tmp_path) == [14, 28]
    assert checkpoint_steps(tmp_path / "nowhere") == []


# -- better under a monitor mode ----------------------------------------------------------
def row(epoch: int, **metrics: float | None) -> dict[str, Any]:
    return {"global_epoch": epoch, "metrics": metrics}


def test_better() -> None:
    assert better(0.5, 1.0, "min") and not better(1.5, 1.0, "min")
    assert better(0.9, 0.8, "max") and not better(0.7, 0.8, "max")
    assert not better(1.0, 1.0, "min") and not better(1.0, 1.0, "max")  # a tie keeps the old
    assert not better(math.nan, 1.0, "min") and not better(math.nan, 1.0, "max")


def test_best_of_accuracy_is_the_highest() -> None:
    history = [row(1, test_acc=0.5), row(2, test_acc=0.9), row(3, test_acc=0.7)]
    assert best_of(history, "test_acc", "max") == {"metric": "test_acc", "value": 0.9, "epoch": 2}
    assert best_of(history, "test_acc", "min") == {"metric": "test_acc", "value": 0.5, "epoch": 1}


def test_best_of_skips_missing_values_and_keeps_the_first_tie() -> None:
    history = [row(1), row(2, loss=0.3), row(3, loss=None), row(4, loss=0.3), row(5, loss=0.4)]
    assert best_of(history, "loss", "min") == {"metric": "loss", "value": 0.3, "epoch": 2}
    assert best_of(history, "other", "min") is None
    assert best_of([], "loss", "max") is None


def test_best_of_matches_min_and_max() -> None:
    # The trainer's former best_of was min/max over the rows with a value: the same picks.
    values = [3.0, 1.0, 2.0, 1.0, 5.0, 5.0, math.nan, 0.5]
    history = [row(i + 1, m=v) for i, v in enumerate(values)]
    for mode, pick in (("min", min), ("max", max)):
        chosen = pick(history, key=lambda r: r["metrics"]["m"])
        best = best_of(history, "m", mode)
        assert best is not None and best["epoch"] == chosen["global_epoch"], mode


# -- the hello snapshot -------------------------------------------------------------------
def manifest(global_step: int = 0) -> Manifest:
    return Manifest(
        name="s",
        task=TaskSpec("lesson"),
        seed=3,
        optimizer=OptimizerSpec("sgd", {"momentum": 0.9}),
        steps_per_epoch=14,
        metrics=["train_loss", "test_loss"],
        monitor="test_loss",
        segments=[Segment.from_dict({"epochs": 5, "lr": 0.03})],
        global_step=global_step,
        global_epoch=global_step // 14,
        policy_marks=[{"epoch": 1, "policy": "plateau", "lr": 0.01}],
    )


def test_build_snapshot_has_the_protocol_shape(tmp_path: Path) -> None:
    m = manifest(28)
    plan = Plan(m.segments, m.steps_per_epoch).to_dict(28)
    state = {"state": "running", "reason": None, "global_epoch": 2}
    snap = build_snapshot(
        m, folder=tmp_path, plan=plan, state=state, runner={"pid": 7, "version": "x"}
    )
    assert list(snap) == ["protocol", "runner", "session", "state", "plan"]
    assert PROTOCOL_VERSION == VERSION
    assert snap["protocol"] == 1 and snap["runner"] == {"pid": 7, "version": "x"}
    assert snap["session"] == {
        "name": "s",
        "dir": str(tmp_path.resolve()),
        "task": "lesson",
        "seed": 3,
        "optimizer": {"name": "sgd", "momentum": 0.9},
        "steps_per_epoch": 14,
        "metrics": ["train_loss", "test_loss"],
        "monitor": "test_loss",
        "policy_marks": [{"epoch": 1, "policy": "plateau", "lr": 0.01}],
    }
    assert snap["session"]["policy_marks"] is not m.policy_marks  # a copy, as sent
    assert snap["state"] is state and snap["plan"] is plan
    history = [{"global_epoch": 1}]
    with_history = build_snapshot(m, folder=tmp_path, plan=plan, state=state, history=history)
    assert list(with_history) == ["protocol", "session", "state", "plan", "history"]
    assert with_history["history"] is history


def test_the_files_give_a_snapshot_without_a_runner(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    write_csv(folder, *ROWS)
    manifest(28).write(folder)
    snap = snapshot_from_disk(folder)
    assert snap is not None
    assert "runner" not in snap
    assert snap["state"] == {"state": "paused", "reason": None, "global_epoch": 2}
    assert snap["plan"]["done_steps"] == 28
    assert [h["global_epoch"] for h in snap["history"]] == [1, 2]  # past the checkpoint: not
    assert snap["history"][0] == {
        "global_epoch": 1,
        "global_step": 14,
        "segment": 0,
        "lr": 0.03,
        "metrics": {"train_loss": 2.5, "test_loss": 2.7},
        "time": 1700000001.0,  # the elapsed clock of a reopened session reads it
    }


def test_reading_session_files_never_imports_torch() -> None:
    modules = [
        "lrconsole.core.session.layout",
        "lrconsole.core.session.discover",
        "lrconsole.core.session.metrics",
        "lrconsole.core.session.snapshot",
        "lrconsole.tui.disk",
    ]
    code = "import importlib, sys\n"
    code += "".join(f"importlib.import_module({m!r})\n" for m in modules)
    code += "print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
