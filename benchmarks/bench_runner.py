"""The lesson task in a runner with one client consuming every event, against the headless
engine in one process; then pause latency (command sent to `paused` event received).

    python benchmarks/bench_runner.py [--epochs 300] [--rounds 5] [--pauses 30]

Rounds alternate between the two sides. Prints medians and the ratio (target <= 1.05),
and the median pause latency (target <= 50 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path

from lrconsole.client import RunnerClient
from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.plan.segment import Segment
from lrconsole.core.train import events as ev
from lrconsole.core.train.trainer import Trainer
from lrconsole.runner.launch import ensure_runner


def headless_epoch_times(folder: Path, epochs: int) -> list[float]:
    trainer = Trainer.open(folder, schedule=Schedule([Segment(0.01, epochs=epochs)]))
    stamps: list[float] = []
    trainer.engine.on(ev.EpochEnd, lambda e: stamps.append(e.time))
    trainer.engine.run()
    trainer.close()
    return [b - a for a, b in zip(stamps, stamps[1:], strict=False)]


async def runner_epoch_times(folder: Path, epochs: int) -> tuple[list[float], int]:
    client = await RunnerClient.connect(ensure_runner(folder, create={"task": "lesson"}))
    await client.call("queue", segments=[{"epochs": epochs, "lr": 0.01}])
    stamps: list[float] = []
    seen = 0
    async for event in client.events():  # consume every event, as a console does
        seen += 1
        if event.name == "epoch":
            stamps.append(event.data["time"])
            if event.data["global_epoch"] >= epochs:
                break
    await stop(client)
    return [b - a for a, b in zip(stamps, stamps[1:], strict=False)], seen


async def stop(client: RunnerClient) -> None:
    pid = client.snapshot["runner"]["pid"]
    await client.call("shutdown")
    await client.close()
    for _ in range(200):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        await asyncio.sleep(0.02)
    os.kill(pid, signal.SIGKILL)


async def pause_latencies(folder: Path, count: int) -> list[float]:
    client = await RunnerClient.connect(ensure_runner(folder, create={"task": "lesson"}))
    await client.call("queue", segments=[{"epochs": 100_000, "lr": 0.01}])
    await client.wait_for("epoch")
    out = []
    for _ in range(count):
        await asyncio.sleep(0.05)
        sent = time.perf_counter()
        await client.call("pause")
        await client.wait_for("paused")
        out.append(time.perf_counter() - sent)
        await client.call("resume")
        await client.wait_for("resumed")
    await stop(client)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pauses", type=int, default=30)
    args = parser.parse_args()
    headless: list[float] = []
    runner: list[float] = []
    events = 0
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        for i in range(args.rounds):
            headless += headless_epoch_times(Path(tmp) / f"h{i}", args.epochs)
            times, seen = asyncio.run(runner_epoch_times(Path(tmp) / f"r{i}", args.epochs))
            runner += times
            events += seen
        latencies = asyncio.run(pause_latencies(Path(tmp) / "p", args.pauses))
    mh, mr = statistics.median(headless), statistics.median(runner)
    print(f"lesson task, {args.rounds} rounds x {args.epochs} epochs")
    print(f"headless engine (one process)  median epoch {mh * 1e3:.3f} ms")
    print(f"runner + 1 client ({events} events consumed)  median epoch {mr * 1e3:.3f} ms")
    print(f"ratio runner/headless: {mr / mh:.3f}  (target <= 1.05)")
    median_ms = statistics.median(latencies) * 1e3
    p90_ms = statistics.quantiles(latencies, n=10)[-1] * 1e3
    print(
        f"pause latency over {len(latencies)} pauses: median {median_ms:.1f} ms, "
        f"p90 {p90_ms:.1f} ms  (target median <= 50 ms)"
    )


if __name__ == "__main__":
    main()
