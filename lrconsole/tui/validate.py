"""Parse the planner's text fields with the schedule's own rules (no new rules here)."""

from __future__ import annotations

import math
from typing import Any

from lrconsole.core.plan import settings as opt
from lrconsole.core.plan.schema import Field
from lrconsole.core.plan.segment import ScheduleError, check_epochs, check_lr


def parse_epochs(text: str) -> int:
    """The epochs field as an int, or ScheduleError with a message for the field."""
    text = text.strip()
    if not text:
        raise ScheduleError("epochs: enter a whole number of epochs")
    try:
        value = int(text)
    except ValueError:
        try:
            float(text)
        except ValueError:
            raise ScheduleError(f"epochs: not a number: {text!r}") from None
        raise ScheduleError(f"epochs: must be a whole number, got {text!r}") from None
    return check_epochs(value, "epochs")


def parse_lr(text: str) -> float:
    """The LR field as a float, or ScheduleError with a message for the field."""
    text = text.strip()
    if not text:
        raise ScheduleError("lr: enter a learning rate, e.g. 0.03")
    try:
        value = float(text)
    except ValueError:
        raise ScheduleError(f"lr: not a number: {text!r}") from None
    return check_lr(value, "lr")


# -- the optional segment settings: the text parsed here, the rules are the schedule's own
# (core/plan/settings.py); the runner checks them again, against its optimizer too --------
SETTINGS = ("lr", *opt.SETTINGS)
OFF = ("off", "none", "null")


def _number(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ScheduleError(f"{name}: not a number: {text!r}") from None
    if not math.isfinite(value):
        raise ScheduleError(f"{name}: must be a finite number, got {text!r}")
    return value


def parse_setting(name: str, text: str) -> Any:
    """One optional field's text as the value the protocol takes (for `clip_grad_norm`,
    None turns clipping off), or ScheduleError naming the field."""
    text = text.strip()
    if name == "note":
        return opt.read_note(Field(text, "note"))
    if not text:
        raise ScheduleError(f"{name}: enter a value")
    if name == "lr":
        return parse_lr(text)
    if name == "betas":
        parts = text.replace(",", " ").split()
        if len(parts) != 2:
            raise ScheduleError(f"betas: two numbers, e.g. 0.9,0.999, got {text!r}")
        return list(opt.read_betas(Field([_number(p, name) for p in parts], name)))
    if name not in opt.READERS:
        raise ScheduleError(f"unknown setting {name!r}: one of {', '.join(SETTINGS)}")
    if name == "clip_grad_norm":
        if text.lower() in OFF:
            return None
        if _number(text, name) <= 0:  # said in the console's words: "off", not null
            raise ScheduleError(f"clip_grad_norm: must be > 0 (or off), got {text}")
    return opt.READERS[name](Field(_number(text, name), name))


def parse_settings(text: str) -> dict[str, Any]:
    """`momentum=0.9 weight_decay=1e-4 clip_grad_norm=1` (betas=0.9,0.999; lr too) as the
    `set` command's arguments, or ScheduleError naming the setting."""
    out: dict[str, Any] = {}
    for word in text.split():
        name, sep, value = word.partition("=")
        if not sep:
            raise ScheduleError(f"{word!r}: write name=value, e.g. momentum=0.9")
        if name in out:
            raise ScheduleError(f"{name}: given twice")
        if name not in SETTINGS:
            raise ScheduleError(f"unknown setting {name!r}: one of {', '.join(SETTINGS)}")
        out[name] = parse_setting(name, value)
    if not out:
        raise ScheduleError("enter at least one setting, e.g. momentum=0.9")
    return out
