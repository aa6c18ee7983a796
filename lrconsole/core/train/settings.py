"""Per-segment optimizer settings applied to a torch optimizer, as the LR is.

Right before each optimizer step the running segment's effective settings (each the last
value a segment up to it set; core.plan.settings) are written into every param group;
one no segment has set yet stays the optimizer's own. `clip_grad_norm` is not a param
group's: the step clips (core.train.step). Only values that differ are written, so the
hot path is a few dict reads per step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from lrconsole.core.plan import settings as opt
from lrconsole.core.plan.plan import Plan
from lrconsole.core.plan.segment import Segment
from lrconsole.errors import UserError


class EffectiveSettings:
    """The settings in force in a plan's segment, found once per segment and plan edit."""

    def __init__(self) -> None:
        self._key = (-1, -1)
        self._settings: dict[str, Any] = {}

    def at(self, plan: Plan, index: int) -> dict[str, Any]:
        key = (plan.version, index)
        if key != self._key:
            self._settings = opt.effective(plan.segments, index)
            self._key = key
        return self._settings


def effective_settings(plan: Plan, index: int) -> dict[str, Any]:
    """The settings in force in segment `index` of `plan` (uncached)."""
    return opt.effective(plan.segments, index)


def clip_of(settings: Mapping[str, Any]) -> float | None:
    """The max gradient norm to clip to, or None for no clipping."""
    value = settings.get("clip_grad_norm")
    return None if value is None or value == opt.CLIP_OFF else float(value)


def apply_settings(optimizer: torch.optim.Optimizer, settings: Mapping[str, Any]) -> None:
    """Write `settings` (those a param group holds) into every param group that differs."""
    for name in opt.GROUP_SETTINGS:
        if name not in settings:
            continue
        value = settings[name]
        for group in optimizer.param_groups:
            if group.get(name) != value:
                group[name] = value


def check_settings(optimizer: torch.optim.Optimizer, segments: Iterable[Segment]) -> None:
    """UserError naming the first setting `optimizer`'s param groups do not hold."""
    has = [name for name in opt.GROUP_SETTINGS if name in optimizer.defaults]
    label = type(optimizer).__name__
    for seg in segments:
        for name in seg.settings():
            if name in opt.GROUP_SETTINGS and name not in has:
                raise UserError(
                    f"{name}: the optimizer ({label}) has no {name} "
                    f"(it has: {', '.join(has) or 'none of momentum, betas, weight_decay'})"
                )
