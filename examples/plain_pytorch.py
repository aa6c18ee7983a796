"""Replay an exported lrconsole schedule in a plain PyTorch loop, no lrconsole engine.

    lrconsole export mysession -o schedule.yaml
    python examples/plain_pytorch.py schedule.yaml

`Schedule.load` reads the YAML; `lambda_lr` gives a LambdaLR stepped after every batch.
On the built-in lesson task this prints the same per-epoch metrics as the session did,
bit for bit (same machine, same thread count).
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch

from lrconsole import Schedule
from lrconsole.core.tasks.lesson import make_lesson_task
from lrconsole.core.tasks.optim import build_optimizer
from lrconsole.errors import UserError


def seed_all(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def main(path: str) -> None:
    schedule = Schedule.load(path)
    if schedule.task.spec != "lesson":
        raise UserError(f"{path}: this example replays the lesson task, not {schedule.task.spec!r}")
    torch.set_num_threads(schedule.threads or 1)
    seed_all(schedule.seed)
    task = make_lesson_task(**schedule.task.args)
    seed_all(schedule.seed)  # lrconsole seeds again once the task is built
    model, loss_fn = task.model, task.loss
    # The optimizer the schedule names, built as lrconsole builds it (its LR is set below).
    optimizer = build_optimizer(schedule.optimizer, model.parameters(), lr=1.0)
    scheduler = schedule.lambda_lr(optimizer, steps_per_epoch=len(task.train_loader))
    epochs = int(schedule.total_epochs(len(task.train_loader)))
    print("epoch,lr,train_loss,test_loss")
    for epoch in range(1, epochs + 1):
        model.train()
        for x, y in task.train_loader:
            lr = optimizer.param_groups[0]["lr"]
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
        model.eval()
        with torch.no_grad():
            row = [epoch, lr]
            for loader in task.eval_sets.values():
                x, y = next(iter(loader))  # each evaluation set is one whole batch
                row.append(float(loss_fn(model(x), y)))
        print(",".join(str(v) for v in row))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "schedule",
        nargs="?",
        default=str(Path(__file__).parent / "lesson_15_1.yaml"),
        help="an exported schedule YAML (default: lesson_15_1.yaml beside this script)",
    )
    try:
        main(parser.parse_args().schedule)
    except UserError as exc:  # a missing or malformed file: one line, exit 2
        parser.error(str(exc))
