"""The hook for a user's own loop: unattended, exact resume, and steered over the socket."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lrconsole.client import ConnectionLost, RunnerClient
from tests.conftest import EXAMPLES, ROOT, lrconsole, metric_rows

pytestmark = pytest.mark.slow
OWN_LOOP = str(EXAMPLES / "own_loop.py")


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_own_loop_runs_unattended_and_writes_a_session(tmp_path: Path) -> None:
    folder = tmp_path / "own"
    done = run_script(OWN_LOOP, str(folder))
    assert done.returncode == 0, done.stderr
    assert "Task was destroyed" not in done.stderr  # the control socket's loop closed clean
    rows = metric_rows(folder)
    assert rows[0][:4] == ["global_epoch", "global_step", "segment", "lr"]
    assert len(rows) == 1 + 16
    assert {r[3] for r in rows[1:9]} == {"0.003"} and {r[3] for r in rows[9:]} == {"0.001"}
    exported = lrconsole("export", str(folder))
    assert exported.returncode == 0 and "own-loop:own_loop.py" in exported.stdout
    assert "name: adamw" in exported.stdout
    assert (folder / "tb").is_dir()
    again = run_script(OWN_LOOP, str(folder))  # the plan is done: nothing more to train
    assert again.returncode == 0 and metric_rows(folder) == rows


def test_own_loop_resumes_exactly_after_sigkill(tmp_path: Path) -> None:
    reference = tmp_path / "ref"
    assert run_script(OWN_LOOP, str(reference)).returncode == 0
    folder = tmp_path / "victim"
    proc = subprocess.Popen(
        [sys.executable, OWN_LOOP, str(folder)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("epoch 11 "):
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    resumed = run_script(OWN_LOOP, str(folder))
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.startswith("epoch 9 ")  # the last checkpoint: segment 0's end
    assert metric_rows(folder) == metric_rows(reference)


def test_ctrl_c_finishes_the_epoch_saves_and_the_rerun_matches(tmp_path: Path) -> None:
    reference = tmp_path / "ref"
    assert run_script(OWN_LOOP, str(reference)).returncode == 0
    folder = tmp_path / "interrupted"
    proc = subprocess.Popen(
        [sys.executable, OWN_LOOP, str(folder)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    for line in proc.stdout:
        if line.startswith("epoch 3 "):
            break
    proc.send_signal(signal.SIGINT)  # mid-epoch 4, or between epochs
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    saved = int(err.split("interrupted: saved at epoch ")[1].split(";")[0])
    assert 3 <= saved <= 5
    assert len(metric_rows(folder)) == 1 + saved  # the epoch in progress was finished
    resumed = run_script(OWN_LOOP, str(folder))
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.startswith(f"epoch {saved + 1} ")  # nothing redone, nothing lost
    assert metric_rows(folder) == metric_rows(reference)


STEERED = """
import sys, torch
from torch import nn
import lrconsole
torch.manual_seed(0)
model = nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(64, 4), torch.randn(64, 1)
steer = lrconsole.Steer(opt, sys.argv[1], model=model, steps_per_epoch=8,
                        schedule=lrconsole.Schedule([lrconsole.Segment(0.01, epochs=100000)]))
for epoch in steer.epochs():
    for i in range(8):
        loss = nn.functional.mse_loss(model(x[i::8]), y[i::8])
        opt.zero_grad(); loss.backward(); opt.step()
        steer.step(loss)
    steer.epoch_end({"train_loss": float(loss)})
print("finished at epoch", steer.engine.global_epoch, "lr", opt.param_groups[0]["lr"])
"""


async def test_a_console_steers_the_users_loop_like_any_runner(tmp_path: Path) -> None:
    script = tmp_path / "steered.py"
    script.write_text(STEERED)
    folder = tmp_path / "steered"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(folder)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sock = folder / "control.sock"
    deadline = time.monotonic() + 30
    while not sock.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    client = await RunnerClient.connect(sock)
    assert client.snapshot["session"]["task"] == "own-loop:steered.py"
    await client.wait_for("epoch", timeout=10)
    result = await client.call("set_lr", lr=0.002)
    await client.call("pause")
    paused = await client.wait_for("paused", timeout=10)
    assert paused.data["reason"] == "operator"
    step = (await client.call("status"))["global_step"]
    await asyncio.sleep(0.3)
    assert (await client.call("status"))["global_step"] == step  # the user's loop waits
    await client.call("resume")

    async def lr_after() -> float:
        while True:
            event = await client.next_event()
            if event.name == "batch" and event.data["global_step"] > result["global_step"]:
                return float(event.data["lr"])

    assert await asyncio.wait_for(lr_after(), 10) == 0.002
    await client.call("shutdown")
    with pytest.raises(ConnectionLost):
        await client.wait_for("never", timeout=15)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "finished at epoch" in out and "lr 0.002" in out


DDP_SCRIPT = """
import os, sys, torch, torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
import lrconsole
dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
ddp = DistributedDataParallel(model)
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
g = torch.Generator().manual_seed(rank)
x, y = torch.randn(80, 4, generator=g), torch.randn(80, 1, generator=g)
S = lrconsole.Segment
schedule = lrconsole.Schedule([S(0.05, epochs=3), S(0.01, epochs=2)])
steer = lrconsole.Steer(opt, sys.argv[1], model=model, steps_per_epoch=10, schedule=schedule,
                        metrics=["train_loss"])
for epoch in steer.epochs():
    for i in range(10):
        loss = nn.functional.mse_loss(ddp(x[i::10]), y[i::10])
        opt.zero_grad(); loss.backward(); opt.step()
        steer.step(loss)
    steer.epoch_end({"train_loss": float(loss)})
torch.save(dict(model.named_parameters()), os.path.join(sys.argv[2], f"rank{rank}.pt"))
print("rank", rank, "lr", opt.param_groups[0]["lr"])
dist.destroy_process_group()
"""


def test_the_hook_under_torchrun_keeps_ranks_in_step(tmp_path: Path) -> None:
    import torch

    script = tmp_path / "ddp_loop.py"
    script.write_text(DDP_SCRIPT)
    folder = tmp_path / "ddp"
    done = run_script(
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        str(script),
        str(folder),
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = metric_rows(folder)
    assert len(rows) == 1 + 5
    assert [r[3] for r in rows[1:]] == ["0.05"] * 3 + ["0.01"] * 2
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])
