"""The hook's overhead: the same user loop on the lesson task, with and without Steer.

    python benchmarks/bench_steer.py [--epochs 60] [--rounds 7]

The hooked side writes the session (metrics.csv, TensorBoard, checkpoints) and serves the
control socket. Rounds alternate; prints per-epoch medians and the ratio (target <= 1.03).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from lrconsole import Schedule, Segment, Steer
from lrconsole.core.tasks.lesson import make_lesson_task
from lrconsole.core.train.rng import seed_everything


def user_loop(epochs: int, folder: Path | None) -> list[float]:
    seed_everything(0)
    task = make_lesson_task()
    model, loss_fn, loader = task.model, task.loss, task.train_loader
    (tx, ty), (vx, vy) = (batches[0] for batches in task.eval_sets.values())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.03)
    steer = None
    if folder is not None:
        steer = Steer(
            optimizer,
            folder,
            model=model,
            steps_per_epoch=len(loader),
            schedule=Schedule([Segment(0.03, epochs=epochs)]),
            metrics=["train_loss", "test_loss"],
        )
        epoch_iter = steer.epochs()
    else:
        epoch_iter = iter(range(epochs))
    times = []
    for _ in epoch_iter:
        start = time.perf_counter()
        model.train()
        for x, y in loader:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if steer is not None:
                steer.step(loss)
        model.eval()
        with torch.no_grad():
            metrics = {
                "train_loss": float(loss_fn(model(tx), ty)),
                "test_loss": float(loss_fn(model(vx), vy)),
            }
        if steer is not None:
            steer.epoch_end(metrics)
        times.append(time.perf_counter() - start)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    plain: list[float] = []
    hooked: list[float] = []
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        for i in range(args.rounds):
            plain += user_loop(args.epochs, None)
            hooked += user_loop(args.epochs, Path(tmp) / f"s{i}")
    mp, mh = statistics.median(plain), statistics.median(hooked)
    print(f"lesson task in a user's loop, {args.rounds} rounds x {args.epochs} epochs")
    print(f"without the hook  median epoch {mp * 1e3:.3f} ms")
    print(f"with Steer        median epoch {mh * 1e3:.3f} ms  (session files + socket)")
    print(f"ratio hook/plain: {mh / mp:.3f}  (target <= 1.03)")


if __name__ == "__main__":
    main()
