"""Fixtures for the console tests: fixed session folders and a real runner."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def write_fixed_session(
    sessions: Path,
    name: str,
    *,
    epochs: int,
    segments: list[tuple[int, float]],
    best: float | None,
    state: str = "paused",
) -> Path:
    """A session folder with a hand-written manifest: same screen on every machine."""
    from lrconsole.core.plan.segment import OptimizerSpec, Segment, TaskSpec
    from lrconsole.core.session.manifest import Manifest

    folder = sessions / name
    folder.mkdir(parents=True)
    fixed = "2026-01-01T00:00:00+00:00"
    manifest = Manifest(
        name=name,
        task=TaskSpec("lesson"),
        seed=0,
        optimizer=OptimizerSpec(),
        steps_per_epoch=14,
        metrics=["train_mse", "test_mse"],
        monitor="test_mse",
        segments=[Segment(lr, epochs=e) for e, lr in segments],
        global_epoch=epochs,
        global_step=epochs * 14,
        state=state,
        best=None if best is None else {"metric": "test_mse", "value": best, "epoch": epochs},
        created=fixed,
        updated=fixed,
    )
    manifest.write(folder)
    # write() stamps `updated` with the clock; the home screen sorts by it: keep it fixed.
    path = folder / "manifest.yaml"
    path.write_text(
        path.read_text().replace(f"updated: '{manifest.updated}'", f"updated: '{fixed}'")
    )
    return folder


@pytest.fixture
def fixed_sessions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """./sessions with three stopped sessions; the working folder is tmp_path."""
    monkeypatch.chdir(tmp_path)
    sessions = tmp_path / "sessions"
    sessions.mkdir()
    write_fixed_session(
        sessions, "lesson-a", epochs=90, segments=[(30, 0.03), (30, 0.01), (30, 0.005)], best=0.0123
    )
    write_fixed_session(sessions, "lesson-b", epochs=60, segments=[(60, 0.03)], best=0.0456)
    write_fixed_session(sessions, "warmup-try", epochs=0, segments=[], best=None)
    return Path("sessions")
