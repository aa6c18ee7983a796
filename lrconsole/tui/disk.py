"""What the console reads from a session's files itself: the history before its runner
answers, the abandoned paths, the rows the rollback picker shows.

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
from lrconsole.core.session.metrics import GRAD_COLUMNS, read_rows
from lrconsole.core.session.snapshot import build_snapshot
from lrconsole.errors import UserError
from lrconsole.tui.model import RunModel
from lrconsole.tui.series import Series

COUNTERS = ("global_epoch", "global_step", "segment", "lr", "time")


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text else math.nan
    except ValueError:
        return None
    return None if math.isnan(value) else value


def snapshot_from_disk(folder: Path) -> dict[str, Any] | None:
    """A snapshot in the protocol's shape (no runner) read from the files, history up to
    the last checkpoint; None when the session has no readable manifest yet."""
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
        metrics = {k: _number(v) for k, v in row.items() if k not in COUNTERS + GRAD_COLUMNS}
        entry: dict[str, Any] = {
            "global_epoch": epoch,
            "global_step": step,
            "segment": int(row.get("segment") or 0),
            "lr": _number(row.get("lr")) or math.nan,
            "metrics": {k: v for k, v in metrics.items() if v is not None},
        }
        if _number(row.get("time")) is not None:  # the run's training time, at once
            entry["time"] = _number(row.get("time"))
        # Top level, as the runner's rows carry them: not loss metrics.
        entry |= {k: _number(row[k]) for k in GRAD_COLUMNS if row.get(k)}
        history.append(entry)
    plan = Plan(manifest.segments, manifest.steps_per_epoch)
    return build_snapshot(
        manifest,
        folder=folder,
        plan=plan.to_dict(manifest.global_step),
        # Paused until the runner says otherwise: nothing trains before it answers.
        state={"state": "paused", "reason": None, "global_epoch": manifest.global_epoch},
        history=history,
    )


def load_branches(folder: Path, model: RunModel) -> dict[str, Series]:
    """The monitored metric of each abandoned path, from its files, placed after its fork."""
    try:
        branches = Manifest.read(folder).branches
    except UserError:
        return {}
    monitor = model.monitor or ""
    out: dict[str, Series] = {}
    for branch in branches[-5:]:  # the latest few: more would only be noise
        try:
            rows = read_rows(folder / str(branch.get("metrics", "")))
        except OSError:
            continue
        values = [float(r[monitor]) if r.get(monitor) else math.nan for r in rows]
        lead = int(branch.get("fork_epoch", 0)) - model.first_epoch + 1
        if values and lead >= 0:
            out[f"path {branch.get('path')}"] = Series([math.nan] * lead + values)
    return out


def rollback_rows(folder: Path, metrics: list[str]) -> list[dict[str, Any]]:
    """metrics.csv's rows in the shape the rollback picker shows."""
    return [
        {
            "global_epoch": int(r["global_epoch"]),
            "lr": float(r["lr"]),
            "metrics": {k: float(v) for k, v in r.items() if k in metrics and v},
        }
        for r in read_metrics(folder)
    ]
