"""Headless runs from the CLI: a foreground run serves the control socket, and a failed
background start leaves no half session behind."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from lrconsole.core.session.manifest import Manifest
from lrconsole.runner.launch import runner_alive
from tests.conftest import lrconsole, write_schedule


def test_status_attach_and_stop_reach_a_foreground_run(tmp_path: Path) -> None:
    plan = write_schedule(tmp_path / "long.yaml", [(5000, 0.01)])
    folder = tmp_path / "sessions" / "fg"
    run = subprocess.Popen(
        [sys.executable, "-m", "lrconsole", "run", "fg", "--schedule", str(plan)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not runner_alive(folder) and time.monotonic() < deadline:
            assert run.poll() is None, run.communicate()
            time.sleep(0.1)
        assert runner_alive(folder)

        status = lrconsole("status", "fg", cwd=tmp_path)
        assert status.returncode == 0 and "fg: running" in status.stdout, status

        attach = subprocess.Popen(
            [sys.executable, "-m", "lrconsole", "attach", "fg", "--lines"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert attach.stdout is not None
        seen = [attach.stdout.readline() for _ in range(3)]
        assert any(line.startswith("epoch ") for line in seen), seen
    finally:
        stop = lrconsole("stop", "fg", cwd=tmp_path)
        out, err = run.communicate(timeout=60)
    assert stop.returncode == 0, stop
    attach.wait(timeout=30)  # the follower ends with the run, it does not hang
    assert run.returncode == 0, err
    assert "stopped by `lrconsole stop`: saved at epoch" in err
    saved = Manifest.read(folder).global_epoch
    assert 0 < saved < 5000
    assert not (folder / "control.sock").exists()  # the socket goes with the run


def test_a_failed_detached_start_leaves_no_half_session(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("version: 1\ntask: nosuchmodule:make\nsegments:\n  - {epochs: 1, lr: 0.01}\n")
    out = lrconsole("run", "half", "--schedule", str(plan), "--detach", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "nosuchmodule" in out.stderr, out.stderr
    assert not (tmp_path / "sessions" / "half").exists()
    # The name is free: a good schedule creates the session under it.
    good = write_schedule(tmp_path / "good.yaml", [(1, 0.01)])
    assert lrconsole("run", "half", "--schedule", str(good), cwd=tmp_path).returncode == 0
    assert Manifest.read(tmp_path / "sessions" / "half").global_epoch == 1
