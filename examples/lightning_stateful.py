"""Lightning steered by lrconsole, resumable mid-epoch: a torchdata StatefulDataLoader.

    pip install -e '.[integrations]' torchdata
    python examples/lightning_stateful.py              # Ctrl-C or kill it mid-epoch...
    python examples/lightning_stateful.py              # ...and it goes on from that step
    lrconsole attach lightning_stateful                # from another terminal, to steer it

The callback checkpoints mid-epoch every `checkpoint_every` seconds with Lightning's fit-loop
state (the loader's place in it); a rerun continues at the last checkpoint's step, bit for bit.
"""

from __future__ import annotations

import sys
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchdata.stateful_dataloader import StatefulDataLoader

import lrconsole
from lrconsole.integrations.lightning import LrConsoleCallback


class Regression(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.Dropout(0.1), nn.Tanh(), nn.Linear(32, 1))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=0.01)  # the LR is the console's


def main(session: str = "sessions/lightning_stateful") -> None:
    torch.manual_seed(0)
    x = torch.randn(2000, 8)
    y = x @ torch.randn(8, 1) + 0.1 * torch.randn(2000, 1)
    train = StatefulDataLoader(TensorDataset(x[:1600], y[:1600]), batch_size=32, shuffle=True)
    val = DataLoader(TensorDataset(x[1600:], y[1600:]), batch_size=200)
    segments = [lrconsole.Segment(0.01, epochs=3), lrconsole.Segment(0.003, epochs=3)]
    schedule = lrconsole.Schedule(segments)
    steer = LrConsoleCallback(session, schedule=schedule, metrics=["train_loss", "val_loss"])
    trainer = pl.Trainer(
        max_epochs=-1,  # the session decides when training ends
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,  # the session checkpoints
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[steer],
    )
    trainer.fit(Regression(), train, val)


if __name__ == "__main__":
    main(*sys.argv[1:2])
