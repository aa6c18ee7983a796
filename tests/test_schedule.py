"""Schedules: YAML validation with lines, round trips, and the LR as a pure function."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.plan.segment import ScheduleError, Segment, check_epochs, check_lr
from lrconsole.errors import UserError

GOOD = """\
version: 1
task: lesson
seed: 3
optimizer: {name: sgd, momentum: 0.9}
steps_per_epoch: 14
segments:
  - {epochs: 30, lr: 0.03}
  - {epochs: 30, lr: 1e-2}
  - {steps: 7, lr: 0.005}
"""


def test_round_trip_keeps_every_field() -> None:
    schedule = Schedule.loads(GOOD, "good.yaml")
    assert schedule.seed == 3
    assert schedule.optimizer.kwargs == {"momentum": 0.9}
    assert [s.lr for s in schedule.segments] == [0.03, 0.01, 0.005]
    again = Schedule.loads(schedule.dumps(), "again.yaml")
    assert again == schedule


def test_lr_is_a_pure_function_of_position() -> None:
    schedule = Schedule.loads(GOOD)
    assert schedule.lr(0) == 0.03
    assert schedule.lr(29, 13) == 0.03
    assert schedule.lr(30, 0) == 0.01
    assert schedule.lr_at_step(60 * 14) == 0.005
    assert schedule.lr_at_step(10**6) == 0.005  # past the end: the last LR holds
    assert schedule.total_steps() == 60 * 14 + 7


def test_lambda_lr_sets_exactly_the_schedule_lr() -> None:
    schedule = Schedule.loads(GOOD)
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.123)
    scheduler = schedule.lambda_lr(optimizer)
    for step in range(schedule.total_steps()):
        assert optimizer.param_groups[0]["lr"] == schedule.lr_at_step(step)
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("segments:\n  - {epochs: 3, lr: -0.1}\n", 2, "segments[0].lr: must be > 0"),
        ("segments:\n  - {epochs: 3, lr: 0}\n", 2, "must be > 0"),
        ("segments:\n  - {epochs: 3, lr: .nan}\n", 2, "finite"),
        ("segments:\n  - {epochs: 3, lr: .inf}\n", 2, "finite"),
        ("segments:\n  - {epochs: 3, lr: 1e6}\n", 2, "absurdly large"),
        ("segments:\n  - {epochs: 3, lr: fast}\n", 2, "must be a number"),
        ("segments:\n  - {epochs: 2.5, lr: 0.1}\n", 2, "whole number"),
        ("segments:\n  - {epochs: 0, lr: 0.1}\n", 2, "at least 1"),
        ("segments:\n  - {lr: 0.1}\n", 2, "exactly one of"),
        ("seed: 1\nsegmnts:\n  - {epochs: 1, lr: 0.1}\n", 2, "unknown field 'segmnts'"),
        ("segments:\n  - {epochs: 1, lr: 0.1, colour: red}\n", 2, "unknown field 'colour'"),
        ("seed: one\nsegments: []\n", 1, "seed: must be a whole number"),
        ("segments: []\n", 1, "at least one segment"),
        ("segments:\n  - {epochs: 1, lr: 0.1\n", 3, "malformed YAML"),
        ("version: 9\nsegments:\n  - {epochs: 1, lr: 0.1}\n", 1, "newer"),
        ("optimizer: lion\nsegments:\n  - {epochs: 1, lr: 0.1}\n", 1, "unknown optimizer"),
        ("", None, "empty"),
    ],
)
def test_bad_yaml_names_file_line_and_field(text: str, line: int | None, fragment: str) -> None:
    with pytest.raises(UserError) as info:
        Schedule.loads(text, "plan.yaml")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"plan.yaml:{line}:" if line else "plan.yaml:")
    assert fragment in message


def test_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(ScheduleError, match="no such file"):
        Schedule.load(tmp_path / "nope.yaml")


@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf, 10.5])
def test_check_lr_refuses(value: float) -> None:
    with pytest.raises(ScheduleError):
        check_lr(value)


@pytest.mark.parametrize("value", [0, -3, 100_001, 2.5, True])
def test_check_epochs_refuses(value: object) -> None:
    with pytest.raises(ScheduleError):
        check_epochs(value)  # type: ignore[arg-type]


def test_lr_of_ten_is_allowed() -> None:
    assert check_lr(10) == 10.0
    assert Segment(10.0, epochs=1).lr == 10.0
