"""Your own loop over a stream: an "epoch" is `steps_per_epoch` steps, not a pass over data.

    python examples/own_loop_stream.py               # 6 epochs of 25 steps, unattended
    lrconsole attach own_loop_stream                 # meanwhile: watch, pause, change the LR

The data never ends (an IterableDataset), so the session counts epochs of 25 steps: the
chart, the checkpoints and the schedule all work in those. Steer takes the batches from the
loader (`loader=` and `steer.batches()`). With torchdata installed (`pip install
torchdata`), the loader is a StatefulDataLoader: it can say how far the stream got, Steer
keeps that in every checkpoint, and a killed run resumes at the very step it was saved at,
mid-epoch, with the next batch of the stream. Without it, a plain DataLoader: checkpoints
fall on epoch ends, and a resumed run starts the stream from its beginning again.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.data import IterableDataset

import lrconsole

try:  # resumes mid-epoch
    from torchdata.stateful_dataloader import StatefulDataLoader as DataLoader
except ImportError:  # resumes at epoch ends, the stream from its start
    from torch.utils.data import DataLoader  # type: ignore[assignment]


class Stream(IterableDataset[tuple[torch.Tensor, torch.Tensor]]):
    """Endless (x, y) pairs. Sample i depends on i alone, and `state_dict()` tells how many
    were read: a StatefulDataLoader saves that and continues the stream from there."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.read = 0
        self.w = torch.randn(8, 1, generator=torch.Generator().manual_seed(seed))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator()
        while True:
            g.manual_seed(self.seed * 1_000_003 + self.read)
            x = torch.randn(8, generator=g)
            self.read += 1
            yield x, torch.tanh(x @ self.w) + 0.05 * torch.randn(1, generator=g)

    def state_dict(self) -> dict[str, Any]:
        return {"read": self.read}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.read = state["read"]


torch.manual_seed(0)
loader = DataLoader(Stream(), batch_size=32)
far = Stream()  # 512 samples from far down the stream, for the test loss
far.read = 10**9
pairs = [sample for sample, _ in zip(far, range(512), strict=False)]
test_x, test_y = torch.stack([x for x, _ in pairs]), torch.stack([y for _, y in pairs])

model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
loss_fn = nn.MSELoss()

session = sys.argv[1] if len(sys.argv) > 1 else "sessions/own_loop_stream"
steer = lrconsole.Steer(
    optimizer,
    session,
    model=model,
    loader=loader,  # Steer hands out its batches, and keeps its place when it can
    steps_per_epoch=25,  # an epoch: 25 steps of the stream
    schedule=lrconsole.Schedule(
        [lrconsole.Segment(3e-3, epochs=3), lrconsole.Segment(1e-3, epochs=3)]
    ),
    metrics=["test_loss"],
)

for epoch in steer.epochs():
    model.train()
    for xb, yb in steer.batches():  # this epoch's steps, from where the stream stands
        loss = loss_fn(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        steer.step(loss)
    model.eval()
    with torch.no_grad():
        test_loss = loss_fn(model(test_x), test_y).item()
    print(
        f"epoch {epoch}  lr {steer.lr:g}  test {test_loss:.4f}  samples read {loader.dataset.read}"
    )
    steer.epoch_end({"test_loss": test_loss})
