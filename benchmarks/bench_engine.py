"""Engine (TensorBoard + checkpoints on) against a bare PyTorch loop on the lesson task.

    python benchmarks/bench_engine.py [--epochs 40] [--rounds 15] [--cycles 400]
                                      [--step-epochs 600] [--hidden WIDTH]

Both sides train the same math in this one process, interleaved round by round so that
machine noise hits both alike; the engine runs twice a round, with gradient diagnostics
(the per-step gradient norm and its guard) on and off. Prints per-epoch medians and their
ratios (targets: <= 1.05, and <= 1.03 with diagnostics on against off), each the median
of the rounds' ratios (a round's three sides run back to back), then the cost of
one resume: from process start to the first trained batch.

This VM's noise swings over seconds, so two finer pairings follow, whose bare side trains
the engine's own model and optimizer. Lockstep: one engine run whose epochs alternate
diagnostics on and off, with a bare epoch after each. Stepwise: one engine run with a bare
step run before every step (from the step hook) and diagnostics on every other step; each
step is set against its neighbours, a millisecond away (the hot path only: an epoch's
first and last steps are left out). `--hidden WIDTH` trains bench_scale's MLP (64 ->
WIDTH -> WIDTH -> 8, Adam; 3200 is about 10M parameters) instead of the lesson's model,
and skips the resume.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.plan.segment import Segment
from lrconsole.core.tasks.lesson import make_lesson_task
from lrconsole.core.tasks.optim import build_optimizer
from lrconsole.core.tasks.task import Task
from lrconsole.core.train.rng import seed_everything
from lrconsole.core.train.trainer import Trainer


def make_task(hidden: int | None) -> Task:
    seed_everything(0)
    if hidden is None:
        task = make_lesson_task()
    else:
        from bench_scale import make_task as make_mlp

        task = make_mlp(hidden, layers=1, steps=16)
    seed_everything(0)
    return task


Times = list[float]  # seconds per epoch
StepTimes = list[tuple[int, float, float]]  # (global step, engine, bare) seconds


def now() -> float:
    return time.perf_counter()


def spans(marks: Times) -> Times:
    return [b - a for a, b in zip(marks, marks[1:], strict=False)]


def bare_epoch_times(epochs: int, lr: float, hidden: int | None) -> Times:
    """The lesson's fit_rec: SGD, MSE, then full-set train and test MSE in eval mode."""
    task = make_task(hidden)
    optimizer = build_optimizer(task.optimizer_spec(), task.model.parameters(), lr)
    marks = [now()]
    for _ in range(epochs):
        bare_epochs(task, optimizer, 1)
        marks.append(now())
    return spans(marks)


def bare_epochs(task: Task, optimizer: torch.optim.Optimizer, epochs: int) -> None:
    model, loss_fn = task.model, task.loss
    eval_batches = [batches[0] for batches in task.eval_sets.values()]  # type: ignore[index]
    for _ in range(epochs):
        model.train()
        for x, y in task.train_loader:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            rec = [float(loss_fn(model(x), y)) for x, y in eval_batches]
        model.train()
        assert rec


def engine_epoch_times(
    folder: Path, epochs: int, lr: float, hidden: int | None, grad_norm: bool
) -> Times:
    from lrconsole.core.train import events as ev

    trainer = Trainer.open(
        folder,
        schedule=Schedule([Segment(lr, epochs=epochs)]),
        task=make_task(hidden),
        grad_norm=grad_norm,
    )
    marks = [now()]  # EpochEnd is emitted on the training thread
    trainer.engine.on(ev.EpochEnd, lambda e: marks.append(now()))
    trainer.engine.run()
    trainer.close()
    return spans(marks)


# SAME_MODEL: the bare side of the paired runs trains the engine's own model and optimizer
# (the math of a step does not depend on the weights). Two copies of a model sit in
# different memory: at 1M parameters that alone moved the ratio of two identical loops
# between 1.03 and 1.26 from one run to the next.


def lockstep_epoch_times(folder: Path, cycles: int, lr: float, hidden: int | None) -> Times:
    """One engine run whose epochs alternate diagnostics on and off, with one bare epoch
    run after each (from the engine's last EpochEnd handler): every epoch has neighbours
    of the other kinds a few milliseconds away, so the machine's slow swings (seconds
    long here) hit them alike. Per cycle: (engine on, bare, engine off, bare)."""
    from lrconsole.core.train import events as ev

    trainer = Trainer.open(
        folder,
        schedule=Schedule([Segment(lr, epochs=2 * cycles + 2)]),
        task=make_task(hidden),
        grad_norm=True,
    )
    engine = trainer.engine
    bare, optimizer = engine.task, engine.optimizer  # one copy of the model: see SAME_MODEL
    marks: list[float] = []

    def between_epochs(event: ev.EpochEnd) -> None:
        marks.append(now())  # the engine epoch ends here (its handlers ran before this one)
        bare_epochs(bare, optimizer, 1)
        engine.grads.set_enabled(event.global_epoch % 2 == 0)  # on, off, on, ...
        marks.append(now())

    engine.on(ev.EpochEnd, between_epochs)
    marks.append(now())
    engine.run()
    trainer.close()
    return spans(marks)[4:]  # the first cycle warms up


def lockstep_report(seq: Times) -> None:
    """`seq`: engine on, bare, engine off, bare, ... epoch times. Each engine epoch is
    set against the mean of the bare epochs on either side of it, and each "on" epoch
    against the mean of the "off" epochs on either side of it."""
    inner = range(4, len(seq) - 4, 2)  # engine epochs with both neighbours of each kind
    vs_bare = {j: seq[j] / ((seq[j - 1] + seq[j + 1]) / 2) for j in inner}
    on_bare = [r for j, r in vs_bare.items() if j % 4 == 0]
    off_bare = [r for j, r in vs_bare.items() if j % 4 == 2]
    on_off = [seq[j] / ((seq[j - 2] + seq[j + 2]) / 2) for j in inner if j % 4 == 0]
    print(f"lockstep: {len(seq) // 4} cycles of (engine on, bare, engine off, bare) epochs")
    for name, ratios in (
        ("engine/bare, diagnostics on ", on_bare),
        ("engine/bare, diagnostics off", off_bare),
        ("diagnostics on/off          ", on_off),
    ):
        low, mid, high = statistics.quantiles(ratios, n=4)
        print(f"  {name}  median {mid:.3f}  (quartiles {low:.3f} to {high:.3f})")


def stepwise_times(folder: Path, epochs: int, lr: float, hidden: int | None) -> StepTimes:
    """One engine run in which every step is preceded by one bare step (from the engine's
    step hook, on a second copy of the task) and diagnostics are on for even steps only:
    each step sits between neighbours of the other kinds a millisecond away. Returns
    (global step, engine step, the bare step before it) for the steps inside an epoch;
    an epoch's first and last steps carry its start and its end, and are left out."""
    trainer = Trainer.open(
        folder,
        schedule=Schedule([Segment(lr, epochs=epochs)]),
        task=make_task(hidden),
        grad_norm=True,
    )
    engine = trainer.engine
    stats, spe = engine.grads.stats, engine.steps_per_epoch
    bare, optimizer = engine.task, engine.optimizer  # one copy of the model: see SAME_MODEL
    batches = iter(bare.train_loader)
    bare_took: dict[int, float] = {}
    began: dict[int, float] = {}  # when each engine step's own work began
    ended: dict[int, float] = {}  # when the step before it ended (its hook was called)

    def before_step(step: int, step_lr: float) -> None:
        nonlocal batches
        ended[step] = now()
        try:
            inputs, targets = next(batches)
        except StopIteration:  # a new pass: its start is timed, and left out below
            batches = iter(bare.train_loader)
            inputs, targets = next(batches)
        for group in optimizer.param_groups:
            group["lr"] = step_lr
        loss = bare.loss(bare.model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        engine.grads.stats = stats if step % 2 == 0 else None  # this step's diagnostics
        began[step] = now()
        bare_took[step] = began[step] - ended[step]

    engine.hooks.step_begin = before_step
    engine.run()
    trainer.close()
    inside = [k for k in began if k % spe not in (0, spe - 1) and k + 1 in ended and k > spe]
    return [(k, ended[k + 1] - began[k], bare_took[k]) for k in inside]


def stepwise_report(steps: StepTimes) -> None:
    """Each engine step against the mean of the bare steps just before and after it; each
    step with diagnostics against the mean of the steps without them on either side."""
    took = {k: (engine, bare) for k, engine, bare in steps}
    vs_bare: dict[bool, list[float]] = {True: [], False: []}
    on_off = []
    for k, (engine, bare) in took.items():
        if k + 1 in took:
            vs_bare[k % 2 == 0].append(engine / ((bare + took[k + 1][1]) / 2))
        if k % 2 == 0 and k - 1 in took and k + 1 in took:
            on_off.append(engine / ((took[k - 1][0] + took[k + 1][0]) / 2))
    median = lambda xs: statistics.median(xs) * 1e6  # noqa: E731
    print(
        f"stepwise: {len(steps)} steps inside epochs; median step "
        f"bare {median([b for _, _, b in steps]):.1f} us, "
        f"engine {median([e for k, e, _ in steps if k % 2]):.1f} us without diagnostics, "
        f"{median([e for k, e, _ in steps if k % 2 == 0]):.1f} us with"
    )
    for name, ratios in (
        ("engine/bare, diagnostics on ", vs_bare[True]),
        ("engine/bare, diagnostics off", vs_bare[False]),
        ("diagnostics on/off          ", on_off),
    ):
        low, mid, high = statistics.quantiles(ratios, n=4)
        print(f"  {name}  median {mid:.3f}  (quartiles {low:.3f} to {high:.3f})")


RESUME_PROBE = """
import sys, time
from pathlib import Path
from lrconsole.core.train import events as ev
from lrconsole.core.plan.segment import Segment
from lrconsole.core.train.trainer import Trainer
trainer = Trainer.open(Path(sys.argv[1]))
trainer.engine.queue([Segment(0.01, epochs=1)])
def first(e):
    print(time.time(), flush=True)
    trainer.engine.request_exit("stop")
trainer.engine.on(ev.BatchEnd, first)
trainer.engine.run()
trainer.close()
"""


def resume_seconds(folder: Path) -> float:
    start = time.time()
    out = subprocess.run(
        [sys.executable, "-c", RESUME_PROBE, str(folder)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.split()[0]) - start


def report(rounds: list[dict[str, float]]) -> None:
    """Medians over rounds of each round's median epoch, and of each round's ratios."""
    bare, on, off = (statistics.median(r[k] for r in rounds) for k in ("bare", "on", "off"))
    on_bare = statistics.median(r["on"] / r["bare"] for r in rounds)
    off_bare = statistics.median(r["off"] / r["bare"] for r in rounds)
    on_off = [r["on"] / r["off"] for r in rounds]
    print("median epoch over rounds; each ratio is the median of the rounds' ratios")
    print(f"bare loop  median epoch {bare * 1e3:.3f} ms")
    print(f"engine     median epoch {on * 1e3:.3f} ms  (TensorBoard + checkpoints + grad norm)")
    print(f"engine     median epoch {off * 1e3:.3f} ms  (--no-grad-norm)")
    print(f"ratio engine/bare: {on_bare:.3f} diagnostics on, {off_bare:.3f} off (target <= 1.05)")
    print(
        f"ratio diagnostics on/off: {statistics.median(on_off):.3f}  (target <= 1.03; "
        f"rounds {min(on_off):.3f} to {max(on_off):.3f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--hidden", type=int, default=None, help="an MLP this wide instead")
    parser.add_argument(
        "--cycles", type=int, default=400, help="lockstep cycles of 4 epochs (0: skip)"
    )
    parser.add_argument(
        "--step-epochs", type=int, default=600, help="epochs of the stepwise run (0: skip)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    lr = 0.03 if args.hidden is None else 1e-4
    # Per round, each side's median epoch; the three sides of a round run back to back,
    # so a round's ratios are paired against the machine's noise of that moment.
    walls: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            wall = {}
            # Each side's warm-up epoch is dropped; the order turns each round.
            for kind in ("bare", "on", "off")[i % 3 :] + ("bare", "on", "off")[: i % 3]:
                if kind == "bare":
                    times = bare_epoch_times(args.epochs, lr, args.hidden)
                else:
                    folder = Path(tmp) / f"{kind}{i}"
                    times = engine_epoch_times(folder, args.epochs, lr, args.hidden, kind == "on")
                wall[kind] = statistics.median(times[1:])
            walls.append(wall)
        resumes = []
        if args.hidden is None:
            resumes = [resume_seconds(Path(tmp) / f"on{i}") for i in range(min(args.rounds, 5))]
    size = sum(p.numel() for p in make_task(args.hidden).model.parameters())
    name = "lesson task" if args.hidden is None else f"MLP width {args.hidden}"
    print(f"{name} ({size:,} parameters), {args.rounds} rounds x {args.epochs} epochs, threads 1")
    if walls:
        report(walls)
    if args.cycles:
        with tempfile.TemporaryDirectory() as tmp:
            lockstep_report(lockstep_epoch_times(Path(tmp) / "s", args.cycles, lr, args.hidden))
    if args.step_epochs:
        with tempfile.TemporaryDirectory() as tmp:
            stepwise_report(stepwise_times(Path(tmp) / "s", args.step_epochs, lr, args.hidden))
    if resumes:
        print(
            f"resume: process start to first trained batch, median of {len(resumes)}: "
            f"{statistics.median(resumes):.2f} s"
        )


if __name__ == "__main__":
    main()
