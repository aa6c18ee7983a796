"""Per-segment optimizer settings in a distributed run: rank 0 sends each step's momentum,
weight_decay, clipping and a fresh optimizer with its LR, so every rank steps with the
planned values, the ranks' weights stay identical, and export then replay is bit for bit."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from lrconsole.client import RunnerClient
from tests.conftest import lrconsole, metric_rows
from tests.test_dist import launch
from tests.test_steer import run_script
from tests.test_steering import cli, wait_state

pytestmark = pytest.mark.slow

SPE = 7  # the lesson task's steps per epoch on each of 2 ranks
GATE = 18  # rank 0 holds its 18th optimizer step until the test has paused the run

# The lesson task, recording on each rank what every optimizer step uses (a global
# optimizer hook sees the optimizer lrconsole builds, and a fresh one). Rank 0 waits at
# its GATE-th step for the test, so the pause lands at a known step.
TASK = """
import json, os, time
from pathlib import Path

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from lrconsole.core.tasks.lesson import make_lesson_task


def make():
    logs, rank = os.environ.get("SETTINGS_LOG"), os.environ.get("RANK")
    if logs and rank is not None:
        folder = Path(logs)
        out = (folder / f"steps{rank}.jsonl").open("a", buffering=1)
        count = [0]

        def record(opt, args, kwargs):
            count[0] += 1
            names = ("lr", "momentum", "weight_decay")
            groups = [{k: g[k] for k in names} for g in opt.param_groups]
            grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
            norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
            row = {"groups": groups, "norm": float(norm), "fresh": not opt.state}
            out.write(json.dumps(row) + "\\n")
            if rank == "0" and count[0] == int(os.environ["SETTINGS_GATE"]):
                (folder / "gate").touch()
                while not (folder / "go").exists():
                    time.sleep(0.01)

        register_optimizer_step_pre_hook(record)
    return make_lesson_task()
"""

PLAN = """version: 1
task: {task}:make
seed: 0
optimizer: {{name: sgd, momentum: 0.5}}
segments:
  - {{epochs: 2, lr: 0.03}}
  - {{epochs: 2, lr: 0.02, momentum: 0.9, weight_decay: 0.001}}
  - {{epochs: 2, lr: 0.02, clip_grad_norm: 0.05}}
  - {{epochs: 2, lr: 0.01, weight_decay: 0, clip_grad_norm: null, fresh_optimizer: true}}
"""


def planned(set_at: int) -> list[tuple[float, float, float, float | None, bool]]:
    """(lr, momentum, weight_decay, clip, fresh) of each of the 56 steps, with
    `momentum=0.7 clip_grad_norm=0.1` set now before step `set_at` (in segment 2)."""
    rows: list[tuple[float, float, float, float | None, bool]] = []
    for step in range(8 * SPE):
        now = step >= set_at
        if step < 2 * SPE:
            row = (0.03, 0.5, 0.0, None, step == 0)
        elif step < 4 * SPE:
            row = (0.02, 0.7 if now else 0.9, 0.001, 0.1 if now else None, False)
        elif step < 6 * SPE:
            row = (0.02, 0.7, 0.001, 0.05, False)
        else:  # the fresh optimizer gets the momentum in force, not the `optimizer:` one
            row = (0.01, 0.7, 0.0, None, step == 6 * SPE)
        rows.append(row)
    return rows


def steps(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def pause_at_the_gate(
    folder: Path, logs: Path, proc: subprocess.Popen[str]
) -> tuple[RunnerClient, int]:
    """Connect while rank 0 waits at the gate, pause, release it: the paused step."""
    deadline = time.monotonic() + 90
    while not (logs / "gate").exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "rank 0 never reached the gate"
        await asyncio.sleep(0.02)
    client = await RunnerClient.connect(folder / "control.sock")
    await client.call("pause")
    (logs / "go").touch()
    state = await wait_state(client, lambda s: s["reason"] == "operator", timeout=60)
    return client, int(state["global_step"])


async def test_settings_change_on_every_rank_at_the_planned_steps(
    sessions: Path, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    task = tmp_path / "settings_task.py"
    task.write_text(TASK)
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN.format(task=task))
    folder = sessions / "ds"
    env = {"SETTINGS_LOG": str(logs), "SETTINGS_GATE": str(GATE)}
    proc = launch(sessions, "ds", plan, LRCONSOLE_DIST_DUMP=str(tmp_path), **env)
    try:
        client, paused = await pause_at_the_gate(folder, logs, proc)
        assert paused == GATE and paused % SPE  # inside an epoch of segment 2
        line = cli(folder, "set", "momentum=0.7", "clip_grad_norm=0.1")
        assert "from the next step" in line
        event = await client.wait_for("settings_set", timeout=30)
        assert event.data["settings"] == {"momentum": 0.7, "clip_grad_norm": 0.1}
        set_at = int(event.data["step"])
        assert set_at == paused
        cli(folder, "resume")
        await client.close()
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == 0, err

    # (a) Every rank stepped with the planned values, the same to the bit.
    ranks = [steps(logs / f"steps{r}.jsonl") for r in (0, 1)]
    assert ranks[0] == ranks[1]
    want = planned(set_at)
    assert len(ranks[0]) == len(want)
    for step, (row, (lr, momentum, decay, clip, fresh)) in enumerate(
        zip(ranks[0], want, strict=True)
    ):
        assert row["groups"] == [{"lr": lr, "momentum": momentum, "weight_decay": decay}], step
        assert row["fresh"] == fresh, step
        if clip is not None:  # clipped: the norm the step used is the max norm
            assert row["norm"] == pytest.approx(clip, rel=1e-4), step
    unclipped = [r["norm"] for r, w in zip(ranks[0], want, strict=True) if w[3] is None]
    assert max(unclipped) > 1.0  # so the clipped steps were really clipped

    # (b) The ranks' weights stayed identical.
    weights = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])

    # (c) Export then replay, distributed too: the same metrics, bit for bit.
    out = tmp_path / "path.yaml"
    assert lrconsole("export", str(folder), "-o", str(out)).returncode == 0
    exported = yaml.safe_load(out.read_text())["segments"]
    assert exported[1] == {
        "steps": set_at - 2 * SPE,
        "lr": 0.02,
        "momentum": 0.9,
        "weight_decay": 0.001,
    }
    assert exported[2] == {
        "steps": 4 * SPE - set_at,
        "lr": 0.02,
        "momentum": 0.7,
        "clip_grad_norm": 0.1,
    }
    replay = lrconsole(
        "--sessions-dir", str(tmp_path), "run", "replay", "--schedule", str(out), "--nproc", "2",
        timeout=180,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    assert len(metric_rows(folder)) == 1 + 8
    assert metric_rows(tmp_path / "replay") == metric_rows(folder)


# Your own loop under torchrun: Steer writes the settings into your optimizer on every
# rank, and `steer.clip` is the step's max norm on every rank (clipping is your loop's).
STEER_SCRIPT = """
import json, sys, torch, torch.distributed as dist
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
x, y = torch.randn(40, 4, generator=g), 10 * torch.randn(40, 1, generator=g)
S = lrconsole.Segment
schedule = lrconsole.Schedule([
    S(0.05, epochs=1),
    S(0.05, epochs=1, momentum=0.3, weight_decay=0.01, clip_grad_norm=0.2),
    S.from_dict({"epochs": 1, "lr": 0.02, "weight_decay": 0.0, "clip_grad_norm": None}),
])
steer = lrconsole.Steer(opt, sys.argv[1], model=model, steps_per_epoch=4, schedule=schedule)
seen = []
for epoch in steer.epochs():
    for i in range(4):
        loss = nn.functional.mse_loss(ddp(x[i::4]), y[i::4])
        opt.zero_grad(); loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), steer.clip or float("inf"))
        group = opt.param_groups[0]
        row = [group["lr"], group["momentum"], group["weight_decay"], steer.clip]
        seen.append(row + [float(norm)])
        opt.step()
        steer.step(loss)
    steer.epoch_end({"train_loss": float(loss)})
torch.save(dict(model.named_parameters()), f"{sys.argv[2]}/rank{rank}.pt")
with open(f"{sys.argv[2]}/seen{rank}.json", "w") as f:
    json.dump(seen, f)
dist.destroy_process_group()
"""


def test_steer_under_torchrun_follows_the_settings_on_every_rank(tmp_path: Path) -> None:
    script = tmp_path / "steer_loop.py"
    script.write_text(STEER_SCRIPT)
    args = ("-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script))
    done = run_script(*args, str(tmp_path / "own"), str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    seen = [json.loads((tmp_path / f"seen{r}.json").read_text()) for r in (0, 1)]
    assert seen[0] == seen[1]
    planned = [[0.05, 0.9, 0, None]] * 4 + [[0.05, 0.3, 0.01, 0.2]] * 4
    planned += [[0.02, 0.3, 0.0, None]] * 4
    assert [row[:4] for row in seen[0]] == planned
    assert min(row[4] for row in seen[0][4:8]) > 0.2  # the norms clipping cut down
    weights = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
