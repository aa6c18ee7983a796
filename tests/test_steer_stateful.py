"""A user's own loop with `Steer(loader=...)`: virtual epochs over a stream, mid-epoch
checkpoints with a stateful loader, exact resume after SIGKILLs, and rollback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lrconsole.client import ConnectionLost, RunnerClient
from lrconsole.steerdata import LoopData
from tests.conftest import EXAMPLES, ROOT, metric_rows

# A real StatefulDataLoader over a shuffled map-style dataset, with dropout (torch's RNG)
# in the model: resuming must give back the loader's place and every RNG. `KILL_AT`: the
# process SIGKILLs itself right after that global step, as an external kill would.
STATEFUL = """
import os, signal, sys, torch
from torch import nn
from torch.utils.data import TensorDataset
from torchdata.stateful_dataloader import StatefulDataLoader
import lrconsole
torch.manual_seed(0)
x = torch.randn(480, 6)
y = x @ torch.randn(6, 1) + 0.1 * torch.randn(480, 1)
loader = StatefulDataLoader(TensorDataset(x, y), batch_size=int(sys.argv[3]), shuffle=True)
model = nn.Sequential(nn.Linear(6, 16), nn.Dropout(0.2), nn.Tanh(), nn.Linear(16, 1))
opt = torch.optim.AdamW(model.parameters(), lr=0.01)
S = lrconsole.Segment
segments = [S(0.01, epochs=2), S(0.003, epochs=int(sys.argv[4]))]
steer = lrconsole.Steer(opt, sys.argv[1], model=model, loader=loader, steps_per_epoch=12,
                        schedule=lrconsole.Schedule(segments), checkpoint_every=float(sys.argv[2]))
kill_at = int(os.environ.get("KILL_AT", "-1"))
print("start", steer.engine.global_step, flush=True)
for epoch in steer.epochs():
    model.train()
    for xb, yb in steer.batches():
        loss = nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad(); loss.backward(); opt.step()
        steer.step(loss)
        print("step", steer.engine.global_step, flush=True)
        if steer.engine.global_step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    model.eval()
    with torch.no_grad():
        steer.epoch_end({"train_loss": nn.functional.mse_loss(model(x), y).item()})
torch.save(model.state_dict(), os.path.join(sys.argv[1], "final.pt"))
"""


def run(script: Path, *args: str, kill_at: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if kill_at is not None:
        env["KILL_AT"] = str(kill_at)
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )


def same_weights(a: Path, b: Path) -> bool:
    wa = torch.load(a / "final.pt", weights_only=True)
    wb = torch.load(b / "final.pt", weights_only=True)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
def test_sigkilled_mid_epoch_three_times_resumes_bit_exactly(tmp_path: Path) -> None:
    pytest.importorskip("torchdata.stateful_dataloader")
    script = tmp_path / "stateful.py"
    script.write_text(STATEFUL)
    reference = tmp_path / "ref"
    # 40 a batch: one pass of the data is one 12-step epoch; 4 epochs in all.
    done = run(script, str(reference), "3600", "40", "2")  # epoch-end checkpoints only
    assert done.returncode == 0, done.stderr[-2000:]
    folder = tmp_path / "victim"
    kills = [7, 22, 41]  # steps 7, 10 and 5 of epochs 1, 2 and 4
    runs = []
    for kill in kills:
        # Interval 0: a checkpoint at every step (at most one write in flight).
        killed = run(script, str(folder), "0", "40", "2", kill_at=kill)
        assert killed.returncode == -9, killed.stderr[-2000:]
        assert f"step {kill}\n" in killed.stdout and f"step {kill + 1}\n" not in killed.stdout
        runs.append(killed)
    resumed = run(script, str(folder), "0", "40", "2")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    runs.append(resumed)
    starts = [int(r.stdout.split()[1]) for r in runs]
    assert starts[0] == 0
    for kill, start in zip(kills, starts[1:], strict=True):
        # From the last checkpoint: mid-epoch, at the killed step or the one before it
        # (whose write was the one in flight).
        assert kill - 1 <= start <= kill and start % 12, (kills, starts)
    assert metric_rows(folder) == metric_rows(reference)
    assert same_weights(folder, reference)


async def epoch_event(client: RunnerClient, at_least: int) -> int:
    while True:
        event = await client.wait_for("epoch", timeout=60)
        if event.data["global_epoch"] >= at_least:
            return int(event.data["global_step"])


@pytest.mark.slow
async def test_rollback_to_a_checkpoint_inside_the_loaders_pass(tmp_path: Path) -> None:
    """Epochs of 10 steps over a 30-batch pass: epoch 2 ends 20 batches into the first
    pass. Rolled back there from a pause in epoch 5 or later, the run takes the loader's
    batches from that place, with the RNG of then: it ends as an unbroken run."""
    pytest.importorskip("torchdata.stateful_dataloader")
    script = tmp_path / "stateful.py"
    script.write_text(STATEFUL.replace("steps_per_epoch=12", "steps_per_epoch=10"))
    reference = tmp_path / "ref"
    # 16 a batch: 30 batches a pass, epochs of 10 steps; 2 + 2 epochs.
    done = run(script, str(reference), "3600", "16", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    folder = tmp_path / "steered"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(folder), "3600", "16", "100000"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sock = folder / "control.sock"
        deadline = time.monotonic() + 60
        while not sock.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        client = await RunnerClient.connect(sock)
        await epoch_event(client, 4)
        await client.call("pause")
        await client.wait_for("paused", timeout=30)
        # Epoch 2 is a segment's end: it was checkpointed (the loader 20 batches into a pass).
        assert 2 in (await client.call("rollback_points"))["epochs"]
        back = await client.call("rollback", epoch=2, timeout=30)
        assert back["global_step"] == 20
        await client.wait_for("rollback", timeout=30)  # the epoch events before it are stale
        await client.call("queue", segments=[{"epochs": 2, "lr": 0.003}])
        await epoch_event(client, 4)
        await client.call("shutdown")
        with pytest.raises(ConnectionLost):
            await client.wait_for("never", timeout=30)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert metric_rows(folder) == metric_rows(reference)
    assert same_weights(folder, reference)


@pytest.mark.slow
def test_steps_per_epoch_over_an_iterable_dataset(tmp_path: Path) -> None:
    """examples/own_loop_stream.py as written: epochs of 25 steps over an endless stream,
    the stream going on across epochs (with torchdata or without)."""
    folder = tmp_path / "stream"
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "own_loop_stream.py"), str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = metric_rows(folder)
    assert [r[:4] for r in rows[1:]] == [
        [str(e), str(25 * e), str(int(e > 3)), "0.003" if e <= 3 else "0.001"] for e in range(1, 7)
    ]
    reads = [int(line.split("samples read ")[1]) for line in done.stdout.splitlines()]
    assert reads == [25 * 32 * e for e in range(1, 7)]  # never restarted, never skipped
    losses = [float(r[4]) for r in rows[1:]]
    assert losses[-1] < losses[0]


def test_a_plain_loader_restarts_its_pass_and_draws_as_a_for_loop(tmp_path: Path) -> None:
    """Over a plain DataLoader, steer.batches() draws the batches (and torch's RNG) exactly
    as `for xb in loader` does: it changes nothing for a loop that used to iterate."""
    data = TensorDataset(torch.arange(20.0))

    def epochs_by_hand() -> list[list[float]]:
        torch.manual_seed(3)
        loader = DataLoader(data, batch_size=4, shuffle=True)
        return [[float(v) for (b,) in loader for v in b] for _ in range(3)]

    torch.manual_seed(3)
    loop = LoopData(DataLoader(data, batch_size=4, shuffle=True), stateful=False)
    left = [0]
    got = []
    for _ in range(3):
        left[0] = 5
        epoch = []
        for (b,) in loop.batches(lambda: left[0]):
            epoch += [float(v) for v in b]
            left[0] -= 1
        got.append(epoch)
    assert got == epochs_by_hand()


@pytest.mark.filterwarnings("ignore:'set_vital' is deprecated")  # torchdata 0.11 on torch 2.13
def test_a_stateful_loader_saved_at_a_pass_end_goes_on_with_the_next_pass() -> None:
    """A checkpoint right after a pass's last batch restores as an empty pass (torchdata's
    way): the next batches are the next pass's, and torch's RNG is drawn as in one run."""
    sdl = pytest.importorskip("torchdata.stateful_dataloader")
    data = TensorDataset(torch.arange(12.0))

    def loader() -> object:
        return sdl.StatefulDataLoader(data, batch_size=4, shuffle=True)

    torch.manual_seed(5)
    whole = LoopData(loader(), stateful=True)  # type: ignore[arg-type]
    steps = [0]
    taken = []
    for (b,) in whole.batches(lambda: 3 - steps[0]):
        taken.append(b.tolist())
        steps[0] += 1
    saved = whole.state_dict()
    rng = torch.get_rng_state()
    steps[0] = 0
    unbroken = []
    for (b,) in whole.batches(lambda: 3 - steps[0]):
        unbroken.append(b.tolist())
        steps[0] += 1
    after = torch.get_rng_state()

    torch.manual_seed(99)
    again = LoopData(loader(), stateful=True)  # type: ignore[arg-type]
    again.load(saved)
    torch.set_rng_state(rng)
    steps[0] = 0
    resumed = []
    for (b,) in again.batches(lambda: 3 - steps[0]):
        resumed.append(b.tolist())
        steps[0] += 1
    assert resumed == unbroken and resumed != taken
    assert torch.equal(torch.get_rng_state(), after)


def test_a_loop_that_iterates_the_loader_itself_is_told_to_use_batches(tmp_path: Path) -> None:
    """With `loader=` Steer must hand the batches out (it moves the loader on a resume or
    a rollback): a loop that iterates the loader directly gets one clear error."""
    from torch import nn

    from lrconsole import Steer

    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(TensorDataset(torch.randn(8, 2), torch.randn(8, 1)), batch_size=4)
    steer = Steer(
        optimizer,
        tmp_path / "s",
        model=model,
        loader=loader,
        steps_per_epoch=2,
        epochs=1,
        serve=False,
    )
    with pytest.raises(ValueError, match=r"steer\.batches\(\)"):
        for _ in steer.epochs():
            for xb, yb in loader:
                steer.step(nn.functional.mse_loss(model(xb), yb).detach())
    assert steer.trainer.closed
