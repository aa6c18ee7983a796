from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def lrconsole(
    *args: str, cwd: Path | None = None, timeout: float = 120, **kw: object
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "lrconsole", *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kw,  # type: ignore[call-overload]
    )


def write_schedule(path: Path, segments: list[tuple[int, float]], **top: object) -> Path:
    lines = ["version: 1", "task: lesson", "seed: 0"]
    lines += [f"{k}: {v}" for k, v in top.items()]
    lines.append("segments:")
    lines += [f"  - {{epochs: {e}, lr: {lr}}}" for e, lr in segments]
    path.write_text("\n".join(lines) + "\n")
    return path


def metric_rows(folder: Path) -> list[list[str]]:
    """metrics.csv without the wall-clock column: what must match bit for bit."""
    text = (folder / "metrics.csv").read_text().strip().splitlines()
    return [line.split(",")[:-1] for line in text]


@pytest.fixture
def sessions(tmp_path: Path) -> Path:
    folder = tmp_path / "sessions"
    folder.mkdir()
    return folder
