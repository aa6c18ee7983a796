"""The trainer adapters: each test runs only where its library is installed.

Tested with lightning 2.6.6, transformers 5.24.0 (accelerate 1.15.0), torch 2.13.0 (CPU).
"""

from __future__ import annotations

import asyncio
import csv
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lrconsole.client import ConnectionLost, RunnerClient
from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.plan.segment import Segment

TWO_SEGMENTS = Schedule([Segment(0.05, epochs=2), Segment(0.01, epochs=2)])
OPEN_ENDED = Schedule([Segment(0.05, epochs=100_000)])
STEPS = 4  # batches (and optimizer steps) per epoch in every test


def data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(STEPS * 16, 4, generator=gen)
    return x, x.sum(dim=1, keepdim=True)


def rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def assert_session(folder: Path, epochs: int) -> list[dict[str, str]]:
    assert (folder / "manifest.yaml").is_file()
    found = rows(folder)
    assert [int(r["global_epoch"]) for r in found] == list(range(1, epochs + 1))
    return found


async def steer_in_thread(folder: Path, train: Callable[[], Any], lrs: list[float]) -> None:
    """Run `train` in a thread; pause it, change its LR, resume, then shut it down."""
    failed: list[BaseException] = []

    def target() -> None:
        try:
            train()
        except BaseException as exc:  # surfaced by the test below
            failed.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    sock = folder / "control.sock"
    deadline = time.monotonic() + 30
    while not sock.exists() and time.monotonic() < deadline and thread.is_alive():
        await asyncio.sleep(0.05)
    assert not failed, failed
    client = await RunnerClient.connect(sock)
    try:
        assert client.snapshot["session"]["steps_per_epoch"] == STEPS
        await client.wait_for("epoch", timeout=15)
        await client.call("pause")
        paused = await client.wait_for("paused", timeout=10)
        assert paused.data["reason"] == "operator"
        step = (await client.call("status"))["global_step"]
        await asyncio.sleep(0.3)
        assert (await client.call("status"))["global_step"] == step  # blocked at a step boundary
        result = await client.call("set_lr", lr=0.002)
        assert result["global_step"] == step  # the very next optimizer step uses it
        await client.call("resume")

        async def lr_after() -> float:
            while True:
                event = await client.next_event()
                if event.name == "batch" and event.data["global_step"] > result["global_step"]:
                    return float(event.data["lr"])

        assert await asyncio.wait_for(lr_after(), 10) == 0.002
        await client.call("shutdown")
        with pytest.raises(ConnectionLost):
            await client.wait_for("never", timeout=15)
    finally:
        await client.close()
    await asyncio.to_thread(thread.join, 30)
    assert not thread.is_alive()
    assert not failed, failed
    # The optimizer really trained at the console's LR from the step it named on.
    assert lrs[step:] and set(lrs[step:]) == {0.002}
    assert set(lrs[:step]) == {0.05}
    assert len(lrs) % STEPS == 0  # the shutdown ended training at an epoch boundary


# -- PyTorch Lightning ---------------------------------------------------------------------


def lightning_run(
    folder: Path, schedule: Schedule, metrics: list[str]
) -> tuple[Callable[[], Any], list[float], Any]:
    pl: Any = pytest.importorskip("lightning.pytorch")
    from lrconsole.integrations.lightning import LrConsoleCallback

    class Regression(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Linear(4, 1)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = nn.functional.mse_loss(self.net(x), y)
            self.log("train_mse", loss, on_step=False, on_epoch=True)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    lrs: list[float] = []

    class RecordLr(pl.Callback):
        def on_before_optimizer_step(self, trainer: Any, module: Any, optimizer: Any) -> None:
            lrs.append(optimizer.param_groups[0]["lr"])

    torch.manual_seed(0)
    loader = DataLoader(TensorDataset(*data()), batch_size=16)
    trainer = pl.Trainer(
        max_epochs=-1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[RecordLr(), LrConsoleCallback(folder, schedule=schedule, metrics=metrics)],
    )
    model = Regression()
    return (lambda: trainer.fit(model, loader)), lrs, trainer


def test_lightning_follows_the_schedule_unattended(tmp_path: Path) -> None:
    folder = tmp_path / "lightning"
    fit, lrs, trainer = lightning_run(folder, TWO_SEGMENTS, ["train_loss", "train_mse"])
    fit()
    assert lrs == [0.05] * 2 * STEPS + [0.01] * 2 * STEPS
    assert trainer.global_step == 4 * STEPS
    found = assert_session(folder, 4)
    assert [float(r["lr"]) for r in found] == [0.05, 0.05, 0.01, 0.01]
    assert all(float(r["train_loss"]) > 0 and float(r["train_mse"]) > 0 for r in found)
    assert "state: stopped" in (folder / "manifest.yaml").read_text()
    fit, lrs, trainer = lightning_run(folder, TWO_SEGMENTS, ["train_loss", "train_mse"])
    fit()  # the plan is done: Lightning stops before its first batch
    assert lrs == [] and trainer.global_step == 0 and rows(folder) == found


async def test_lightning_is_steered_over_the_socket(tmp_path: Path) -> None:
    folder = tmp_path / "lightning"
    fit, lrs, _ = lightning_run(folder, OPEN_ENDED, ["train_loss"])
    await steer_in_thread(folder, fit, lrs)


# -- Hugging Face transformers ---------------------------------------------------------------


class Pairs(Dataset[dict[str, torch.Tensor]]):
    def __init__(self) -> None:
        self.x, self.y = data()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "labels": self.y[i]}


class Regressor(nn.Module):
    """Returns its loss the way Hugging Face models do when given labels."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, Any]:
        out = self.net(x)
        loss = None if labels is None else nn.functional.mse_loss(out, labels)
        return {"loss": loss, "logits": out}


def hf_run(
    folder: Path, schedule: Schedule, metrics: list[str], epochs: int, **extra: Any
) -> tuple[Callable[[], Any], list[float], Any]:
    transformers: Any = pytest.importorskip("transformers")
    from lrconsole.integrations.huggingface import LrConsoleCallback

    lrs: list[float] = []

    class RecordLr(transformers.TrainerCallback):
        def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            lrs.append(kw["optimizer"].param_groups[0]["lr"])

    torch.manual_seed(0)
    args = transformers.TrainingArguments(
        output_dir=str(folder.parent / "hf-out"),
        per_device_train_batch_size=16,
        per_device_eval_batch_size=16,
        num_train_epochs=epochs,
        learning_rate=0.1,
        lr_scheduler_type="constant",  # it would reset the LR to 0.1 each step: ours must win
        optim="sgd",
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        **extra,
    )
    trainer = transformers.Trainer(
        model=Regressor(),
        args=args,
        train_dataset=Pairs(),
        eval_dataset=Pairs(),
        callbacks=[RecordLr(), LrConsoleCallback(folder, schedule=schedule, metrics=metrics)],
    )
    return trainer.train, lrs, trainer


def test_huggingface_follows_the_schedule_unattended(tmp_path: Path) -> None:
    folder = tmp_path / "hf"
    train, lrs, trainer = hf_run(
        folder, TWO_SEGMENTS, ["train_loss", "eval_loss"], epochs=10, eval_strategy="epoch"
    )
    train()
    assert lrs == [0.05] * 2 * STEPS + [0.01] * 2 * STEPS
    assert trainer.state.global_step == 4 * STEPS  # the plan's end stops the trainer cleanly
    found = assert_session(folder, 4)
    assert [float(r["lr"]) for r in found] == [0.05, 0.05, 0.01, 0.01]
    # eval_loss comes from the epoch's own evaluation, recorded with that epoch
    evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    assert [float(r["eval_loss"]) for r in found] == pytest.approx(evals)
    assert all(float(r["train_loss"]) > 0 for r in found)
    assert "state: stopped" in (folder / "manifest.yaml").read_text()


def test_huggingface_trains_nothing_once_the_plan_is_done(tmp_path: Path) -> None:
    folder = tmp_path / "hf"
    train, _, first = hf_run(folder, TWO_SEGMENTS, ["train_loss"], epochs=10)
    train()
    trained = [p.detach().clone() for p in first.model.parameters()]
    before = rows(folder)
    train, _, again = hf_run(folder, TWO_SEGMENTS, ["train_loss"], epochs=10)
    train()
    # The session put the trained weights back, and the one batch the trainer runs before
    # it looks at should_training_stop changed nothing.
    after = [p.detach() for p in again.model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(trained, after, strict=True))
    assert rows(folder) == before
    assert again.state.global_step == 1


async def test_huggingface_is_steered_over_the_socket(tmp_path: Path) -> None:
    folder = tmp_path / "hf"
    train, lrs, _ = hf_run(folder, OPEN_ENDED, ["train_loss"], epochs=100_000)
    await steer_in_thread(folder, train, lrs)
