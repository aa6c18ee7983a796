"""Exact resume: a real `lrconsole run` process, a real SIGKILL, then the same numbers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, lrconsole, metric_rows, write_schedule

EPOCHS = [(60, 0.03), (60, 0.01), (60, 0.005)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[list[str]]]:
    base = tmp_path_factory.mktemp("ref")
    schedule = write_schedule(base / "plan.yaml", EPOCHS)
    done = lrconsole("--sessions-dir", str(base), "run", "whole", "--schedule", str(schedule))
    assert done.returncode == 0, done.stderr
    return schedule, metric_rows(base / "whole")


def start_run(sessions: Path, schedule: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lrconsole",
            "--sessions-dir",
            str(sessions),
            "run",
            "victim",
            "--schedule",
            str(schedule),
            "--checkpoint-every",
            "0.05",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def rows_written(folder: Path) -> int:
    try:
        return len((folder / "metrics.csv").read_text().splitlines()) - 1
    except FileNotFoundError:
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("kill_after_rows", [0, 7, 45, 121, 170])
def test_sigkill_then_resume_matches_an_uninterrupted_run(
    sessions: Path, reference: tuple[Path, list[list[str]]], kill_after_rows: int
) -> None:
    schedule, expected = reference
    folder = sessions / "victim"
    proc = start_run(sessions, schedule)
    deadline = time.monotonic() + 60
    if kill_after_rows == 0:
        while not (folder / "manifest.yaml").exists() and time.monotonic() < deadline:
            time.sleep(0.005)
    else:
        while rows_written(folder) < kill_after_rows and time.monotonic() < deadline:
            time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    resumed = lrconsole("--sessions-dir", str(sessions), "run", "victim")
    assert resumed.returncode == 0, resumed.stderr
    assert metric_rows(folder) == expected


@pytest.mark.slow
def test_ctrl_c_saves_and_exits_130(
    sessions: Path, reference: tuple[Path, list[list[str]]]
) -> None:
    schedule, expected = reference
    folder = sessions / "victim"
    proc = start_run(sessions, schedule)
    deadline = time.monotonic() + 60
    while rows_written(folder) < 30 and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "interrupted: saved at epoch" in err and "Traceback" not in err
    status = lrconsole("--sessions-dir", str(sessions), "sessions")
    assert "victim" in status.stdout and "stopped" in status.stdout
    resumed = lrconsole("--sessions-dir", str(sessions), "run", "victim")
    assert resumed.returncode == 0, resumed.stderr
    assert metric_rows(folder) == expected
