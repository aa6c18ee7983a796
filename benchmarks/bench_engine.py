"""Engine (TensorBoard + checkpoints on) against a bare PyTorch loop on the lesson task.

    python benchmarks/bench_engine.py [--epochs 40] [--rounds 15] [--hidden WIDTH]

Both sides train the same math in this one process, interleaved round by round so that
machine noise hits both alike; the engine runs twice a round, with gradient diagnostics
(the per-step gradient norm and its guard) on and off. Prints per-epoch medians and their
ratios (targets: <= 1.05, and <= 1.03 with diagnostics on against off), each the median
of the rounds' ratios (a round's three sides run back to back), then the cost of
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


Times = list[float]  # seconds per epoch


def now() -> float:
    return time.perf_counter()


def spans(marks: Times) -> Times:
    return [b - a for a, b in zip(marks, marks[1:], strict=False)]


def bare_epoch_times(epochs: int, lr: float, hidden: int | None) -> Times:
    """The lesson's fit_rec: SGD, MSE, then full-set train and test MSE in eval mode."""
    task = make_task(hidden)
    model, loss_fn = task.model, task.loss
    optimizer = build_optimizer(task.optimizer_spec(), model.parameters(), lr)
    eval_batches = [batches[0] for batches in task.eval_sets.values()]  # type: ignore[index]
    marks = [now()]
    for _ in range(epochs):
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
        marks.append(now())
        assert rec
    return spans(marks)


def engine_epoch_times(
    folder: Path, epochs: int, lr: float, hidden: int | None, grad_norm: bool
) -> Times:
    from lrconsole.core.train import events as ev

    trainer = Trainer.open(
        folder,
        schedule=Schedule([Segment(lr, epochs=epochs)]),
        task=make_task(hidden),
        grad_norm=grad_norm,
    )
    marks = [now()]  # EpochEnd is emitted on the training thread
    trainer.engine.on(ev.EpochEnd, lambda e: marks.append(now()))
    trainer.engine.run()
    trainer.close()
    return spans(marks)


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


def report(rounds: list[dict[str, float]]) -> None:
    """Medians over rounds of each round's median epoch, and of each round's ratios."""
    bare, on, off = (statistics.median(r[k] for r in rounds) for k in ("bare", "on", "off"))
    on_bare = statistics.median(r["on"] / r["bare"] for r in rounds)
    off_bare = statistics.median(r["off"] / r["bare"] for r in rounds)
    on_off = [r["on"] / r["off"] for r in rounds]
    print("median epoch over rounds; each ratio is the median of the rounds' ratios")
    print(f"bare loop  median epoch {bare * 1e3:.3f} ms")
    print(f"engine     median epoch {on * 1e3:.3f} ms  (TensorBoard + checkpoints + grad norm)")
    print(f"engine     median epoch {off * 1e3:.3f} ms  (--no-grad-norm)")
    print(f"ratio engine/bare: {on_bare:.3f} diagnostics on, {off_bare:.3f} off (target <= 1.05)")
    print(
        f"ratio diagnostics on/off: {statistics.median(on_off):.3f}  (target <= 1.03; "
        f"rounds {min(on_off):.3f} to {max(on_off):.3f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--hidden", type=int, default=None, help="an MLP this wide instead")
    args = parser.parse_args()
    torch.set_num_threads(1)
    lr = 0.03 if args.hidden is None else 1e-4
    # Per round, each side's median epoch; the three sides of a round run back to back,
    # so a round's ratios are paired against the machine's noise of that moment.
    walls: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            wall = {}
            # Each side's warm-up epoch is dropped; the order turns each round.
            for kind in ("bare", "on", "off")[i % 3 :] + ("bare", "on", "off")[: i % 3]:
                if kind == "bare":
                    times = bare_epoch_times(args.epochs, lr, args.hidden)
                else:
                    folder = Path(tmp) / f"{kind}{i}"
                    times = engine_epoch_times(folder, args.epochs, lr, args.hidden, kind == "on")
                wall[kind] = statistics.median(times[1:])
            walls.append(wall)
        resumes = []
        if args.hidden is None:
            resumes = [resume_seconds(Path(tmp) / f"on{i}") for i in range(min(args.rounds, 5))]
    size = sum(p.numel() for p in make_task(args.hidden).model.parameters())
    name = "lesson task" if args.hidden is None else f"MLP width {args.hidden}"
    print(f"{name} ({size:,} parameters), {args.rounds} rounds x {args.epochs} epochs, threads 1")
    report(walls)
    if resumes:
        print(
            f"resume: process start to first trained batch, median of {len(resumes)}: "
            f"{statistics.median(resumes):.2f} s"
        )


if __name__ == "__main__":
    main()
