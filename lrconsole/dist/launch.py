"""`lrconsole run SESSION --nproc N [--nnodes N --node-rank K --rdzv-endpoint HOST:PORT]`:
start this node's workers under torchrun (`--standalone` on one node, else the c10d
rendezvous at node 0's HOST:PORT)."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.session.layout import RUNNER_SCHEDULE
from lrconsole.errors import UserError


@dataclass(frozen=True)
class Nodes:
    """Where this node stands in a multi-node run."""

    count: int
    rank: int
    endpoint: str  # HOST:PORT of the rendezvous, on node 0


def check_nodes(nnodes: int, node_rank: int, endpoint: str | None, detach: bool) -> Nodes | None:
    """The multi-node flags, checked together; None: one node."""
    if nnodes == 1:
        if endpoint is not None or node_rank != 0:
            flag = "--rdzv-endpoint" if endpoint is not None else "--node-rank"
            raise UserError(f"{flag}: only with --nnodes 2 or more")
        return None
    if node_rank >= nnodes:
        raise UserError(f"--node-rank: must be below --nnodes ({nnodes}), got {node_rank}")
    if endpoint is None:
        raise UserError(f"--nnodes {nnodes}: give --rdzv-endpoint HOST:PORT (node 0's address)")
    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or " " in host:
        raise UserError(
            f"--rdzv-endpoint: expected HOST:PORT with a port 1-65535, got {endpoint!r}"
        )
    if detach:
        raise UserError("--detach: not with --nnodes; start each node in its own terminal")
    return Nodes(nnodes, node_rank, endpoint)


def rendezvous_id(folder: Path) -> str:
    """The same on every node: derived from the session's name."""
    return "lrconsole-" + re.sub(r"[^A-Za-z0-9_.-]", "_", folder.name)


def torchrun_command(
    folder: Path, nproc: int, schedule: Path | None, every: float, nodes: Nodes | None = None
) -> list[str]:
    command = [sys.executable, "-m", "torch.distributed.run"]
    if nodes is None:
        command.append("--standalone")
    else:
        command += [
            f"--nnodes={nodes.count}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={nodes.endpoint}",
            f"--rdzv-id={rendezvous_id(folder)}",
        ]
    command += [
        f"--nproc-per-node={nproc}",
        "-m",
        "lrconsole.dist.worker",
        str(folder),
        "--checkpoint-every",
        str(every),
    ]
    if nodes is not None:  # the workers order the ranks by it: rank 0 is on node 0
        command += ["--node-rank", str(nodes.rank)]
    if schedule is not None:
        command += ["--schedule", str(schedule)]
    return command


def run_distributed(
    folder: Path, schedule: Schedule | None, nproc: int, every: float, nodes: Nodes | None = None
) -> int:
    least = 1 if nodes is not None else 2
    if nproc < least or nproc > 64:
        raise UserError(f"--nproc: must be from {least} to 64, got {nproc}")
    plan = None
    if nodes is not None and nodes.rank > 0:
        schedule = None  # node 0 owns the session and sends the plan; nothing is written here
    if schedule is not None:  # rank 0 reads it, overrides included
        folder.mkdir(parents=True, exist_ok=True)
        plan = folder / RUNNER_SCHEDULE
        schedule.dump(plan)
    try:
        return subprocess.call(torchrun_command(folder, nproc, plan, every, nodes))
    except KeyboardInterrupt:
        return 130
