"""The Lightning callback over a stateful loader: mid-epoch checkpoints on the engine's time
rule, and a run SIGKILLed mid-epoch resumes bit for bit (real processes, real kills).

Tested with lightning 2.6.6, torchdata 0.11.0, torch 2.13.0 (CPU).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import EXAMPLES, ROOT, metric_rows

# A shuffled map-style dataset, dropout in the model (torch's RNG) and a validation loader
# (each pass over it draws from torch's RNG too): resuming must give back Lightning's loop,
# the loader's place and every RNG. argv: session, checkpoint_every, "stateful" or "plain".
# `KILL_AT`: the process SIGKILLs itself right after that session step, as a kill would;
# with `KILL_SETTLED`, once the checkpoint being written has landed (a loaded CI machine
# can take longer than the steps before the kill to write it).
SCRIPT = """
import os, signal, sys, torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
import lightning.pytorch as pl
import lrconsole
from lrconsole.integrations.lightning import LrConsoleCallback

torch.manual_seed(0)
x = torch.randn(240, 6)
y = x @ torch.randn(6, 1) + 0.1 * torch.randn(240, 1)
if sys.argv[3] == "stateful":
    from torchdata.stateful_dataloader import StatefulDataLoader as Loader
else:
    Loader = DataLoader
loader = Loader(TensorDataset(x, y), batch_size=20, shuffle=True)  # 12 steps an epoch
val = DataLoader(TensorDataset(x[:60], y[:60]), batch_size=30)
kill_at = int(os.environ.get("KILL_AT", "-1"))

class Net(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 16), nn.Dropout(0.2), nn.Tanh(), nn.Linear(16, 1))
    def training_step(self, batch, i):
        xb, yb = batch
        return nn.functional.mse_loss(self.net(xb), yb)
    def validation_step(self, batch, i):
        xb, yb = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(xb), yb))
    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=0.01)

S = lrconsole.Segment
steer = LrConsoleCallback(
    sys.argv[1], schedule=lrconsole.Schedule([S(0.01, epochs=2), S(0.003, epochs=2)]),
    metrics=["train_loss", "val_loss"], checkpoint_every=float(sys.argv[2]))

class Kill(pl.Callback):
    def on_train_start(self, trainer, module):
        print("start", steer.steer.engine.global_step, flush=True)
    def on_train_batch_end(self, trainer, module, out, batch, i):
        step = steer.steer.engine.global_step
        print("step", step, flush=True)
        if step == kill_at:
            if os.environ.get("KILL_SETTLED"):  # after the write in flight has landed
                steer.steer.trainer.checkpointer.writer.wait()
            os.kill(os.getpid(), signal.SIGKILL)

model = Net()
trainer = pl.Trainer(max_epochs=-1, accelerator="cpu", devices=1, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, callbacks=[steer, Kill()])
trainer.fit(model, loader, val)
torch.save(model.state_dict(), os.path.join(sys.argv[1], "final.pt"))
"""


def run(
    script: Path, *args: str, kill_at: int | None = None, settled: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if kill_at is not None:
        env["KILL_AT"] = str(kill_at)
    if settled:
        env["KILL_SETTLED"] = "1"
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )


def start_of(done: subprocess.CompletedProcess[str]) -> int:
    return int(done.stdout.split("start ")[1].split()[0])


def same_weights(a: Path, b: Path) -> bool:
    wa = torch.load(a / "final.pt", weights_only=True)
    wb = torch.load(b / "final.pt", weights_only=True)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def reference(tmp_path: Path, script: Path, kind: str) -> Path:
    folder = tmp_path / "ref"
    done = run(script, str(folder), "3600", kind)  # epoch-end checkpoints only
    assert done.returncode == 0, done.stderr[-2000:]
    assert [r[:2] for r in metric_rows(folder)[1:]] == [[str(e), str(12 * e)] for e in range(1, 5)]
    return folder


@pytest.mark.slow
def test_lightning_sigkilled_mid_epoch_resumes_bit_exactly(tmp_path: Path) -> None:
    pytest.importorskip("lightning.pytorch")
    pytest.importorskip("torchdata.stateful_dataloader")
    script = tmp_path / "fit.py"
    script.write_text(SCRIPT)
    ref = reference(tmp_path, script, "stateful")
    folder = tmp_path / "victim"
    # Interval 0: a checkpoint at every step (at most one write in flight), so a kill at
    # step 7 resumes mid-epoch from Lightning's restored loop. The second run keeps to
    # segment ends (interval 3600): killed at step 30 it resumes at the segment's end 24
    # with the loader's finished pass restored; killed at step 41, mid-epoch again.
    # The kill at 30 waits for the write of 24 to land: the test is where checkpoints are
    # taken, not how fast a loaded machine writes them.
    kills = [(7, "0"), (30, "3600"), (41, "0")]
    runs = []
    for kill, every in kills:
        killed = run(script, str(folder), every, "stateful", kill_at=kill, settled=kill == 30)
        assert killed.returncode == -9, killed.stderr[-2000:]
        assert f"step {kill}\n" in killed.stdout and f"step {kill + 1}\n" not in killed.stdout
        runs.append(killed)
    resumed = run(script, str(folder), "0", "stateful")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    starts = [start_of(r) for r in [*runs, resumed]]
    # From the last checkpoint: mid-epoch, at the killed step or the one before it (whose
    # write was the one in flight); at the epoch end after the run without time-rule ones.
    assert starts[0] == 0
    assert 6 <= starts[1] <= 7 and starts[2] == 24 and 40 <= starts[3] <= 41, starts
    assert metric_rows(folder) == metric_rows(ref)
    assert same_weights(folder, ref)


@pytest.mark.slow
def test_lightning_over_a_plain_loader_resumes_at_the_epoch_end(tmp_path: Path) -> None:
    """A plain DataLoader cannot say where it is: checkpoints stay at epoch ends, whatever
    the interval, and a run killed mid-epoch resumes from the last one, still exactly."""
    pytest.importorskip("lightning.pytorch")
    script = tmp_path / "fit.py"
    script.write_text(SCRIPT)
    ref = reference(tmp_path, script, "plain")
    folder = tmp_path / "victim"
    killed = run(script, str(folder), "0", "plain", kill_at=17, settled=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = run(script, str(folder), "0", "plain")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert start_of(resumed) == 12  # the epoch end before the kill, not step 16 or 17
    assert metric_rows(folder) == metric_rows(ref)
    assert same_weights(folder, ref)


@pytest.mark.slow
def test_the_lightning_example_runs_as_written(tmp_path: Path) -> None:
    pytest.importorskip("lightning.pytorch")
    pytest.importorskip("torchdata.stateful_dataloader")
    folder = tmp_path / "example"
    done = run(EXAMPLES / "lightning_stateful.py", str(folder))
    assert done.returncode == 0, done.stderr[-2000:]
    rows = metric_rows(folder)[1:]
    assert [r[:4] for r in rows] == [
        [str(e), str(50 * e), str(int(e > 3)), "0.01" if e <= 3 else "0.003"] for e in range(1, 7)
    ]
