"""A custom task for lrconsole: 3-class classification of synthetic 2-D blobs.

    lrconsole run blobs --schedule examples/classify.yaml
    lrconsole new blobs --task examples/classify_task.py:make_task

It shows a second kind of metric: accuracy, monitored instead of the loss.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lrconsole import OptimizerSpec, Task


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(dim=1) == labels).float().mean()


def make_task(samples: int = 900, momentum: float = 0.9) -> Task:
    generator = torch.Generator().manual_seed(7)
    centers = torch.tensor([[0.0, 2.0], [-2.0, -1.0], [2.0, -1.0]])
    labels = torch.arange(samples) % 3
    points = centers[labels] + torch.randn(samples, 2, generator=generator)
    split = samples * 2 // 3
    train = TensorDataset(points[:split], labels[:split])
    test = TensorDataset(points[split:], labels[split:])
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))
    return Task(
        model=model,
        train_loader=DataLoader(train, batch_size=32, shuffle=True),
        eval_sets={
            "train": DataLoader(train, batch_size=256),
            "test": DataLoader(test, batch_size=256),
        },
        loss=nn.CrossEntropyLoss(),
        optimizer=OptimizerSpec("sgd", {"momentum": momentum}),
        metrics={"acc": accuracy},
        monitor="test_acc",
    )
