"""Export the schedule a session has trained so far (for `e`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from lrconsole.core.plan.plan import Plan
from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.plan.segment import Segment
from lrconsole.core.session.discover import export_schedule
from lrconsole.core.session.manifest import Manifest
from lrconsole.errors import UserError
from lrconsole.tui.model import RunModel


def export(session_dir: Path, path: Path, model: RunModel | None = None) -> Schedule:
    """Write the trained path as schedule YAML at `path`; return it.

    With a live `model`, the segments come from the runner's plan (fresher than the
    manifest on disk); task, seed and optimizer come from the manifest.
    """
    if model is not None and model.segments():
        # Everything but the segments comes from the manifest's one schedule builder, so
        # settings such as spike_factor are never dropped on the way.
        segments = [Segment.from_dict(s) for s in model.segments()]
        done = Plan(segments, model.steps_per_epoch).done(model.done_steps())
        schedule = replace(Manifest.read(session_dir).schedule(done_only=False), segments=done)
    else:
        schedule = export_schedule(session_dir)
    if not schedule.segments:
        raise UserError("nothing to export yet: no segment has trained")
    path.parent.mkdir(parents=True, exist_ok=True)
    schedule.dump(path)
    return schedule
