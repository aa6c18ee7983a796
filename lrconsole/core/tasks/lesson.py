"""The built-in `lesson` task: the reference lesson's experiment, exactly.

Data `tensorGenReg(w=[2,-1,3,1,2], bias=False, deg=2)` with seed 420, a 70/30 split,
batch 50, `net_class2(tanh, BN_model='pre')` with seed 24, SGD and MSE.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset, random_split

from lrconsole.core.tasks.task import Task


def tensor_gen_reg(num_examples: int = 1000, delta: float = 0.01) -> TensorDataset:
    """The lesson's `tensorGenReg(w=[2,-1,3,1,2], bias=False, deg=2)` under seed 420."""
    torch.manual_seed(420)
    w = torch.tensor([2.0, -1.0, 3.0, 1.0, 2.0])
    features = torch.randn(num_examples, 5)
    labels = torch.mm(features.pow(2), w.reshape(-1, 1)) + torch.randn(num_examples, 1) * delta
    return TensorDataset(features, labels)


class NetClass2(nn.Module):
    """The lesson's `net_class2(act_fun=torch.tanh, in_features=5, BN_model='pre')`."""

    def __init__(self, in_features: int = 5, n_hidden1: int = 4, n_hidden2: int = 4) -> None:
        super().__init__()
        self.linear1 = nn.Linear(in_features, n_hidden1)
        self.normalize1 = nn.BatchNorm1d(n_hidden1)
        self.linear2 = nn.Linear(n_hidden1, n_hidden2)
        self.normalize2 = nn.BatchNorm1d(n_hidden2)
        self.linear3 = nn.Linear(n_hidden2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.normalize1(self.linear1(x)))
        x = torch.tanh(self.normalize2(self.linear2(x)))
        return self.linear3(x)


def whole(subset: Subset[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, torch.Tensor]:
    """All samples of a split as one (features, labels) batch, like the lesson's `dataset[:]`."""
    features, labels = subset.dataset[list(subset.indices)]
    return features, labels


def make_lesson_task(batch_size: int = 50, num_examples: int = 1000) -> Task:
    data = tensor_gen_reg(num_examples)
    train_size = int(num_examples * 0.7)
    train, test = random_split(data, [train_size, num_examples - train_size])
    torch.manual_seed(24)
    model = NetClass2()
    return Task(
        model=model,
        train_loader=DataLoader(train, batch_size=batch_size, shuffle=True),
        # The lesson's mse_cal evaluates each whole set in one forward pass: one batch each.
        eval_sets={"train": [whole(train)], "test": [whole(test)]},
        loss=nn.MSELoss(),
        optimizer="sgd",
        monitor="test_loss",
        threads=1,
    )
