"""Multi-node runs on torchrun's c10d rendezvous, two "nodes" on loopback, and pauses
that outlast the training group's collective timeout."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lrconsole.client import ConnectionLost, RunnerClient
from tests.conftest import ROOT, lrconsole, metric_rows, write_schedule


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    """Node 0 hosts the rendezvous store, as it does when HOST is its own address."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def node(sessions: Path, rank: int, port: int, plan: Path | None) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "lrconsole", "--sessions-dir", str(sessions), "run", "mn"]
    args += ["--nnodes", "2", "--node-rank", str(rank), "--rdzv-endpoint", f"127.0.0.1:{port}"]
    args += ["--checkpoint-every", "0.05"]
    if plan is not None:
        args += ["--schedule", str(plan)]
    return subprocess.Popen(
        args,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a "node": its launcher, torchrun and (see below) worker
    )


def both(node0: Path, node1: Path, plan: Path | None) -> tuple[subprocess.Popen[str], ...]:
    port = free_port()
    first = node(node0, 0, port, plan)
    wait_listening(port, first)
    return first, node(node1, 1, port, plan)


def rows(folder: Path) -> int:
    try:
        return len((folder / "metrics.csv").read_text().splitlines()) - 1
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_two_nodes_equal_two_local_ranks_and_resume_after_a_node_is_killed(
    tmp_path: Path,
) -> None:
    plan = write_schedule(tmp_path / "plan.yaml", [(8, 0.03), (8, 0.01)])
    args = ["--sessions-dir", str(tmp_path / "local"), "run", "mn", "--schedule", str(plan)]
    local = subprocess.Popen(  # the reference: 2 ranks on one node, meanwhile
        [sys.executable, "-m", "lrconsole", *args, "--nproc", "2"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    node0, node1 = tmp_path / "node0", tmp_path / "node1"  # node 1: its own empty folder
    folder = node0 / "mn"
    lead, other = both(node0, node1, plan)
    deadline = time.monotonic() + 90
    while rows(folder) < 5 and time.monotonic() < deadline and lead.poll() is None:
        time.sleep(0.01)
    # Node 1 dies: its launcher and torchrun by the group kill, its worker with its agent.
    os.killpg(other.pid, signal.SIGKILL)
    other.wait(10)
    _, err = lead.communicate(timeout=60)  # node 0 notices the lost rank and stops
    assert lead.returncode != 0
    assert 0 < rows(folder) < 16, err

    lead, other = both(node0, node1, None)  # node 0 resumes the session it holds
    _, err0 = lead.communicate(timeout=120)
    _, err1 = other.communicate(timeout=60)
    assert (lead.returncode, other.returncode) == (0, 0), err0 + err1
    assert "done: mn at epoch 16" in err0
    _, err = local.communicate(timeout=120)
    assert local.returncode == 0, err
    assert metric_rows(folder) == metric_rows(tmp_path / "local" / "mn")
    assert not node1.exists()  # other nodes write nothing


@pytest.mark.slow
async def test_a_pause_outlasts_the_training_groups_timeout(sessions: Path, tmp_path: Path) -> None:
    plan = write_schedule(tmp_path / "plan.yaml", [(30, 0.03)])
    args = ["--sessions-dir", str(sessions), "run", "p", "--schedule", str(plan), "--nproc", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "lrconsole", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "LRCONSOLE_DIST_TIMEOUT": "3"},  # collectives give up after 3 s
    )
    sock = sessions / "p" / "control.sock"
    deadline = time.monotonic() + 60
    while not sock.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    client = await RunnerClient.connect(sock)
    await client.call("pause")
    await client.wait_for("paused", timeout=20)
    step = (await client.call("status"))["global_step"]
    await asyncio.sleep(6)  # twice the timeout: the other rank waits on the gloo group
    assert (await client.call("status"))["global_step"] == step
    await client.call("resume")
    with pytest.raises(ConnectionLost):
        await client.wait_for("never", timeout=60)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert rows(sessions / "p") == 30


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "h:1"], "must be below"),
        (["--nnodes", "2"], "give --rdzv-endpoint HOST:PORT"),
        (["--nnodes", "2", "--rdzv-endpoint", "nohost"], "expected HOST:PORT"),
        (["--nnodes", "2", "--rdzv-endpoint", "h:99999"], "expected HOST:PORT"),
        (["--rdzv-endpoint", "h:1"], "only with --nnodes 2 or more"),
        (["--nnodes", "2", "--rdzv-endpoint", "h:1", "--detach"], "--detach: not with"),
    ],
)
def test_inconsistent_node_flags_are_one_line_errors(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    plan = write_schedule(tmp_path / "plan.yaml", [(1, 0.03)])
    result = lrconsole(
        "--sessions-dir", str(tmp_path / "s"), "run", "x", "--schedule", str(plan), *flags
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert not (tmp_path / "s").exists()
