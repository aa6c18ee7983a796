"""What the console can draw from a session's files alone, before its runner answers.

Starting a runner takes seconds (it imports torch); the history is on disk already, so the
run screen draws it at once and swaps in the runner's own snapshot when it connects.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lrconsole.core.plan.plan import Plan
from lrconsole.core.session.discover import read_metrics
from lrconsole.core.session.layout import MANIFEST
from lrconsole.core.session.manifest import Manifest
from lrconsole.errors import UserError

COUNTERS = ("global_epoch", "global_step", "segment", "lr", "time")


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text else math.nan
    except ValueError:
        return None
    return None if math.isnan(value) else value


def snapshot_from_disk(folder: Path) -> dict[str, Any] | None:
    """A snapshot in the protocol's shape (session, plan, history) read from the files,
    up to the last checkpoint; None when the session has no readable manifest yet."""
    if not (folder / MANIFEST).exists():
        return None
    try:
        manifest = Manifest.read(folder)
    except UserError:
        return None  # the runner will say what is wrong with it
    history = []
    for row in read_metrics(folder):
        try:
            epoch, step = int(row["global_epoch"]), int(row["global_step"])
        except (KeyError, ValueError):
            continue
        if step > manifest.global_step:
            break  # past the last checkpoint: a resumed runner trains these again
        metrics = {k: _number(v) for k, v in row.items() if k not in COUNTERS}
        history.append(
            {
                "global_epoch": epoch,
                "global_step": step,
                "segment": int(row.get("segment") or 0),
                "lr": _number(row.get("lr")) or math.nan,
                "metrics": {k: v for k, v in metrics.items() if v is not None},
            }
        )
    plan = Plan(manifest.segments, manifest.steps_per_epoch)
    return {
        "session": {
            "name": manifest.name,
            "task": manifest.task.spec,
            "steps_per_epoch": manifest.steps_per_epoch,
            "metrics": manifest.metrics,
            "monitor": manifest.monitor,
            "policy_marks": manifest.policy_marks,
        },
        "state": {"state": "paused", "reason": None, "global_epoch": manifest.global_epoch},
        "plan": plan.to_dict(manifest.global_step),
        "history": history,
    }
