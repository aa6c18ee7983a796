"""Optimizer settings per segment (momentum, betas, weight_decay, clip_grad_norm) and notes:
what a segment sets is what every param group holds at every step, "set now" splits the
segment, export then replay is bit for bit, and bad values are one line, exit 2."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lrconsole.client import CommandFailed, RunnerClient
from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.plan.segment import OptimizerSpec, Segment
from lrconsole.core.plan.settings import effective
from lrconsole.core.train import events as ev
from lrconsole.core.train.trainer import Trainer
from lrconsole.runner.launch import ensure_runner
from tests.conftest import lrconsole, metric_rows
from tests.test_steering import cli, finish, pause_mid_epoch, replay_matches, wait_state

SPE = 14  # the lesson task's steps per epoch

# (setting, optimizer, the value a segment sets, the one set now, the optimizer's own)
CASES = [
    ("momentum", "sgd", 0.5, 0.2, 0.0),
    ("betas", "adam", (0.8, 0.9), (0.5, 0.99), (0.9, 0.999)),
    ("weight_decay", "adamw", 0.05, 0.2, 0.01),
    ("clip_grad_norm", "sgd", 1.0, 0.5, None),
]


def open_trainer(folder: Path, segments: list[Segment], optimizer: str) -> Trainer:
    schedule = Schedule(segments, optimizer=OptimizerSpec(optimizer))
    return Trainer.open(folder, schedule=schedule, tensorboard=False)


def wire(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize(("name", "optimizer", "value", "now", "own"), CASES)
def test_every_step_uses_the_planned_setting(
    tmp_path: Path, name: str, optimizer: str, value: Any, now: Any, own: Any
) -> None:
    """Unset, then set by segment 2, inherited by segment 3 and set now inside it, then
    turned back: the value the optimizer steps with at every step is the planned one."""
    back = None if name == "clip_grad_norm" else own
    segments = [
        Segment(0.03, epochs=1),
        Segment(0.02, epochs=1, **{name: value}),
        Segment(0.01, epochs=2),
        Segment(0.01, epochs=1, **{name: back}),
    ]
    if back is None:  # clipping off is a segment's `clip_grad_norm: null`
        segments[3] = Segment.from_dict({"epochs": 1, "lr": 0.01, "clip_grad_norm": None})
    trainer = open_trainer(tmp_path / "s", segments, optimizer)
    engine = trainer.engine
    seen: list[Any] = []

    def record(opt: Any, args: Any, kwargs: Any) -> None:
        groups = opt.param_groups
        if name == "clip_grad_norm":
            seen.append(engine.clip)
        else:
            assert all(g[name] == groups[0][name] for g in groups)
            seen.append(groups[0][name])

    engine.optimizer.register_step_pre_hook(record)
    at: list[int] = []

    def on_batch(event: ev.BatchEnd) -> None:
        if event.global_step == 3 * SPE + 3:
            at.append(engine.set_settings({name: now}))

    engine.on(ev.BatchEnd, on_batch)
    assert engine.run() == "done"
    trainer.close()
    step = at[0]
    assert 3 * SPE < step < 4 * SPE
    expected = [own] * SPE + [value] * (step - SPE) + [now] * (4 * SPE - step) + [back] * SPE
    assert [wire(v) for v in seen] == [wire(v) for v in expected]
    # The split is in the plan: the exported path has it, and only what changes.
    exported = yaml.safe_load(trainer.schedule().dumps())["segments"]
    assert [s.get(name, "-") for s in exported] == [
        "-",
        wire(value),
        "-",
        wire(now),
        wire(back) if back is not None or name == "clip_grad_norm" else "-",
    ]


def test_huge_lr_trains_with_clipping_and_diverges_without(tmp_path: Path) -> None:
    """LR 1 on the lesson (30x its usual 0.03): the guard trips without clipping; with
    clip_grad_norm 1 every step's update is bounded and all six epochs train."""
    plain = open_trainer(tmp_path / "plain", [Segment(1.0, epochs=6)], "sgd")
    assert plain.engine.run() == "diverged"
    plain.close()
    clipped = open_trainer(tmp_path / "clip", [Segment(1.0, epochs=6, clip_grad_norm=1.0)], "sgd")
    losses: list[float] = []
    clipped.engine.on(ev.EpochEnd, lambda e: losses.append(e.metrics["test_loss"]))
    assert clipped.engine.run() == "done"
    clipped.close()
    assert len(losses) == 6 and max(losses) < 1e3


@pytest.mark.parametrize(
    ("yaml_segment", "optimizer", "message"),
    [
        ("{epochs: 1, lr: 0.1, momentum: 1}", "sgd", "segments[1].momentum: must be in [0, 1)"),
        ("{epochs: 1, lr: 0.1, betas: [0.9]}", "adam", "segments[1].betas: must be a list of two"),
        ("{epochs: 1, lr: 0.1, betas: [0.9, 1.5]}", "adam", "segments[1].betas[1]: must be in"),
        ("{epochs: 1, lr: 0.1, weight_decay: -1}", "sgd", "segments[1].weight_decay: must be >= 0"),
        (
            "{epochs: 1, lr: 0.1, weight_decay: .inf}",
            "sgd",
            "segments[1].weight_decay: must be a finite",
        ),
        (
            "{epochs: 1, lr: 0.1, clip_grad_norm: 0}",
            "sgd",
            "segments[1].clip_grad_norm: must be > 0",
        ),
        (
            "{epochs: 1, lr: 0.1, clip_grad_norm: .nan}",
            "sgd",
            "segments[1].clip_grad_norm: must be a finite",
        ),
        (
            "{epochs: 1, lr: 0.1, betas: [0.9, 0.99]}",
            "sgd",
            "segments[1].betas: optimizer sgd has no betas",
        ),
        (
            "{epochs: 1, lr: 0.1, momentum: 0.9}",
            "adam",
            "segments[1].momentum: optimizer adam has no momentum",
        ),
        ("{epochs: 1, lr: 0.1, note: 7}", "sgd", "segments[1].note: must be a string"),
    ],
)
def test_bad_settings_are_one_line_at_the_yaml_line(
    tmp_path: Path, yaml_segment: str, optimizer: str, message: str
) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        f"task: lesson\noptimizer: {optimizer}\nsegments:\n"
        f"  - {{epochs: 1, lr: 0.1}}\n  - {yaml_segment}\n"
    )
    done = lrconsole("--sessions-dir", str(tmp_path), "run", "x", "--schedule", str(path))
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
    assert f"plan.yaml:5: {message}" in done.stderr, done.stderr
    assert not (tmp_path / "x").exists()


def test_notes_and_settings_read_back_and_show(tmp_path: Path) -> None:
    text = (
        "task: lesson\noptimizer: {name: sgd, momentum: 0.9}\nsegments:\n"
        "  - {epochs: 1, lr: 0.03, note: warm start}\n"
        "  - {epochs: 1, lr: 0.03, momentum: 0.5, clip_grad_norm: 2, note: calmer}\n"
        "  - {epochs: 1, lr: 0.01, momentum: 0.5, clip_grad_norm: null}\n"
    )
    schedule = Schedule.loads(text)
    assert schedule.segments[2].note == "" and schedule.segments[2].clip_grad_norm == 0.0
    again = yaml.safe_load(schedule.dumps())["segments"]
    assert again[0] == {"epochs": 1, "lr": 0.03, "note": "warm start"}
    assert again[1] == {
        "epochs": 1,
        "lr": 0.03,
        "momentum": 0.5,
        "clip_grad_norm": 2.0,
        "note": "calmer",
    }
    assert again[2] == {"epochs": 1, "lr": 0.01, "clip_grad_norm": None}  # momentum: same
    replayed = Schedule.loads(schedule.dumps()).segments
    assert [effective(replayed, i) for i in range(3)] == [
        effective(schedule.segments, i) for i in range(3)
    ]
    preview = lrconsole("preview", str(_write(tmp_path / "p.yaml", text)))
    assert preview.returncode == 0, preview.stderr
    charts = preview.stdout  # one chart per setting that changes, under the LR's
    assert "\nmomentum\n" in charts and "\nclip_grad_norm (0: off)\n" in charts
    assert "weight_decay" not in charts and "calmer" not in charts


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- a real runner: set now from the CLI, export, replay -----------------------------------
@pytest.fixture
async def make_runner(sessions: Path) -> AsyncIterator[Any]:
    clients: list[RunnerClient] = []

    async def start(segments: list[Segment], optimizer: str) -> tuple[Path, RunnerClient]:
        folder = sessions / "steered"
        schedule = Schedule(segments, optimizer=OptimizerSpec(optimizer))
        client = await RunnerClient.connect(ensure_runner(folder, schedule=schedule))
        clients.append(client)
        return folder, client

    yield start
    for client in clients:
        pid = int(client.snapshot["runner"]["pid"])
        await client.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def cli_value(value: Any) -> str:
    return ",".join(f"{v:g}" for v in value) if isinstance(value, tuple) else f"{value:g}"


@pytest.mark.slow
@pytest.mark.parametrize(("name", "optimizer", "value", "now", "own"), CASES)
async def test_set_now_from_the_cli_splits_and_replays(
    make_runner: Any, tmp_path: Path, name: str, optimizer: str, value: Any, now: Any, own: Any
) -> None:
    segments = [Segment(0.03, epochs=2), Segment(0.03, epochs=60, **{name: value})]
    folder, client = await make_runner(segments, optimizer)
    step = await pause_mid_epoch(client, after_epoch=3)
    cli(folder, "note", "2", "before the change")
    line = cli(folder, "set", f"{name}={cli_value(now)}")
    epoch, batch = divmod(step, SPE)
    assert (
        f"{name}={cli_value(now)} from the next step (in epoch {epoch + 1} after batch {batch})"
        in line
    )
    event = await client.wait_for("settings_set", timeout=30)
    assert event.data == {"settings": {name: wire(now)}, "step": step}
    cli(folder, "resume")
    await finish(client)
    plan = replay_matches(folder, tmp_path)
    first, second, third = plan["segments"]
    assert first == {"epochs": 2, "lr": 0.03}
    note = "before the change"  # a split keeps the note on both parts
    assert second == {"steps": step - 2 * SPE, "lr": 0.03, name: wire(value), "note": note}
    assert third == {"steps": 62 * SPE - step, "lr": 0.03, name: wire(now), "note": note}


@pytest.mark.slow
async def test_notes_edit_live_and_on_disk_never_change_a_replay(
    make_runner: Any, tmp_path: Path
) -> None:
    segments = [Segment(0.03, epochs=2), Segment(0.01, epochs=2, note="first")]
    folder, client = await make_runner(segments, "sgd")
    await wait_state(client, lambda s: s["global_epoch"] >= 1)
    assert "segment 1's note written (live)" in cli(folder, "note", "1", "live note")
    with pytest.raises(CommandFailed) as refused:
        await client.call("note", segment=9, text="x")
    assert "no segment 10" in refused.value.message
    flags = ("--momentum", "0.3", "--clip-grad-norm", "off", "--note", "queued")
    line = cli(folder, "queue", "--epochs", "1", "--lr", "0.01", *flags)
    assert "queued segment 3: 1 epoch @ 0.01 momentum 0.3 clip off" in line
    with pytest.raises(CommandFailed) as bad:
        await client.call("queue", segments=[{"epochs": 1, "lr": 0.01, "betas": [0.9, 0.9]}])
    assert "the optimizer (SGD) has no betas" in bad.value.message
    await finish(client)
    before = metric_rows(folder)
    # No runner now: on disk, under the session's lock.
    assert "segment 2's note written" in cli(folder, "note", "2", "on disk")
    show = lrconsole("--sessions-dir", str(folder.parent), "show", folder.name)
    assert "live note" in show.stdout and "on disk" in show.stdout
    assert metric_rows(folder) == before
    plan = replay_matches(folder, tmp_path)
    assert [s.get("note") for s in plan["segments"]] == ["live note", "on disk", "queued"]
    assert plan["segments"][2] == {
        "epochs": 1,
        "lr": 0.01,
        "momentum": 0.3,
        "clip_grad_norm": None,
        "note": "queued",
    }


@pytest.mark.slow
def test_set_and_note_refuse_bad_input_in_one_line(sessions: Path) -> None:
    folder = sessions / "idle"
    ensure_runner(folder, create={"task": "lesson", "seed": 0})
    base = ("--sessions-dir", str(sessions))
    cases = [
        (("set", "idle", "momentum=1"), "momentum: must be in [0, 1)"),
        (("set", "idle", "speed=1"), "'speed=1' is not KEY=VALUE"),
        (("set", "idle", "betas=0.9"), "betas: must be a list of two"),
        (("set", "idle", "clip_grad_norm=-1"), "clip_grad_norm: must be > 0"),
        (("set", "idle", "weight_decay=nan"), "weight_decay: must be a finite"),
        (("set", "idle", "betas=0.9,0.99"), "no betas"),  # the runner's SGD has none
        (("set", "idle", "momentum=0.5"), "nothing is queued"),
        (("queue", "idle", "--epochs", "1", "--lr", "0.1", "--momentum", "2"), "[0, 1)"),
        (("queue", "idle", "--epochs", "1", "--lr", "0.1", "--betas", "1"), "two numbers"),
        (("note", "idle", "0", "x"), "segment number from 1"),
        (("note", "idle", "1", "x" * 501), "the limit is 500"),
        (("note", "idle", "3", "x"), "no segment 3"),
    ]
    for args, message in cases:
        done = lrconsole(*base, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.splitlines()) == 1 and message in done.stderr, (args, done.stderr)
    assert lrconsole(*base, "stop", "idle").returncode == 0


def test_steer_writes_the_settings_into_your_optimizer(tmp_path: Path) -> None:
    """Your own loop: the segment's settings are in your optimizer's param groups at each
    step; a setting it has no value for is refused before any file is written."""
    import torch

    from lrconsole.errors import UserError
    from lrconsole.steer import Steer

    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    schedule = Schedule(
        [Segment(0.1, epochs=1), Segment(0.05, epochs=1, momentum=0.3, weight_decay=0.01)]
    )
    steer = Steer(
        optimizer, tmp_path / "own", model=model, steps_per_epoch=3, schedule=schedule, serve=False
    )
    seen: list[tuple[float, float, float]] = []
    for _ in steer.epochs():
        for _ in range(3):
            loss = model(torch.ones(4, 2)).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            group = optimizer.param_groups[0]
            seen.append((group["lr"], group["momentum"], group["weight_decay"]))
            optimizer.step()
            steer.step(loss)
        steer.epoch_end({"train_loss": loss.item()})
    assert seen == [(0.1, 0.9, 0)] * 3 + [(0.05, 0.3, 0.01)] * 3
    bad = Schedule([Segment(0.1, epochs=1, betas=(0.9, 0.9))])
    with pytest.raises(UserError, match=r"the optimizer \(SGD\) has no betas"):
        Steer(
            optimizer, tmp_path / "bad", model=model, steps_per_epoch=3, schedule=bad, serve=False
        )
    assert not (tmp_path / "bad").exists()


def test_protocol_set_and_note_arguments() -> None:
    from lrconsole.protocol import ProtocolError, check_args

    # Null is a value for clipping (off), so an argument left out is told from it.
    assert check_args("set", {"momentum": 0.9, "clip_grad_norm": None}) == {
        "momentum": 0.9,
        "clip_grad_norm": 0.0,
    }
    assert check_args("set", {"lr": 0.1, "betas": [0.9, 0.99]}) == {"lr": 0.1, "betas": (0.9, 0.99)}
    assert check_args("note", {"segment": 2, "text": ""}) == {"segment": 2, "text": ""}
    for cmd, args, message in [
        ("set", {}, "set: give at least one of lr, momentum, betas"),
        ("set", {"momentum": -0.1}, "set.momentum: must be in [0, 1)"),
        ("set", {"betas": [0.9, "x"]}, "set.betas[1]: must be a number"),
        ("set", {"weight_decay": 1e9}, "set.weight_decay: 1000000000.0 is absurdly large"),
        ("set", {"nesterov": True}, "set: unknown argument 'nesterov'"),
        ("note", {"segment": -1, "text": "x"}, "note: segment must be a segment's index"),
        ("note", {"segment": 0}, "note: missing argument 'text'"),
        ("note", {"segment": 0, "text": "x" * 501}, "note.text: is 501 characters long"),
    ]:
        with pytest.raises(ProtocolError) as refused:
            check_args(cmd, args)
        assert refused.value.code == "bad_args" and message in refused.value.message


def test_a_session_continues_with_its_export_despite_left_out_settings_and_notes(
    tmp_path: Path,
) -> None:
    """Export leaves out a setting equal to the one in force, and a note may be edited
    since: the export still is the path trained, so it may extend the session."""
    from lrconsole.core.session.manifest import Manifest

    folder = tmp_path / "s"
    segments = [Segment(0.03, epochs=1, momentum=0.5), Segment(0.02, epochs=1, momentum=0.5)]
    trainer = open_trainer(folder, segments, "sgd")
    assert trainer.engine.run() == "done"
    trainer.close()
    exported = Schedule.loads(Manifest.read(folder).schedule().dumps())
    assert exported.segments[1].momentum is None  # left out: the same as in force
    exported.segments[0] = Segment(0.03, epochs=1, momentum=0.5, note="edited since")
    exported.segments.append(Segment(0.01, epochs=1, momentum=0.2))
    again = Trainer.open(folder, schedule=exported, tensorboard=False)
    assert again.engine.run() == "done"
    again.close()
    assert Manifest.read(folder).global_epoch == 3


def test_a_fresh_optimizer_gets_the_settings_in_force(tmp_path: Path) -> None:
    """`fresh_optimizer` still builds a new optimizer (from `optimizer:`), and the
    settings inherited from earlier segments are written into it before its first step."""
    segments = [
        Segment(0.03, epochs=1, momentum=0.5),
        Segment(0.03, epochs=1, fresh_optimizer=True),
    ]
    schedule = Schedule(segments, optimizer=OptimizerSpec("sgd", {"momentum": 0.9}))
    trainer = Trainer.open(tmp_path / "s", schedule=schedule, tensorboard=False)
    first = trainer.engine.optimizer
    assert trainer.engine.run() == "done"
    trainer.close()
    fresh = trainer.engine.optimizer
    assert fresh is not first and fresh.param_groups[0]["momentum"] == 0.5
    assert first.param_groups[0]["momentum"] == 0.5
