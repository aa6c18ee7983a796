"""The plan: every segment of a session, finished, running and queued, on one step axis.

Segment `i` covers global steps `[starts[i], starts[i] + length_i)`. Only segments that
have not started can be replaced, so the past stays exactly as it was trained.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from lrconsole.core.plan import settings, shapes
from lrconsole.core.plan.schema import SEGMENTS_MAX
from lrconsole.core.plan.segment import ScheduleError, Segment


def _capped(segments: list[Segment]) -> list[Segment]:
    """A queued plan may not grow past the segments a schedule file may hold."""
    if len(segments) > SEGMENTS_MAX:
        raise ScheduleError(
            f"the plan would hold {len(segments):,} segments (the limit is {SEGMENTS_MAX:,})"
        )
    return segments


# A shape's length parameters that default to the segment's length (cyclic's rise: half).
_LENGTH_PARAMS = {"warmup": 1.0, "total_iters": 1.0, "T_max": 1.0, "total_steps": 1.0}
_LENGTH_PARAMS["step_size_up"] = 0.5


def pinned(seg: Segment, steps_per_epoch: int) -> Segment:
    """`seg` with every length parameter its shape takes from the segment's length written
    out: cut short or made longer, its steps keep the LRs they had (export replays them)."""
    if seg.shape == "constant":
        return seg
    length = seg.length(steps_per_epoch)
    if seg.params.get("per_epoch"):
        length = -(-length // steps_per_epoch)
    params = dict(seg.params)
    for key, share in _LENGTH_PARAMS.items():
        if key in shapes.SHAPES[seg.shape].params and params.get(key) is None:
            value = length * share
            params[key] = int(value) if value == int(value) else value
    return replace(seg, params=params)


def resized(seg: Segment, steps: int, steps_per_epoch: int) -> Segment:
    """`seg` (pinned) made `steps` long; in epochs when it was and they divide."""
    out = pinned(seg, steps_per_epoch)
    if steps % steps_per_epoch == 0 and seg.steps is None:
        return replace(out, epochs=steps // steps_per_epoch)
    return replace(out, epochs=None, steps=steps)


class Plan:
    def __init__(self, segments: Iterable[Segment], steps_per_epoch: int) -> None:
        self.steps_per_epoch = steps_per_epoch
        self.segments: list[Segment] = []
        self.starts: list[int] = []
        self.total_steps = 0
        self.version = 0
        self._set(list(segments))

    def _set(self, segments: list[Segment]) -> None:
        self.segments = segments
        self.starts = []
        at = 0
        for seg in segments:
            self.starts.append(at)
            at += seg.length(self.steps_per_epoch)
        self.total_steps = at
        self.version += 1

    def locate(self, step: int) -> tuple[int, int]:
        """(index, position) of `step`; index == len(segments) past the end."""
        if step >= self.total_steps:
            return len(self.segments), step - self.total_steps
        index = bisect.bisect_right(self.starts, step) - 1
        return index, step - self.starts[index]

    def lr_at_step(self, step: int) -> float:
        """The LR of global step `step` (past the plan's end: its last segment's LR)."""
        index, pos = self.locate(step)
        if index < len(self.segments):
            return self.segments[index].lr_at(pos, self.steps_per_epoch)
        return self.segments[-1].lr if self.segments else 1e-3

    def end_of(self, index: int) -> int:
        return self.starts[index] + self.segments[index].length(self.steps_per_epoch)

    # -- edits; `step` is the first step not yet trained -----------------------------
    def reset(self, segments: Iterable[Segment]) -> None:
        self._set(list(segments))

    def append(self, segments: Iterable[Segment]) -> None:
        self._set(_capped(self.segments + list(segments)))

    def replace_queued(self, step: int, segments: Iterable[Segment]) -> None:
        """Swap every segment that starts at or after `step` for `segments`."""
        keep = [s for s, start in zip(self.segments, self.starts, strict=True) if start < step]
        self._set(_capped(keep + list(segments)))

    def split_at(self, step: int, lr: float | None, settings: dict[str, Any] | None = None) -> None:
        """From `step` on, the running segment's remainder trains at a constant `lr` (None:
        the LR it has; then a shaped segment can only be split where it starts) with
        `settings` over its own."""
        index, pos = self.locate(step)
        if index >= len(self.segments):
            raise ScheduleError("nothing is queued: queue a segment to set its LR")
        seg = self.segments[index]
        changes = dict(settings or {})
        if lr is not None:  # the rest keeps the policies but not the shape: the LR given
            changes.update(lr=lr, shape="constant", params={})
        elif pos > 0 and seg.shape != "constant":
            raise ScheduleError(
                f"segment {index + 1} has the shape {seg.shape}: give an LR too "
                "(its rest trains at a constant LR from here)"
            )
        rest = seg.length(self.steps_per_epoch) - pos
        tail = replace(seg, epochs=None, steps=rest, fresh_optimizer=False, **changes)
        if pos == 0:
            tail = replace(tail, fresh_optimizer=seg.fresh_optimizer)
        if rest % self.steps_per_epoch == 0 and pos % self.steps_per_epoch == 0:
            tail = replace(tail, epochs=rest // self.steps_per_epoch, steps=None)
        head = [resized(seg, pos, self.steps_per_epoch)] if pos > 0 else []
        self._set(self.segments[:index] + head + [tail] + self.segments[index + 1 :])

    def set_note(self, index: int, note: str) -> None:
        """Write segment `index`'s note (any segment: a note never changes training)."""
        if not 0 <= index < len(self.segments):
            raise ScheduleError(
                f"no segment {index + 1}: the plan has {len(self.segments)} (numbered from 1)"
            )
        self.segments[index] = replace(self.segments[index], note=note)
        self.version += 1

    def truncate_at(self, step: int) -> None:
        """End the segment running at `step` there; later segments stay queued."""
        index, pos = self.locate(step)
        if index >= len(self.segments) or pos == 0:
            return
        self.resize(index, pos)

    def resize(self, index: int, steps: int) -> None:
        """Make segment `index` `steps` long (cut short or extended); the rest follow it."""
        seg = resized(self.segments[index], steps, self.steps_per_epoch)
        self._set(self.segments[:index] + [seg] + self.segments[index + 1 :])

    def done(self, step: int) -> list[Segment]:
        """The path trained up to `step`: finished segments and the running one, cut; a
        setting equal to the one in force is left out (so an exported path, which leaves
        it out, compares equal)."""
        out = []
        for seg, start in zip(self.segments, self.starts, strict=True):
            if start >= step:
                break
            length = seg.length(self.steps_per_epoch)
            out.append(
                seg if start + length <= step else resized(seg, step - start, self.steps_per_epoch)
            )
        cleared: list[dict[str, Any]] = [dict.fromkeys(same) for same in settings.repeated(out)]
        return [
            replace(seg, **clear) if clear else seg for seg, clear in zip(out, cleared, strict=True)
        ]

    def to_dict(self, step: int) -> dict[str, Any]:
        index, _ = self.locate(step)
        return {
            "segments": [s.to_dict() for s in self.segments],
            "done_steps": step,
            "current": index,
            "steps_per_epoch": self.steps_per_epoch,
        }
