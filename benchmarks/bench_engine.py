"""Engine (TensorBoard + checkpoints on) against a bare PyTorch loop on the lesson task.

    python benchmarks/bench_engine.py [--epochs 60] [--rounds 7]

Both sides train the same math in this one process, interleaved round by round so that
machine noise hits both alike. Prints per-epoch medians and their ratio (target <= 1.05),
then the cost of one resume: from process start to the first trained batch.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.plan.segment import Segment
from lrconsole.core.tasks.lesson import make_lesson_task
from lrconsole.core.train.rng import seed_everything
from lrconsole.core.train.trainer import Trainer


def bare_epoch_times(epochs: int, lr: float) -> list[float]:
    """The lesson's fit_rec: SGD, MSE, then full-set train and test MSE in eval mode."""
    seed_everything(0)
    task = make_lesson_task()
    seed_everything(0)
    model, loss_fn = task.model, task.loss
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    train_eval, test_eval = (batches[0] for batches in task.eval_sets.values())
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        for x, y in task.train_loader:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            rec = [float(loss_fn(model(x), y)) for x, y in (train_eval, test_eval)]
        model.train()
        times.append(time.perf_counter() - start)
        assert rec
    return times


def engine_epoch_times(folder: Path, epochs: int, lr: float) -> list[float]:
    from lrconsole.core.train import events as ev

    trainer = Trainer.open(folder, schedule=Schedule([Segment(lr, epochs=epochs)]))
    marks: list[float] = []
    trainer.engine.on(ev.EpochEnd, lambda e: marks.append(time.perf_counter()))
    start = time.perf_counter()
    trainer.engine.run()
    trainer.close()
    return [b - a for a, b in zip([start, *marks[:-1]], marks, strict=True)]


RESUME_PROBE = """
import sys, time
from pathlib import Path
from lrconsole.core.train import events as ev
from lrconsole.core.plan.segment import Segment
from lrconsole.core.train.trainer import Trainer
trainer = Trainer.open(Path(sys.argv[1]))
trainer.engine.queue([Segment(0.01, epochs=1)])
def first(e):
    print(time.time(), flush=True)
    trainer.engine.request_exit("stop")
trainer.engine.on(ev.BatchEnd, first)
trainer.engine.run()
trainer.close()
"""


def resume_seconds(folder: Path) -> float:
    start = time.time()
    out = subprocess.run(
        [sys.executable, "-c", RESUME_PROBE, str(folder)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.split()[0]) - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    bare: list[float] = []
    engine: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            bare += bare_epoch_times(args.epochs, 0.03)[1:]  # drop each side's warm-up epoch
            engine += engine_epoch_times(Path(tmp) / f"s{i}", args.epochs, 0.03)[1:]
        resumes = [resume_seconds(Path(tmp) / f"s{i}") for i in range(min(args.rounds, 5))]
    mb, me = statistics.median(bare), statistics.median(engine)
    print(f"lesson task, {args.rounds} rounds x {args.epochs} epochs, torch threads 1")
    print(f"bare loop  median epoch {mb * 1e3:.3f} ms")
    print(f"engine     median epoch {me * 1e3:.3f} ms  (TensorBoard + checkpoints on)")
    print(f"ratio engine/bare: {me / mb:.3f}  (target <= 1.05)")
    print(
        f"resume: process start to first trained batch, median of {len(resumes)}: "
        f"{statistics.median(resumes):.2f} s"
    )


if __name__ == "__main__":
    main()
