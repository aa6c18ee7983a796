"""Export the schedule a session has trained so far (for `e`)."""

from __future__ import annotations

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
        manifest = Manifest.read(session_dir)
        segments = [Segment.from_dict(s) for s in model.segments()]
        plan = Plan(segments, model.steps_per_epoch)
        schedule = Schedule(
            plan.done(model.done_steps()),
            model.steps_per_epoch,
            manifest.task,
            manifest.seed,
            manifest.threads,
            manifest.optimizer,
        )
    else:
        schedule = export_schedule(session_dir)
    if not schedule.segments:
        raise UserError("nothing to export yet: no segment has trained")
    path.parent.mkdir(parents=True, exist_ok=True)
    schedule.dump(path)
    return schedule
