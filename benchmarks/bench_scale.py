"""Real model sizes: what checkpointing costs the engine, and the runner's memory over time.

    python benchmarks/bench_scale.py [--sizes 1m,17m,100m] [--rounds 2] [--sync]
                                     [--rss-epochs 5000] [--threads N] [--writer-nice N]

The default run takes about 4 minutes on a shared 2-core box; the issue's RSS figure is
`--sizes '' --rss-epochs 10000` (about 2.5 minutes more).

Per size, an MLP with Adam (about 1M, 17M and 100M parameters) on synthetic data is
trained by the engine (a real session: checkpoints, metrics, manifest; `--checkpoint-every
2`) and by a bare PyTorch loop doing the same math, epoch by epoch: the engine's last
epoch-end handler runs one bare epoch of the engine's own model and optimizer, after
waiting for a checkpoint write still going (charged to the engine). Printed per size: the
checkpoint size, the training thread's blocking time per checkpoint, checkpoints taken,
the time a synchronous `torch.save` + fsync of the same state takes, and the engine/bare
ratio of per-epoch time (the median of each engine epoch's ratio to the bare epoch after
it; the ratio of the means, which counts the epochs that checkpoint, beside it).
`--rounds` multiplies the epochs. `--sync` runs the synchronous checkpointer of before
(the "before" figures). The 100M model trains fewer steps per epoch and fewer epochs on a
CPU: the output says so.

Then a lesson session trains `--rss-epochs` epochs in a child process: its RSS after 100
epochs and at the end. Targets: ratio <= 1.03 at every size; blocking per checkpoint <=
5% of the synchronous save at 100M; RSS flat (within 20 MB).
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from lrconsole.core.plan.schedule import Schedule  # noqa: E402
from lrconsole.core.plan.segment import Segment  # noqa: E402
from lrconsole.core.session import writer  # noqa: E402
from lrconsole.core.session.store import save_checkpoint  # noqa: E402
from lrconsole.core.tasks.task import Task  # noqa: E402
from lrconsole.core.train import events as ev  # noqa: E402
from lrconsole.core.train.trainer import Trainer  # noqa: E402

# name: (width, hidden layers, steps per epoch, epochs per --rounds)
SIZES = {
    "1m": (1000, 1, 16, 20),
    "17m": (2900, 2, 6, 8),
    "100m": (5000, 4, 2, 10),
}
IN, OUT, BATCH = 64, 8, 32


def make_task(width: int = 1000, layers: int = 1, steps: int = 16) -> Task:
    """An MLP of `layers` hidden width x width layers, Adam, on fixed random data."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(steps * BATCH, IN, generator=g)
    y = torch.randn(steps * BATCH, OUT, generator=g)
    parts: list[nn.Module] = [nn.Linear(IN, width), nn.ReLU()]
    for _ in range(layers):
        parts += [nn.Linear(width, width), nn.ReLU()]
    parts.append(nn.Linear(width, OUT))
    return Task(
        model=nn.Sequential(*parts),
        train_loader=DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True),
        eval_sets={"test": [(x[:BATCH], y[:BATCH])]},
        loss=nn.functional.mse_loss,
        optimizer="adam",
    )


def bare_epochs(task: Task, optimizer: torch.optim.Optimizer, epochs: int) -> list[float]:
    """The same math without lrconsole: the per-epoch wall times."""
    times = []
    for _ in range(epochs):
        began = time.perf_counter()
        task.model.train()
        for inputs, targets in task.train_loader:
            for group in optimizer.param_groups:
                group["lr"] = 1e-4
            loss = task.loss(task.model(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        task.model.eval()
        with torch.no_grad():
            for inputs, targets in task.eval_sets["test"]:
                float(task.loss(task.model(inputs), targets))
        times.append(time.perf_counter() - began)
    return times


def bench_size(name: str, rounds: int, sync: bool, folder: Path) -> dict[str, Any]:
    width, layers, steps, per_round = SIZES[name]
    torch.manual_seed(0)
    task = make_task(width, layers, steps)
    params = sum(p.numel() for p in task.model.parameters())
    epochs = rounds * per_round
    plan = Schedule([Segment(1e-4, epochs=epochs)])
    trainer = Trainer.open(folder, schedule=plan, task=task, tensorboard=False)
    checkpointer = trainer.checkpointer
    assert checkpointer is not None
    checkpointer.background = not sync
    engine = trainer.engine
    engine_times: list[float] = []
    bare_times: list[float] = []
    marks = [0.0]
    saves: list[float] = []

    def on_epoch(event: ev.EpochEnd) -> None:
        # The engine's epoch ends here: its own handlers (a checkpoint's among them) ran
        # before this one. A write still going would slow the bare epoch: the engine
        # waits for it and this epoch is charged with the wait (an upper bound on its
        # cost: the write no longer overlaps the engine's next epoch). Then one bare
        # epoch, so that each engine epoch has a bare one a moment away. It trains the
        # engine's own model and optimizer: two copies of a model sit in different
        # memory, and at 1M parameters that alone moved the ratio of two identical
        # loops between 1.03 and 1.26 from one run to the next.
        checkpointer.writer.wait()
        engine_times.append(time.perf_counter() - marks[0])
        bare_times.extend(bare_epochs(task, engine.optimizer, 1))
        marks[0] = time.perf_counter()

    blocked = [0.0]

    def on_saved(event: ev.CheckpointSaved) -> None:
        saves.append(checkpointer.blocked_s - blocked[0])
        blocked[0] = checkpointer.blocked_s

    engine.on(ev.EpochEnd, on_epoch)
    engine.on(ev.CheckpointSaved, on_saved)
    marks[0] = time.perf_counter()
    engine.run()
    trainer.close()
    taken = len(saves)
    stats = trainer.manifest.checkpointing or {}
    # What one synchronous torch.save + fsync of this state costs, measured once.
    began = time.perf_counter()
    save_checkpoint(folder / "sync-probe", engine.state_dict())
    sync_s = time.perf_counter() - began
    del trainer
    gc.collect()
    shutil.rmtree(folder)
    # Each engine epoch against the bare epoch right after it (the first pair warms up).
    ratio = statistics.median(e / b for e, b in zip(engine_times[1:], bare_times[1:], strict=True))
    mean_ratio = statistics.fmean(engine_times) / statistics.fmean(bare_times)
    return {
        "name": name,
        "params": params,
        "steps": steps,
        "epochs": epochs,
        "bytes": stats.get("bytes", 0),
        "blocking": statistics.median(saves) if saves else float("nan"),
        "taken": taken,
        "sync_s": sync_s,
        "engine": statistics.median(engine_times),
        "bare": statistics.median(bare_times),
        "ratio": ratio,
        "mean_ratio": mean_ratio,
        "share": stats.get("share", float("nan")),
    }


RSS_CHILD = """
import sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.plan.segment import Segment
from lrconsole.core.train import events as ev
from lrconsole.core.train.trainer import Trainer

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
epochs = {epochs}
trainer = Trainer.open(Path({folder!r}), schedule=Schedule([Segment(0.01, epochs=epochs)]),
                       tensorboard=False)
seen = {{}}
trainer.engine.on(ev.BatchEnd, lambda e: None)  # the runner listens to batches too
def on_epoch(e):
    if e.global_epoch in (100, epochs):
        seen[e.global_epoch] = rss_mb()
trainer.engine.on(ev.EpochEnd, on_epoch)
began = time.perf_counter()
trainer.engine.run()
trainer.close()
print(seen[100], seen[epochs], time.perf_counter() - began)
"""


def bench_rss(epochs: int, folder: Path) -> tuple[float, float, float]:
    root = str(Path(__file__).resolve().parent.parent)
    code = RSS_CHILD.format(root=root, epochs=epochs, folder=str(folder))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    at_100, at_end, seconds = (float(x) for x in out.split())
    return at_100, at_end, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1m,17m,100m")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sync", action="store_true", help="the synchronous checkpointer")
    parser.add_argument("--rss-epochs", type=int, default=5000, help="0: skip")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: the cores)")
    parser.add_argument(
        "--writer-nice",
        type=int,
        default=writer.WRITER_NICE,
        help="niceness of a big checkpoint's write (0: the training thread's priority)",
    )
    args = parser.parse_args()
    writer.WRITER_NICE = args.writer_nice
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 2)))
    mode = "synchronous (before)" if args.sync else "background (after)"
    print(
        f"checkpoints: {mode}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"writer niceness {args.writer_nice} (states over 256 MB)"
    )
    print(
        f"{'size':>5} {'params':>7} {'steps':>5} {'epochs':>6} {'ckpt MB':>8} "
        f"{'block ms':>8} {'taken':>5} {'sync save s':>11} {'engine s':>8} {'bare s':>7} "
        f"{'ratio':>6} {'mean':>6} {'share':>6}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name in filter(None, args.sizes.split(",")):
            r = bench_size(name, args.rounds, args.sync, Path(tmp) / name)
            print(
                f"{r['name']:>5} {r['params'] / 1e6:6.1f}M {r['steps']:>5} {r['epochs']:>6} "
                f"{r['bytes'] / 1e6:8.1f} {r['blocking'] * 1e3:8.1f} {r['taken']:>5} "
                f"{r['sync_s']:11.2f} {r['engine']:8.3f} {r['bare']:7.3f} "
                f"{r['ratio']:6.3f} {r['mean_ratio']:6.3f} {r['share'] * 100:5.1f}%",
                flush=True,
            )
            if name == "100m":
                print(
                    "  (100m: 2 steps per epoch on a CPU, so that the run stays short; a "
                    "background write of 5 s spans epochs: the mean counts them)"
                )
            if r["bytes"] and name == "100m":
                print(f"  blocking / sync save at 100m: {r['blocking'] / r['sync_s']:.1%}")
        if args.rss_epochs:
            at_100, at_end, seconds = bench_rss(args.rss_epochs, Path(tmp) / "rss")
            print(
                f"lesson RSS: {at_100:.1f} MB after 100 epochs, {at_end:.1f} MB after "
                f"{args.rss_epochs} ({at_end - at_100:+.1f} MB; {seconds:.0f} s)"
            )
            if args.rss_epochs < 10000:
                print("  (the issue's figure: --sizes '' --rss-epochs 10000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
