"""DDP with 2 CPU ranks (gloo, loopback) on the lesson task: per-epoch time against one
process, and the cost of the per-step command broadcast.

    python benchmarks/bench_dist.py [--epochs 200] [--rounds 3]

Per-epoch time is read from each run's metrics.csv (first to last epoch, divided);
rounds alternate between 1 process and 2 ranks. The broadcast is timed under torchrun:
the same 3-number message rank 0 sends before every optimizer step.
"""

from __future__ import annotations

import argparse
import csv
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
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        for i in range(args.rounds):
            single.append(run(Path(tmp), f"one{i}", args.epochs, 1))
            ddp.append(run(Path(tmp), f"two{i}", args.epochs, 2))
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
    s, d = statistics.median(single), statistics.median(ddp)
    print(f"lesson task, {args.rounds} rounds x {args.epochs} epochs (each rank: half the data)")
    print(f"1 process        median epoch {s * 1e3:.2f} ms  (14 steps of 50)")
    print(f"DDP, 2 ranks     median epoch {d * 1e3:.2f} ms  (7 steps of 50 per rank)")
    print(f"ratio DDP/1 process: {d / s:.2f}")
    print(f"command broadcast (3 float64, gloo, loopback): median {out[-1]} us per step")


if __name__ == "__main__":
    main()
