"""The run screen draws a session's history from its files before the runner answers."""

from __future__ import annotations

import asyncio
import csv
import subprocess
import sys
from pathlib import Path
from typing import Any

from lrconsole.core.session.layout import METRICS
from lrconsole.tui.app import make_app
from lrconsole.tui.disk import snapshot_from_disk
from lrconsole.tui.screens.run import RunScreen


def trained_session(tmp_path: Path) -> Path:
    plan = tmp_path / "plan.yaml"
    plan.write_text("version: 1\ntask: lesson\nseed: 0\nsegments:\n  - {epochs: 3, lr: 0.03}\n")
    out = subprocess.run(
        [sys.executable, "-m", "lrconsole", "run", "s", "--schedule", str(plan)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return tmp_path / "sessions" / "s"


def test_snapshot_from_disk_matches_the_files(tmp_path: Path) -> None:
    folder = trained_session(tmp_path)
    snapshot = snapshot_from_disk(folder)
    assert snapshot is not None
    with open(folder / METRICS, newline="") as handle:
        rows = list(csv.DictReader(handle))
    history = snapshot["history"]
    assert [h["global_epoch"] for h in history] == [1, 2, 3]
    for h, row in zip(history, rows, strict=True):
        assert h["lr"] == float(row["lr"]) == 0.03
        assert h["metrics"] == {k: float(row[k]) for k in ("train_loss", "test_loss")}
    assert snapshot["plan"]["done_steps"] == 3 * 14
    assert snapshot["session"]["metrics"] == ["train_loss", "test_loss"]
    assert snapshot_from_disk(tmp_path / "sessions" / "nothing-here") is None


async def test_run_screen_draws_the_files_while_connecting(tmp_path: Path) -> None:
    folder = trained_session(tmp_path)
    never = asyncio.Event()

    def factory(session_dir: Path, create: dict[str, Any] | None, attach: bool) -> Any:
        async def connect(first: bool) -> Any:
            await never.wait()  # a runner that takes its time to start

        return connect

    app = make_app(tmp_path / "sessions", session_dir=folder, connector_factory=factory)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.3)
        screen = app.screen
        assert isinstance(screen, RunScreen)
        assert not screen.controller.connected
        assert screen.model.global_epoch == 3
        assert len(screen.model.series["test_loss"]) == 3
        assert "connecting" in str(screen.query_one("#topbar").render())
        app.exit()
