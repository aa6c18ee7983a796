"""The console's keys, in one table: the footer, the help screen and the README use it."""

from __future__ import annotations

KEYS: list[tuple[str, str]] = [
    ("space", "pause or resume training"),
    ("Enter", "queue the segment in the planner (epochs, LR)"),
    ("q", "quit: stop and save, or detach (training goes on)"),
    ("e", "export the schedule to YAML (in the LR field: an exponent)"),
    ("t", "start TensorBoard on the session's logs, show the URL"),
    ("l", "log scale for the loss chart, on or off"),
    ("r", "roll back to a kept checkpoint; the rest stays a branch"),
    ("f", "LR range test on a copy of the model; proposes an LR"),
    ("?", "this help"),
    ("Tab / Shift+Tab", "move between the fields, the queue and the table"),
    ("Del / x", "in the queue: remove the highlighted segment"),
    ("Enter on a queued segment", "edit it in the planner; Esc cancels"),
    ("ctrl+p", "command palette: every action by name"),
]
