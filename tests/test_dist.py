"""Distributed runs: 2 CPU ranks (gloo) over loopback under torchrun."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lrconsole.client import CommandFailed, ConnectionLost, RunnerClient
from tests.conftest import ROOT, lrconsole, metric_rows, write_schedule

pytestmark = pytest.mark.slow


def launch(sessions: Path, name: str, plan: Path | None, **env: str) -> subprocess.Popen[str]:
    args = [
        sys.executable,
        "-m",
        "lrconsole",
        "--sessions-dir",
        str(sessions),
        "run",
        name,
        "--nproc",
        "2",
        "--checkpoint-every",
        "0.05",
    ]
    if plan is not None:
        args += ["--schedule", str(plan)]
    return subprocess.Popen(
        args,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, **env},
    )


def rows(folder: Path) -> int:
    try:
        return len((folder / "metrics.csv").read_text().splitlines()) - 1
    except FileNotFoundError:
        return 0


def test_a_killed_ddp_run_resumes_to_the_same_numbers(sessions: Path, tmp_path: Path) -> None:
    plan = write_schedule(tmp_path / "plan.yaml", [(40, 0.03), (40, 0.01)])
    whole = lrconsole(
        "--sessions-dir",
        str(tmp_path),
        "run",
        "whole",
        "--schedule",
        str(plan),
        "--nproc",
        "2",
        timeout=180,
    )
    assert whole.returncode == 0, whole.stderr
    assert "7 steps per epoch" in lrconsole("show", str(tmp_path / "whole")).stdout

    folder = sessions / "victim"
    proc = launch(sessions, "victim", plan)
    deadline = time.monotonic() + 90
    while rows(folder) < 50 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert 0 < rows(folder) < 80
    again = lrconsole("--sessions-dir", str(sessions), "run", "victim", "--nproc", "2", timeout=180)
    assert again.returncode == 0, again.stderr
    assert metric_rows(folder) == metric_rows(tmp_path / "whole")


async def test_ranks_stay_identical_after_an_lr_change_mid_segment(
    sessions: Path, tmp_path: Path
) -> None:
    plan = write_schedule(tmp_path / "long.yaml", [(100000, 0.03)])
    proc = launch(sessions, "ddp", plan, LRCONSOLE_DIST_DUMP=str(tmp_path))
    sock = sessions / "ddp" / "control.sock"
    deadline = time.monotonic() + 60
    while not sock.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    client = await RunnerClient.connect(sock)
    await client.wait_for("epoch", timeout=30)
    await asyncio.sleep(0.013)  # land somewhere inside an epoch
    changed = await client.call("set_lr", lr=0.004)
    event = await client.wait_for("lr_set", timeout=10)
    assert event.data["global_step"] == changed["global_step"]
    start = time.monotonic()
    await client.call("pause")
    await client.wait_for("paused", timeout=10)
    latency = time.monotonic() - start
    step = (await client.call("status"))["global_step"]
    await asyncio.sleep(0.3)
    assert (await client.call("status"))["global_step"] == step  # every rank waits
    # A live rollback or LR range test would move rank 0's weights alone: refused.
    for cmd, args in (("rollback", {"epoch": 1}), ("lr_find", {})):
        with pytest.raises(CommandFailed, match="not possible while a distributed run trains"):
            await client.call(cmd, **args)
    await client.call("resume")
    for _ in range(3):
        await client.wait_for("epoch", timeout=10)
    await client.call("shutdown")
    with pytest.raises(ConnectionLost):
        await client.wait_for("never", timeout=30)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys()
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])
    assert latency < 5
