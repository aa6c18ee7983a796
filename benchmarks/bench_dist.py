"""DDP with 2 CPU ranks (gloo, loopback) on the lesson task: per-epoch time against one
process, as 2 ranks on one node and as 2 "nodes" x 1 rank (two launches, one c10d
rendezvous on 127.0.0.1), and the cost of the per-step command broadcast.

    python benchmarks/bench_dist.py [--epochs 200] [--rounds 3]

Per-epoch time is read from each run's metrics.csv (first to last epoch, divided);
rounds alternate between 1 process, 2 ranks and 2 nodes. The broadcast is timed under torchrun:
the same 3-number message rank 0 sends before every optimizer step.
"""

from __future__ import annotations

import argparse
import csv
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def epoch_seconds(folder: Path) -> float:
    with open(folder / "metrics.csv", newline="") as handle:
        times = [float(row["time"]) for row in csv.DictReader(handle)]
    return (times[-1] - times[0]) / (len(times) - 1)


def run(tmp: Path, name: str, epochs: int, nproc: int) -> float:
    plan = tmp / "plan.yaml"
    plan.write_text(f"task: lesson\nsegments:\n  - {{epochs: {epochs}, lr: 0.03}}\n")
    args = [
        sys.executable,
        "-m",
        "lrconsole",
        "--sessions-dir",
        str(tmp),
        "run",
        name,
        "--schedule",
        str(plan),
    ]
    if nproc > 1:
        args += ["--nproc", str(nproc)]
    subprocess.run(args, check=True, capture_output=True)
    return epoch_seconds(tmp / name)


def run_two_nodes(tmp: Path, name: str, epochs: int) -> float:
    plan = tmp / "plan.yaml"
    plan.write_text(f"task: lesson\nsegments:\n  - {{epochs: {epochs}, lr: 0.03}}\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in (0, 1):  # node 1 gets a folder of its own, as on another machine
        args = [sys.executable, "-m", "lrconsole", "--sessions-dir", str(tmp / f"node{rank}")]
        args += ["run", name, "--nnodes", "2", "--node-rank", str(rank)]
        args += ["--rdzv-endpoint", f"127.0.0.1:{port}", "--schedule", str(plan)]
        procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        if rank == 0:  # node 0 hosts the rendezvous store, as when HOST is its address
            wait_listening(port)
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode:
            raise SystemExit(err.decode()[-2000:])
    return epoch_seconds(tmp / "node0" / name)


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port}")


def broadcast_worker() -> None:
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    message = torch.zeros(3, dtype=torch.float64)
    per_op = []
    for _ in range(7):
        dist.barrier()
        start = time.perf_counter()
        for step in range(500):
            message[1] = step
            dist.broadcast(message, src=0)
        per_op.append((time.perf_counter() - start) / 500)
    if dist.get_rank() == 0:
        print(f"{statistics.median(per_op) * 1e6:.1f}")
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--broadcast-worker", action="store_true")
    args = parser.parse_args()
    if args.broadcast_worker:
        broadcast_worker()
        return
    single: list[float] = []
    ddp: list[float] = []
    nodes: list[float] = []
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        for i in range(args.rounds):
            single.append(run(Path(tmp), f"one{i}", args.epochs, 1))
            ddp.append(run(Path(tmp), f"two{i}", args.epochs, 2))
            nodes.append(run_two_nodes(Path(tmp), f"nodes{i}", args.epochs))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node=2",
            __file__,
            "--broadcast-worker",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    s, d, n = statistics.median(single), statistics.median(ddp), statistics.median(nodes)
    print(f"lesson task, {args.rounds} rounds x {args.epochs} epochs (each rank: half the data)")
    print(f"1 process        median epoch {s * 1e3:.2f} ms  (14 steps of 50)")
    print(f"DDP, 2 ranks     median epoch {d * 1e3:.2f} ms  (7 steps of 50 per rank)")
    print(f"2 nodes x 1 rank median epoch {n * 1e3:.2f} ms  (c10d rendezvous, loopback)")
    print(f"ratio DDP/1 process: {d / s:.2f}")
    print(f"ratio 2 nodes/1 process: {n / s:.2f}   2 nodes/2 local ranks: {n / d:.2f}")
    print(f"command broadcast (3 float64, gloo, loopback): median {out[-1]} us per step")


if __name__ == "__main__":
    main()
