"""Parse the planner's text fields with the schedule's own rules (no new rules here)."""

from __future__ import annotations

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
