"""LR shapes inside a segment: pure functions of the position in the segment.

`t` is the 0-based position (optimizer steps, or epochs for per-epoch shapes) and
`T` the segment's length in the same unit. A shape never keeps state: the session
stores the position, so a resumed run computes the same LR.

The segment's `lr` is the shape's peak: the target of a warmup, the start of a decay,
the top of a cycle. Parameter names follow torch.optim.lr_scheduler (and Keras where
torch has no twin); every length parameter is in the shape's unit and defaults to `T`.
Each formula matches the torch scheduler's closed form at every step (see the tests).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

ShapeFn = Callable[[float, Mapping[str, Any], float, float], float]


@dataclass(frozen=True)
class ShapeSpec:
    """A named shape, its parameters with defaults, and its formula."""

    name: str
    params: Mapping[str, Any]
    fn: ShapeFn
    doc: str


def _len(p: Mapping[str, Any], key: str, T: float) -> float:
    """A length parameter, `T` when not given."""
    value = p.get(key)
    return T if value is None else float(value)


def _ramp(p: Mapping[str, Any], t: float, T: float) -> float:
    """Warmup progress in [0, 1]: min(t, warmup) / warmup."""
    w = _len(p, "warmup", T)
    return min(t, w) / w


def _constant(lr: float, p: Mapping[str, Any], t: float, T: float) -> float:
    return lr


def _linear_warmup(lr: float, p: Mapping[str, Any], t: float, T: float) -> float:
    s = p["start_factor"]
    return lr * (s + (1.0 - s) * _ramp(p, t, T))


def _exp_warmup(lr: float, p: Mapping[str, Any], t: float, T: float) -> float:
    return lr * p["start_factor"] ** (1.0 - _ramp(p, t, T))


def _cosine_warmup(lr: float, p: Mapping[str, Any], t: float, T: float) -> float:
    s = p["start_factor"]
    return lr * (s + (1.0 - s) * (1.0 - math.cos(math.pi * _ramp(p, t, T))) / 2)


def _step(lr: float, p: Mapping[str, Any], t: float, T: float) -> float:
    return lr * p["gamma"] ** (t // p["step_size"])


def _exponential(lr: float, p: Mapping[str, Any], t: float, T: float) -> float:
    return lr * p["gamma"] ** t


def _power(lr: float, p: Mapping[str, Any], t: float, T: float) -> float:
    n = _len(p, "total_iters", T)
    return lr * (1.0 - min(n, t) / n) ** p["power"]


def _inverse_time(lr: float, p: Mapping[str, Any], t: float, T: float) -> float:
    return lr * (1.0 + t / p["decay_steps"]) ** -p["power"]


def _cosine(lr: float, p: Mapping[str, Any], t: float, T: float) -> float:
    end, n = p["lr_end"], _len(p, "T_max", T)
    return end + (lr - end) * (1 + math.cos(math.pi * min(t, n) / n)) / 2


def _cyclic(lr: float, p: Mapping[str, Any], t: float, T: float) -> float:
    base = lr * p["base_factor"] if p["lr_min"] is None else p["lr_min"]
    up = _len(p, "step_size_up", T / 2)
    total = up + _len(p, "step_size_down", up)
    ratio = up / total
    cycle = math.floor(1 + t / total)
    x = 1.0 + t / total - cycle
    scale = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
    mode = p["mode"]
    amp = 1.0 if mode == "triangular" else 1 / 2.0 ** (cycle - 1)
    if mode == "exp_range":
        amp = p["gamma"] ** t
    return base + (lr - base) * scale * amp


def _one_cycle(lr: float, p: Mapping[str, Any], t: float, T: float) -> float:
    n, pct = _len(p, "total_steps", T), p["pct_start"]
    initial = lr / p["div_factor"]
    low = initial / p["final_div_factor"]
    if p["three_phase"]:
        phases = [(pct * n - 1, initial, lr), (2 * pct * n - 2, lr, initial), (n - 1, initial, low)]
    else:
        phases = [(pct * n - 1, initial, lr), (n - 1, lr, low)]
    start = 0.0
    for i, (end, a, b) in enumerate(phases):
        if t <= end or i == len(phases) - 1:
            frac = (t - start) / (end - start) if end != start else 1.0
            if p["anneal_strategy"] == "cos":
                return b + (a - b) / 2.0 * (math.cos(math.pi * frac) + 1)
            return (b - a) * frac + a
        start = end
    raise AssertionError("unreachable")


def _spec(name: str, fn: ShapeFn, doc: str, **params: Any) -> ShapeSpec:
    return ShapeSpec(name, {**params, "per_epoch": False}, fn, doc)


_WARMUP = (
    "; f = min(t, warmup) / warmup; warmup defaults to T"
    " (lr is reached where the next segment starts)"
)

SHAPES: dict[str, ShapeSpec] = {
    s.name: s
    for s in (
        _spec("constant", _constant, "lr for the whole segment"),
        _spec(
            "linear_warmup",
            _linear_warmup,
            "lr * (start_factor + (1 - start_factor) * f)  [LinearLR]" + _WARMUP,
            start_factor=1 / 3,
            warmup=None,
        ),
        _spec(
            "exp_warmup",
            _exp_warmup,
            "lr * start_factor ** (1 - f): geometric growth" + _WARMUP,
            start_factor=0.01,
            warmup=None,
        ),
        _spec(
            "cosine_warmup",
            _cosine_warmup,
            "lr * (start_factor + (1 - start_factor) * (1 - cos(pi * f)) / 2)" + _WARMUP,
            start_factor=0.0,
            warmup=None,
        ),
        _spec(
            "step",
            _step,
            "lr * gamma ** floor(t / step_size)  [StepLR]",
            step_size=1,
            gamma=0.1,
        ),
        _spec("exponential", _exponential, "lr * gamma ** t  [ExponentialLR]", gamma=0.95),
        _spec(
            "power",
            _power,
            "lr * (1 - min(t, total_iters) / total_iters) ** power, total_iters defaults to T"
            "  [PolynomialLR]",
            power=1.0,
            total_iters=None,
        ),
        _spec(
            "inverse_time",
            _inverse_time,
            "lr * (1 + t / decay_steps) ** -power: the lesson's lr0 * (1 + t/s)^-c"
            "  [Keras InverseTimeDecay when power=1]",
            decay_steps=1.0,
            power=1.0,
        ),
        _spec(
            "cosine",
            _cosine,
            "lr_end + (lr - lr_end) * (1 + cos(pi * min(t, T_max) / T_max)) / 2, T_max defaults"
            " to T; flat at lr_end after T_max  [CosineAnnealingLR, eta_min=lr_end]",
            lr_end=0.0,
            T_max=None,
        ),
        _spec(
            "cyclic",
            _cyclic,
            "triangle from base = lr_min (or lr * base_factor) up to lr in step_size_up, down"
            " in step_size_down (default T/2 and step_size_up: one cycle per segment); mode"
            " triangular2 halves the height each cycle, exp_range scales it by gamma ** t"
            "  [CyclicLR, max_lr=lr]",
            base_factor=0.1,
            lr_min=None,
            step_size_up=None,
            step_size_down=None,
            mode="triangular",
            gamma=1.0,
        ),
        _spec(
            "one_cycle",
            _one_cycle,
            "lr/div_factor up to lr over pct_start * total_steps, then down to"
            " lr/div_factor/final_div_factor at t = total_steps - 1 (default T), cos or"
            " linear anneal  [OneCycleLR, max_lr=lr]",
            pct_start=0.3,
            div_factor=25.0,
            final_div_factor=1e4,
            anneal_strategy="cos",
            three_phase=False,
            total_steps=None,
        ),
    )
}

_POSITIVE = {
    "warmup",
    "step_size",
    "gamma",
    "total_iters",
    "decay_steps",
    "T_max",
    "step_size_up",
    "step_size_down",
    "div_factor",
    "final_div_factor",
    "total_steps",
}
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    **{k: (lambda v: v > 0, "must be > 0") for k in _POSITIVE},
    "start_factor": (lambda v: 0 <= v <= 1, "must be between 0 and 1"),
    "base_factor": (lambda v: 0 <= v <= 1, "must be between 0 and 1"),
    "pct_start": (lambda v: 0 <= v <= 1, "must be between 0 and 1"),
    "power": (lambda v: v >= 0, "must be >= 0"),
    "lr_end": (lambda v: v >= 0, "must be >= 0"),
    "lr_min": (lambda v: v >= 0, "must be >= 0"),
    "mode": (
        lambda v: v in ("triangular", "triangular2", "exp_range"),
        "must be triangular, triangular2 or exp_range",
    ),
    "anneal_strategy": (lambda v: v in ("cos", "linear"), "must be cos or linear"),
}


def check_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """`params` merged over the shape's defaults; ValueError naming the first bad one."""
    spec = SHAPES[name]
    for key, value in params.items():
        if key not in spec.params:
            raise ValueError(f"{name} has no parameter {key!r}")
        default = spec.params[key]
        if isinstance(default, (bool, str)):
            ok = type(value) is type(default)
            kind = "true or false" if isinstance(default, bool) else "a string"
        else:
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = (number and math.isfinite(value)) or (value is None and default is None)
            kind = "a finite number"
        rule = _RULES.get(key)
        if not ok or (value is not None and rule is not None and not rule[0](value)):
            why = rule[1] if ok and rule else f"must be {kind}"
            raise ValueError(f"{name}.{key}: {why}, got {value!r}")
    if name == "exp_warmup" and params.get("start_factor") == 0:
        raise ValueError("exp_warmup.start_factor: must be > 0, got 0")
    return {**spec.params, **params}


def shape_lr(name: str, lr: float, params: Mapping[str, Any], t: float, T: float) -> float:
    """The LR at position `t` of a segment of length `T` with the given shape."""
    spec = SHAPES[name]
    return spec.fn(lr, {**spec.params, **params}, t, T)
