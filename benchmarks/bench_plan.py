"""What a long plan costs per step: steps/s at 1 vs 10,000 segments.

    python benchmarks/bench_plan.py [--segments 10000] [--epochs 1000] [--runs 2]

The lesson task (one torch thread), in a real session (checkpoints, metrics, manifest,
no TensorBoard), in three plans, interleaved over `--runs` runs:
- `1`: one segment of `--epochs` epochs;
- `queued`: the same segment with `--segments - 1` one-epoch segments queued after it
  (only the first segment is trained): the cost of a long queue to every step;
- `walk`: `--segments` one-epoch segments, of which the first `--epochs` are trained: the
  cost of each segment change (a checkpoint at every segment end, the manifest) in a
  long plan.
Printed: the median steps/s of each and its ratio to `1`. Target: ratios close to 1.
A long plan's manifest is a second of YAML to write, paid at the first checkpoint and then
at most once per 50 such seconds: runs much shorter than the default (about 15 s each,
2 minutes in all) show that one-off cost more than the per-step one.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lrconsole.core.plan.schedule import Schedule  # noqa: E402
from lrconsole.core.plan.segment import Segment, TaskSpec  # noqa: E402
from lrconsole.core.train import events as ev  # noqa: E402
from lrconsole.core.train.trainer import Trainer  # noqa: E402


def plan_of(kind: str, segments: int, epochs: int) -> list[Segment]:
    if kind == "1":
        return [Segment(0.01, epochs=epochs)]
    if kind == "queued":
        return [Segment(0.01, epochs=epochs)] + [Segment(0.005, epochs=1)] * (segments - 1)
    return [Segment(0.01 if i % 2 else 0.005, epochs=1) for i in range(segments)]


def steps_per_second(kind: str, segments: int, epochs: int, folder: Path) -> float:
    schedule = Schedule(plan_of(kind, segments, epochs), task=TaskSpec("lesson"), threads=1)
    trainer = Trainer.open(folder, schedule=schedule, tensorboard=False)
    engine = trainer.engine
    marks: list[float] = []

    def on_epoch(event: ev.EpochEnd) -> None:
        marks.append(time.perf_counter())
        if event.global_epoch >= epochs:
            engine.request_exit("measured")

    engine.on(ev.EpochEnd, on_epoch)
    engine.run()
    trainer.close()
    shutil.rmtree(folder)
    # From the end of the first epoch: the first pays for warming up.
    steps = (len(marks) - 1) * engine.steps_per_epoch
    return steps / (marks[-1] - marks[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segments", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    kinds = ["1", "queued", "walk"]
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            for kind in kinds:
                folder = Path(tmp) / f"{kind}-{run}"
                rates[kind].append(steps_per_second(kind, args.segments, args.epochs, folder))
    base = statistics.median(rates["1"])
    print(f"lesson task, {args.epochs} epochs trained, median of {args.runs} runs")
    for kind in kinds:
        rate = statistics.median(rates[kind])
        label = {"1": "1 segment", "queued": f"1 + {args.segments - 1:,} queued"}.get(
            kind, f"{args.segments:,} one-epoch segments"
        )
        print(f"  {label:>32}: {rate:8.0f} steps/s  ratio {rate / base:5.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
