"""The console's keys, in one table: the help screen and the README use it.

While a text field has the focus, every printable key types into it. So the one-letter
keys act only when no field has the focus (Esc leaves a field); ctrl and F-keys act anywhere.
"""

from __future__ import annotations

NO_FIELD = " (no field focused)"

KEYS: list[tuple[str, str]] = [
    ("Enter", "in the planner: queue its segment (epochs, LR)"),
    ("▸ more", "in the planner: momentum, betas, weight decay, clip, note (empty: keep)"),
    ("Esc", "leave the field, so the one-letter keys act"),
    ("space", "pause or resume training" + NO_FIELD),
    ("F2", "set the LR now, for the rest of the running segment (asks; planner's LR)"),
    ("F3 / F4 / F5", "LR ÷10 / ÷2 / ×2 now"),
    ("F6", "end the running segment after this epoch; the queue moves on"),
    ("F7", "end the running segment now (at the next batch)"),
    ("F8", "extend the running segment by N epochs (negative N shortens it)"),
    ("F9", "after a divergence: accept it and resume at the same LR (asks first)"),
    ("ctrl+o", "set momentum, betas, weight_decay, clip_grad_norm now (asks: name=value)"),
    ("r, ctrl+r", "roll back to a kept checkpoint; the rest stays a branch (r: no field)"),
    ("e", "export the schedule to YAML" + NO_FIELD),
    ("t", "start TensorBoard on the session's logs, show the URL" + NO_FIELD),
    ("l", "log scale for the loss chart, on or off" + NO_FIELD),
    ("g", "the lower chart: learning rate or gradient norm" + NO_FIELD),
    ("+ (=) / - / 0", "charts: zoom in to the last epochs / zoom out / all epochs" + NO_FIELD),
    ("a", "y range: robust (far outliers clipped, marked ▲) or full" + NO_FIELD),
    ("o", "overlay another session or a branch on the loss chart; o again: off" + NO_FIELD),
    ("f", "LR range test on a copy of the model; proposes an LR" + NO_FIELD),
    ("q, ctrl+c", "quit: stop and save, or detach (q: no field focused)"),
    ("?", "this help" + NO_FIELD),
    ("Tab / Shift+Tab", "move between the fields, the queue and the table"),
    ("Del / x", "in the queue: remove the highlighted segment"),
    ("Enter on a queued segment", "edit it in the planner; Esc cancels"),
    ("ctrl+p", "command palette: every action by name"),
]
