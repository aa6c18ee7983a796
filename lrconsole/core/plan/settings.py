"""The per-segment optimizer settings and the note: their value rules and inheritance.

A segment may set `momentum`, `betas`, `weight_decay` and `clip_grad_norm`; one it leaves
out keeps the previous segment's value, and before any segment sets one the optimizer
keeps its own. `clip_grad_norm: null` turns clipping off (kept as CLIP_OFF, 0.0, since a
segment's None means "not set"). A note is the segment's own: it never inherits and
never changes training. No torch here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from lrconsole.core.plan.schema import (
    CLIP_MAX,
    NOTE_MAX,
    OPTIMIZER_SETTINGS,
    WEIGHT_DECAY_MAX,
    Field,
    show,
)

# In the order YAML, the wire and `show` list them.
SETTINGS = ("momentum", "betas", "weight_decay", "clip_grad_norm")
# Those written into every param group (clipping is done by the step itself).
GROUP_SETTINGS = ("momentum", "betas", "weight_decay")
CLIP_OFF = 0.0  # a segment's "clip_grad_norm: null": clipping explicitly off


def read_momentum(f: Field) -> float:
    value = f.number()
    if not 0 <= value < 1:
        f.fail(f"must be in [0, 1), got {value!r}")
    return float(value)


def read_betas(f: Field) -> tuple[float, float]:
    value = f.value
    if isinstance(value, tuple):  # from Python, not YAML or JSON
        f = f.with_value(list(value))
    if not isinstance(f.value, list) or len(f.value) != 2:
        f.fail(f"must be a list of two numbers, like [0.9, 0.999], got {show(value)}")
    return read_momentum(f.at(0)), read_momentum(f.at(1))


def read_weight_decay(f: Field) -> float:
    value = f.number()
    if value < 0:
        f.fail(f"must be >= 0, got {value!r}")
    if value > WEIGHT_DECAY_MAX:
        f.fail(f"{value!r} is absurdly large (the limit is {WEIGHT_DECAY_MAX:g})")
    return float(value)


def read_clip(f: Field) -> float:
    """A max total gradient norm > 0; null (no clipping) reads as CLIP_OFF."""
    if f.value is None:
        return CLIP_OFF
    value = f.number()
    if value <= 0:
        f.fail(f"must be > 0 (or null for no clipping), got {value!r}")
    if value > CLIP_MAX:
        f.fail(f"{value!r} never clips (the limit is {CLIP_MAX:g}); null turns clipping off")
    return float(value)


def read_note(f: Field) -> str:
    text = f.string()
    if len(text) > NOTE_MAX:
        f.fail(f"is {len(text):,} characters long (the limit is {NOTE_MAX})")
    return text


READERS = {
    "momentum": read_momentum,
    "betas": read_betas,
    "weight_decay": read_weight_decay,
    "clip_grad_norm": read_clip,
}


def read_settings(given: Mapping[str, Field]) -> dict[str, Any]:
    """The settings among a record's fields, each checked."""
    return {name: READERS[name](given[name]) for name in SETTINGS if name in given}


def to_wire(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings as YAML and JSON write them: betas a list, clipping off as null."""
    out: dict[str, Any] = {}
    for name, value in settings.items():
        if name == "betas":
            value = list(value)
        elif name == "clip_grad_norm" and value == CLIP_OFF:
            value = None
        out[name] = value
    return out


def describe(settings: Mapping[str, Any]) -> str:
    """` momentum 0.9 clip 1`: the settings a segment sets, for one-line summaries."""
    parts = []
    for name, value in to_wire(settings).items():
        label = {"weight_decay": "wd", "clip_grad_norm": "clip"}.get(name, name)
        if value is None:
            shown = "off"
        elif name == "betas":
            shown = ",".join(f"{v:g}" for v in value)
        else:
            shown = f"{value:g}"
        parts.append(f" {label} {shown}")
    return "".join(parts)


def check_optimizer(optimizer: str, given: Mapping[str, Field]) -> None:
    """Refuse a setting a built-in optimizer (by name) has no param-group value for."""
    has = OPTIMIZER_SETTINGS.get(optimizer)
    if has is None:
        return
    for name in GROUP_SETTINGS:
        if name in given and name not in has:
            given[name].fail(f"optimizer {optimizer} has no {name} (it has: {', '.join(has)})")


class _HasSettings(Protocol):
    def settings(self) -> dict[str, Any]: ...


def repeated(segments: Sequence[_HasSettings]) -> list[set[str]]:
    """For each segment, the settings it sets to the value already in force (they say
    nothing: export leaves them out, and a path compares equal without them)."""
    out, before = [], dict[str, Any]()
    for seg in segments:
        given = seg.settings()
        out.append(
            {name for name, value in given.items() if name in before and before[name] == value}
        )
        before.update(given)
    return out


def effective(segments: Sequence[_HasSettings], index: int) -> dict[str, Any]:
    """The settings in force in segment `index`: each the last value set up to it."""
    out: dict[str, Any] = {}
    for seg in segments[: index + 1]:
        out.update(seg.settings())
    return out
