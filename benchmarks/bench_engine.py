"""Engine (TensorBoard + checkpoints on) against a bare PyTorch loop on the lesson task.

    python benchmarks/bench_engine.py [--epochs 60] [--rounds 7] [--hidden WIDTH]

Both sides train the same math in this one process, interleaved round by round so that
machine noise hits both alike; the engine runs twice a round, with gradient diagnostics
(the per-step gradient norm and its guard) on and off. Prints per-epoch medians and their
ratios (targets: <= 1.05, and <= 1.03 with diagnostics on against off), then the cost of
one resume: from process start to the first trained batch. `--hidden WIDTH` trains
bench_scale's MLP (64 -> WIDTH -> WIDTH -> 8, Adam; 3200 is about 10M parameters)
instead of the lesson's model, and skips the resume.
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
from lrconsole.core.tasks.optim import build_optimizer
from lrconsole.core.tasks.task import Task
from lrconsole.core.train.rng import seed_everything
from lrconsole.core.train.trainer import Trainer


def make_task(hidden: int | None) -> Task:
    seed_everything(0)
    if hidden is None:
        task = make_lesson_task()
    else:
        from bench_scale import make_task as make_mlp

        task = make_mlp(hidden, layers=1, steps=16)
    seed_everything(0)
    return task


def bare_epoch_times(epochs: int, lr: float, hidden: int | None) -> list[float]:
    """The lesson's fit_rec: SGD, MSE, then full-set train and test MSE in eval mode."""
    task = make_task(hidden)
    model, loss_fn = task.model, task.loss
    optimizer = build_optimizer(task.optimizer_spec(), model.parameters(), lr)
    eval_batches = [batches[0] for batches in task.eval_sets.values()]  # type: ignore[index]
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
            rec = [float(loss_fn(model(x), y)) for x, y in eval_batches]
        model.train()
        times.append(time.perf_counter() - start)
        assert rec
    return times


def engine_epoch_times(
    folder: Path, epochs: int, lr: float, hidden: int | None, grad_norm: bool
) -> list[float]:
    from lrconsole.core.train import events as ev

    trainer = Trainer.open(
        folder,
        schedule=Schedule([Segment(lr, epochs=epochs)]),
        task=make_task(hidden),
        grad_norm=grad_norm,
    )
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
    parser.add_argument("--hidden", type=int, default=None, help="an MLP this wide instead")
    args = parser.parse_args()
    torch.set_num_threads(1)
    lr = 0.03 if args.hidden is None else 1e-4
    bare: list[float] = []
    on: list[float] = []
    off: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            # Each side's warm-up epoch is dropped; the order turns each round.
            for kind in ("bare", "on", "off")[i % 3 :] + ("bare", "on", "off")[: i % 3]:
                if kind == "bare":
                    bare += bare_epoch_times(args.epochs, lr, args.hidden)[1:]
                    continue
                folder = Path(tmp) / f"{kind}{i}"
                times = engine_epoch_times(folder, args.epochs, lr, args.hidden, kind == "on")
                (on if kind == "on" else off).extend(times[1:])
        resumes = []
        if args.hidden is None:
            resumes = [resume_seconds(Path(tmp) / f"on{i}") for i in range(min(args.rounds, 5))]
    mb, mon, moff = statistics.median(bare), statistics.median(on), statistics.median(off)
    size = sum(p.numel() for p in make_task(args.hidden).model.parameters())
    name = "lesson task" if args.hidden is None else f"MLP width {args.hidden}"
    print(f"{name} ({size:,} parameters), {args.rounds} rounds x {args.epochs} epochs, threads 1")
    print(f"bare loop  median epoch {mb * 1e3:.3f} ms")
    print(f"engine     median epoch {mon * 1e3:.3f} ms  (TensorBoard + checkpoints + grad norm)")
    print(f"engine     median epoch {moff * 1e3:.3f} ms  (--no-grad-norm)")
    print(f"ratio engine/bare: {mon / mb:.3f} diagnostics on, {moff / mb:.3f} off (target <= 1.05)")
    print(f"ratio diagnostics on/off: {mon / moff:.3f}  (target <= 1.03)")
    if resumes:
        print(
            f"resume: process start to first trained batch, median of {len(resumes)}: "
            f"{statistics.median(resumes):.2f} s"
        )


if __name__ == "__main__":
    main()
