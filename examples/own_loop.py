"""Your own PyTorch training loop, steered by lrconsole: four added lines (marked +).

    python examples/own_loop.py                      # runs unattended: the schedule below
    lrconsole attach own_loop                        # meanwhile: watch, pause, change the LR

Run it again to continue where it stopped; `lrconsole export own_loop` writes its path.
"""

from __future__ import annotations

import sys

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lrconsole

torch.manual_seed(0)
x = torch.randn(2000, 8)
y = (x[:, :4].sum(dim=1, keepdim=True) - x[:, 4:].pow(2).sum(dim=1, keepdim=True)) / 4
train = TensorDataset(x[:1600], y[:1600])
test_x, test_y = x[1600:], y[1600:]
loader = DataLoader(train, batch_size=64, shuffle=True)

model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
loss_fn = nn.MSELoss()

schedule = lrconsole.Schedule(  # followed when no console is attached and nothing is queued
    [lrconsole.Segment(3e-3, epochs=8), lrconsole.Segment(1e-3, epochs=8)]
)
session = sys.argv[1] if len(sys.argv) > 1 else "sessions/own_loop"
steer = lrconsole.Steer(  # +
    optimizer,
    session,
    model=model,
    steps_per_epoch=len(loader),
    schedule=schedule,
    metrics=["train_loss", "test_loss"],
)

for epoch in steer.epochs():  # + (was: for epoch in range(16))
    model.train()
    total = 0.0
    for xb, yb in loader:
        loss = loss_fn(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        steer.step(loss)  # +
        total += loss.item() * len(xb)
    model.eval()
    with torch.no_grad():
        test_loss = loss_fn(model(test_x), test_y).item()
    print(f"epoch {epoch}  lr {steer.lr:g}  train {total / len(train):.4f}  test {test_loss:.4f}")
    steer.epoch_end({"train_loss": total / len(train), "test_loss": test_loss})  # +
