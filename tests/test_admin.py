"""Deleting and renaming sessions (core/session/admin.py, `lrconsole delete` / `rename`):
refused while a real runner holds the session, one line and exit code 2 for bad input."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lrconsole.core.session.admin import (
    check_name,
    delete_session,
    last_activity,
    rename_session,
)
from lrconsole.errors import SessionBusy, UserError
from lrconsole.runner.launch import ensure_runner, runner_alive
from tests.conftest import ROOT, lrconsole, write_schedule


def trained(sessions: Path, name: str, tmp_path: Path) -> Path:
    """A real session: one epoch of the lesson task, run headless."""
    schedule = write_schedule(tmp_path / f"{name}.yaml", [(1, 0.03)])
    done = lrconsole(
        "--sessions-dir", str(sessions), "run", name, "--schedule", str(schedule),
        "--no-tensorboard",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return sessions / name


def cli(sessions: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # No terminal on standard input: `delete` without --yes must refuse, not ask.
    return lrconsole("--sessions-dir", str(sessions), *args, stdin=subprocess.DEVNULL)


def test_names_are_checked() -> None:
    assert check_name("lesson-2") is None and check_name("run_3.b+x") is None
    for bad in ("", "../x", "a/b", ".hidden", "-opt", "a b", "x" * 65):
        assert check_name(bad), bad


def test_a_new_session_is_named_as_rename_requires(sessions: Path, tmp_path: Path) -> None:
    """`run NAME` and `new NAME` create sessions: a name `attach HOST:SESSION` would take
    for a host (a ':'), or one a shell would split, is refused before anything is made."""
    schedule = tmp_path / "plan.yaml"
    schedule.write_text("version: 1\ntask: lesson\nsegments:\n  - {epochs: 1, lr: 0.03}\n")
    for args in (("run", "gpu:far", "--schedule", str(schedule)), ("new", "a b")):
        done = cli(sessions, *args)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert "not a valid session name" in done.stderr
    assert not sessions.exists() or not any(sessions.iterdir())


@pytest.mark.slow
def test_rename_then_delete_from_the_cli(sessions: Path, tmp_path: Path) -> None:
    folder = trained(sessions, "first", tmp_path)
    trained(sessions, "taken", tmp_path)

    done = cli(sessions, "rename", "first", "taken")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "taken" in done.stderr and "already exists" in done.stderr
    done = cli(sessions, "rename", "first", "../escape")
    assert done.returncode == 2 and "not a valid session name" in done.stderr
    assert folder.is_dir() and not (sessions.parent / "escape").exists()

    done = cli(sessions, "rename", "first", "second")
    assert done.returncode == 0, done.stderr
    assert not folder.exists() and (sessions / "second" / "manifest.yaml").is_file()
    shown = cli(sessions, "show", "second")  # the renamed session works as before
    assert shown.returncode == 0, shown.stderr

    done = cli(sessions, "delete", "second")  # no terminal, no --yes: refused
    assert done.returncode == 2 and "--yes" in done.stderr and "'second'" in done.stderr
    assert (sessions / "second").is_dir()
    done = cli(sessions, "delete", "second", "--yes")
    assert done.returncode == 0, done.stderr
    assert "deleted session 'second'" in done.stdout
    assert sorted(p.name for p in sessions.iterdir()) == ["taken"]  # no trash left


@pytest.mark.slow
def test_refused_while_a_runner_holds_the_session(sessions: Path) -> None:
    folder = sessions / "held"
    ensure_runner(folder, create={"task": "lesson", "seed": 0})
    try:
        for args in (("delete", "held", "--yes"), ("rename", "held", "other")):
            done = cli(sessions, *args)
            assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
            assert "a runner holds it (PID" in done.stderr and "lrconsole stop held" in done.stderr
        with pytest.raises(SessionBusy):
            delete_session(folder)
        assert (folder / "manifest.yaml").is_file() and not (sessions / "other").exists()
        assert runner_alive(folder, timeout=15)  # untouched: it still answers
    finally:
        stop = cli(sessions, "stop", "held")
        assert stop.returncode == 0, stop.stderr
    deadline = time.monotonic() + 30
    while True:  # the lock goes with the process
        try:
            delete_session(folder)
            break
        except SessionBusy:
            assert time.monotonic() < deadline, "the runner kept the lock"
            time.sleep(0.1)
    assert not folder.exists()


def test_refuses_what_is_not_a_session(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not a session"):
        delete_session(plain)
    with pytest.raises(UserError, match="not a session"):
        rename_session(plain, "other")
    assert (plain / "keep.txt").read_text() == "mine"


def test_last_activity_is_the_newest_file(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    (folder / "checkpoints").mkdir(parents=True)
    stamp = "2026-01-01T00:00:00+00:00"
    assert last_activity(folder, stamp) == 1767225600.0  # no files yet: the manifest's word
    metrics = folder / "metrics.csv"
    metrics.write_text("global_epoch\n1\n")
    os.utime(metrics, (1767225700.0, 1767225700.0))
    assert last_activity(folder, stamp) == 1767225700.0
    checkpoint = folder / "checkpoints" / "step-000000014.pt"
    checkpoint.write_bytes(b"")
    os.utime(checkpoint, (1767229999.0, 1767229999.0))
    assert last_activity(folder, stamp) == 1767229999.0
    assert last_activity(folder, "not a date") == 1767229999.0


def test_delete_asks_on_a_terminal(sessions: Path) -> None:
    """With a terminal and no --yes: the question names the session; only y deletes."""
    import pty

    folder = sessions / "asked"
    folder.mkdir()
    (folder / "manifest.yaml").write_text("version: 1\n")  # enough to be a session folder
    for answer, code in ((b"n\n", 1), (b"y\n", 0)):
        main, child = pty.openpty()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "lrconsole", "--sessions-dir", str(sessions),
                 "delete", "asked"],
                stdin=child, stdout=child, stderr=child, cwd=ROOT,
            )  # fmt: skip
            os.write(main, answer)
            assert process.wait(timeout=60) == code
            os.close(child)
            child = -1
            said = b""
            with contextlib.suppress(OSError):  # EIO once the child side is gone
                while chunk := os.read(main, 4096):
                    said += chunk
        finally:
            os.close(main)
            if child != -1:
                os.close(child)
        assert b"delete session 'asked'" in said and b"[y/N]" in said
        assert folder.exists() == (code == 1)
