"""Optimizers by name: built from a spec, and every refusal of torch's named in one line."""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterable
from typing import Any

import torch

from lrconsole.core.plan.segment import OptimizerError, OptimizerSpec

OPTIMIZER_CLASSES: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
}


def build_optimizer(spec: OptimizerSpec, params: Iterable[Any], lr: float) -> torch.optim.Optimizer:
    """SGD (with optional momentum), Adam, AdamW or RMSprop from a spec.

    Anything torch refuses raises OptimizerError naming the `optimizer` field and the
    argument at fault: `optimizer: sgd rejects momentum=-3: Invalid momentum value: -3`.
    """
    try:
        cls = OPTIMIZER_CLASSES[spec.name.lower()]
    except KeyError:
        known = ", ".join(OPTIMIZER_CLASSES)
        raise OptimizerError(f"optimizer: unknown name {spec.name!r} (known: {known})") from None
    kwargs = dict(spec.kwargs)
    try:
        return cls(params, lr=lr, **kwargs)  # type: ignore[call-arg]
    except Exception as exc:
        raise OptimizerError(_rejection(spec.name, cls, kwargs, lr, exc)) from None


def check_optimizer(spec: OptimizerSpec, source: str | None = None) -> None:
    """Build `spec` on a throwaway parameter; OptimizerError (prefixed `source: `) if refused."""
    try:
        build_optimizer(spec, [torch.zeros(1, requires_grad=True)], 1e-3)
    except OptimizerError as exc:
        if source is None:
            raise
        raise OptimizerError(f"{source}: {exc}") from None


def _rejection(
    name: str, cls: type[torch.optim.Optimizer], kwargs: dict[str, Any], lr: float, exc: Exception
) -> str:
    """Which argument torch refused, and why, in one line."""
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    try:
        parameters = list(inspect.signature(cls.__init__).parameters.values())
    except (TypeError, ValueError):
        parameters = []
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    given = ("self", "params", "lr")  # what build_optimizer passes itself
    takes = [p.name for p in parameters if p.kind in named and p.name not in given]
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    unknown = [k for k in kwargs if k not in takes]
    if unknown and takes and not open_ended:
        return f"optimizer: {name} has no argument {unknown[0]!r} (it takes: {', '.join(takes)})"

    def refused(**trial: Any) -> bool:
        try:
            cls([torch.zeros(1, requires_grad=True)], lr=lr, **trial)  # type: ignore[call-arg]
        except Exception:
            return True
        return False

    if refused():
        return f"optimizer: {name} refuses lr={lr:g}: {reason}"
    if not refused(**kwargs):  # the spec is fine: torch refused the model's parameters
        return f"optimizer: {name}: {reason}"
    # The argument whose removal makes torch accept the rest; else those it refuses on
    # their own; else it is the combination.
    culprits = [k for k in kwargs if not refused(**{o: v for o, v in kwargs.items() if o != k})]
    culprits = culprits or [k for k in kwargs if refused(**{k: kwargs[k]})] or list(kwargs)
    args = ", ".join(f"{k}={_show(kwargs[k])}" for k in culprits)
    return f"optimizer: {name} rejects {args}: {reason}"


def _show(value: Any) -> str:
    """A value as the YAML had it: true, null, "x", [0.9, 2]."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
