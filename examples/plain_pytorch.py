"""Replay an exported lrconsole schedule in a plain PyTorch loop, no lrconsole engine.

    lrconsole export mysession -o schedule.yaml
    python examples/plain_pytorch.py schedule.yaml

`Schedule.load` reads the YAML; `lambda_lr` gives a LambdaLR stepped after every batch.
On the built-in lesson task this prints the same per-epoch metrics as the session did,
bit for bit (same machine, same thread count).
"""

from __future__ import annotations

import random
import sys

import torch

from lrconsole import Schedule
from lrconsole.core.lesson import make_lesson_task


def seed_all(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def main(path: str) -> None:
    schedule = Schedule.load(path)
    torch.set_num_threads(schedule.threads or 1)
    seed_all(schedule.seed)
    task = make_lesson_task(**schedule.task.args)
    seed_all(schedule.seed)  # lrconsole seeds again once the task is built
    model, loss_fn = task.model, task.loss
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0, **schedule.optimizer.kwargs)
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
    main(sys.argv[1] if len(sys.argv) > 1 else "examples/lesson_15_1.yaml")
