"""Shapes against their torch.optim.lr_scheduler twins, step by step, and on their own.

Agreement is checked to a *relative* error of 1e-12 (|ours - torch| <= 1e-12 * |torch|),
which also demands an exact 0.0 where torch gives 0.0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.optim import SGD, Optimizer
from torch.optim import lr_scheduler as sch

from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.plan.segment import Segment
from lrconsole.core.plan.shapes import SHAPES, check_params, shape_lr

LR = 0.1
T = 50
REL = 1e-12

MakeScheduler = Callable[[Optimizer], sch.LRScheduler]

TWINS: list[tuple[str, dict[str, Any], MakeScheduler]] = [
    ("linear_warmup", {}, lambda o: sch.LinearLR(o, start_factor=1 / 3, total_iters=T)),
    ("linear_warmup", {"start_factor": 0.25}, lambda o: sch.LinearLR(o, 0.25, total_iters=T)),
    (
        "linear_warmup",
        {"start_factor": 0.1, "warmup": 12},
        lambda o: sch.LinearLR(o, start_factor=0.1, total_iters=12),
    ),
    ("step", {"step_size": 7, "gamma": 0.5}, lambda o: sch.StepLR(o, step_size=7, gamma=0.5)),
    ("step", {}, lambda o: sch.StepLR(o, step_size=1, gamma=0.1)),
    ("exponential", {"gamma": 0.9}, lambda o: sch.ExponentialLR(o, gamma=0.9)),
    ("exponential", {}, lambda o: sch.ExponentialLR(o, gamma=0.95)),
    ("power", {}, lambda o: sch.PolynomialLR(o, total_iters=T, power=1.0)),
    ("power", {"power": 2.0}, lambda o: sch.PolynomialLR(o, total_iters=T, power=2.0)),
    (
        "power",
        {"power": 0.9, "total_iters": 20},
        lambda o: sch.PolynomialLR(o, total_iters=20, power=0.9),
    ),
    ("cosine", {}, lambda o: sch.CosineAnnealingLR(o, T_max=T)),
    ("cosine", {"lr_end": 0.001}, lambda o: sch.CosineAnnealingLR(o, T_max=T, eta_min=0.001)),
    (
        "cosine",
        {"lr_end": 0.01, "T_max": 80},
        lambda o: sch.CosineAnnealingLR(o, T_max=80, eta_min=0.01),
    ),
    (
        "cyclic",
        {},
        lambda o: sch.CyclicLR(
            o, base_lr=LR * 0.1, max_lr=LR, step_size_up=T // 2, cycle_momentum=False
        ),
    ),
    (
        "cyclic",
        {"lr_min": 0.01, "step_size_up": 5, "step_size_down": 3, "mode": "triangular2"},
        lambda o: sch.CyclicLR(
            o,
            base_lr=0.01,
            max_lr=LR,
            step_size_up=5,
            step_size_down=3,
            mode="triangular2",
            cycle_momentum=False,
        ),
    ),
    (
        "cyclic",
        {"base_factor": 0.2, "step_size_up": 4, "mode": "exp_range", "gamma": 0.98},
        lambda o: sch.CyclicLR(
            o,
            base_lr=LR * 0.2,
            max_lr=LR,
            step_size_up=4,
            mode="exp_range",
            gamma=0.98,
            cycle_momentum=False,
        ),
    ),
    ("one_cycle", {}, lambda o: sch.OneCycleLR(o, max_lr=LR, total_steps=T, cycle_momentum=False)),
    (
        "one_cycle",
        {
            "pct_start": 0.25,
            "div_factor": 10.0,
            "final_div_factor": 100.0,
            "anneal_strategy": "linear",
        },
        lambda o: sch.OneCycleLR(
            o,
            max_lr=LR,
            total_steps=T,
            pct_start=0.25,
            div_factor=10.0,
            final_div_factor=100.0,
            anneal_strategy="linear",
            cycle_momentum=False,
        ),
    ),
    (
        "one_cycle",
        {"pct_start": 0.4, "three_phase": True},
        lambda o: sch.OneCycleLR(
            o, max_lr=LR, total_steps=T, pct_start=0.4, three_phase=True, cycle_momentum=False
        ),
    ),
]


def close(ours: float, ref: float) -> bool:
    return abs(ours - ref) <= REL * abs(ref)


def _optimizer(lr: float) -> SGD:
    return SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _lr(opt: Optimizer) -> float:
    return float(opt.param_groups[0]["lr"])


@pytest.mark.parametrize(
    ("name", "params", "make"), TWINS, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(TWINS)]
)
def test_matches_torch_at_every_step(name: str, params: dict[str, Any], make: MakeScheduler):
    ref_opt = _optimizer(LR)
    ref = make(ref_opt)
    # A constant segment first: the shaped segment must count its own position from 0.
    lead = 3
    schedule = Schedule(
        [Segment(0.5, steps=lead), Segment(LR, steps=T, shape=name, params=params)],
        steps_per_epoch=10,
    )
    ours_opt = _optimizer(123.0)
    ours = schedule.lambda_lr(ours_opt)
    for _ in range(lead):
        assert _lr(ours_opt) == 0.5
        ours_opt.step()
        ours.step()
    for t in range(T):
        want = _lr(ref_opt)
        got = shape_lr(name, LR, params, t, T)
        assert close(got, want), (t, got, want)
        assert _lr(ours_opt) == got, t
        ref_opt.step()
        ref.step()
        ours_opt.step()
        ours.step()


def test_every_shape_declares_per_epoch() -> None:
    for name, spec in SHAPES.items():
        assert spec.name == name
        assert spec.params["per_epoch"] is False
        assert spec.doc
        shape_lr(name, LR, {}, 0, T)  # every default works


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_boundaries(name: str) -> None:
    first, last = shape_lr(name, LR, {}, 0, T), shape_lr(name, LR, {}, T - 1, T)
    assert all(math.isfinite(v) and v >= 0 for v in (first, last))
    expected_first = {
        "linear_warmup": LR / 3,
        "exp_warmup": LR * 0.01,
        "cosine_warmup": 0.0,
        "cyclic": LR * 0.1,
        "one_cycle": LR / 25.0,
    }.get(name, LR)
    assert first == pytest.approx(expected_first, rel=REL)
    if name == "one_cycle":
        assert last == pytest.approx(LR / 25.0 / 1e4, rel=REL)
    if name in ("linear_warmup", "exp_warmup", "cosine_warmup"):
        assert first < last < LR


def test_exp_warmup_values() -> None:
    p = {"start_factor": 0.001, "warmup": 3}
    lrs = [shape_lr("exp_warmup", 1.0, p, t, 10) for t in range(6)]
    assert lrs == pytest.approx([0.001, 0.01, 0.1, 1.0, 1.0, 1.0], rel=REL)
    # Over the whole segment: a constant ratio between steps, lr reached at t = T.
    lrs = [shape_lr("exp_warmup", 0.5, {"start_factor": 1 / 16}, t, 4) for t in range(4)]
    assert lrs == pytest.approx([0.5 / 16, 0.5 / 8, 0.5 / 4, 0.5 / 2], rel=REL)


def test_cosine_warmup_values() -> None:
    p = {"start_factor": 0.0, "warmup": 4}
    lrs = [shape_lr("cosine_warmup", 2.0, p, t, 10) for t in range(6)]
    half = (1 - math.cos(math.pi / 4)) / 2
    assert lrs == pytest.approx([0.0, 2 * half, 1.0, 2 * (1 - half), 2.0, 2.0], rel=REL, abs=0)
    p = {"start_factor": 0.5}
    assert shape_lr("cosine_warmup", 1.0, p, 5, 10) == pytest.approx(0.75, rel=REL)


def test_lesson_forms() -> None:
    # The lesson's power example lr0, lr0/2, lr0/3 and exponential lr0, lr0/10, lr0/100.
    assert [shape_lr("inverse_time", 0.6, {}, t, 3) for t in range(3)] == pytest.approx(
        [0.6, 0.3, 0.2], rel=REL
    )
    assert [shape_lr("exponential", 1.0, {"gamma": 0.1}, t, 3) for t in range(3)] == (
        pytest.approx([1.0, 0.1, 0.01], rel=REL)
    )
    # The lesson's linear warmup lr0 * t / T_w, then the base lr.
    p = {"start_factor": 0.0, "warmup": 4}
    assert [shape_lr("linear_warmup", 0.4, p, t, 8) for t in range(6)] == pytest.approx(
        [0.0, 0.1, 0.2, 0.3, 0.4, 0.4], rel=REL, abs=0
    )
    # Past T_max the cosine stays at lr_end (Keras CosineDecay; torch would rise again).
    assert shape_lr("cosine", 1.0, {"lr_end": 0.1, "T_max": 5}, 7, 10) == 0.1


def test_one_cycle_short_segments_do_not_divide_by_zero() -> None:
    for n in range(1, 12):
        for t in range(n):
            assert math.isfinite(shape_lr("one_cycle", LR, {"pct_start": 0.1}, t, n))


def test_check_params() -> None:
    assert check_params("cosine", {"lr_end": 0.01})["T_max"] is None
    assert check_params("cyclic", {"step_size_up": 4, "per_epoch": True})["per_epoch"] is True
    bad: list[tuple[str, dict[str, Any]]] = [
        ("cosine", {"eta_min": 0.0}),
        ("step", {"gamma": "0.5"}),
        ("step", {"gamma": True}),
        ("step", {"step_size": 0}),
        ("step", {"step_size": None}),
        ("exponential", {"gamma": math.nan}),
        ("exp_warmup", {"start_factor": 0.0}),
        ("cyclic", {"mode": "sine"}),
        ("one_cycle", {"pct_start": 1.5}),
        ("one_cycle", {"three_phase": 1}),
        ("constant", {"per_epoch": "yes"}),
    ]
    for name, params in bad:
        with pytest.raises(ValueError):
            check_params(name, params)


def test_round_trip_through_yaml() -> None:
    segments = [Segment(0.05, epochs=2, shape="linear_warmup", params={"start_factor": 0.1})]
    segments += [
        Segment(0.05, steps=13 + i, shape=name, params=params)
        for i, (name, params, _) in enumerate(TWINS)
    ]
    segments += [
        Segment(0.02, epochs=3, shape="exp_warmup", params={"warmup": 5, "per_epoch": True}),
        Segment(0.02, epochs=1, shape="cosine_warmup"),
        Segment(0.01, epochs=4, shape="inverse_time", params={"decay_steps": 2.5, "power": 0.5}),
        Segment(0.01, epochs=1, fresh_optimizer=True),
    ]
    schedule = Schedule(segments, steps_per_epoch=7)
    again = Schedule.loads(schedule.dumps())
    assert again.segments == schedule.segments
    assert list(again.iter_lrs()) == list(schedule.iter_lrs())
    assert again.dumps() == schedule.dumps()
