"""The Task contract: what lrconsole needs to train a model, and how specs are loaded."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lrconsole.core.schedule import OptimizerError, OptimizerSpec, TaskSpec
from lrconsole.errors import UserError

MetricFn = Callable[[torch.Tensor, torch.Tensor], "torch.Tensor | float"]


OWN_LOOP = "own-loop:"  # the task spec of a session steered from a user's script


class TaskError(UserError):
    """A task spec that cannot be loaded, or a factory that did not return a Task."""


@dataclass
class Task:
    """Everything lrconsole needs to train and evaluate one model.

    Per epoch, lrconsole trains one pass over `train_loader`, then in eval mode computes
    `loss` and every entry of `metrics` over each whole set in `eval_sets`; the results
    are named `<set>_<metric>` (for example `test_loss`, `test_acc`).
    """

    model: nn.Module
    train_loader: Iterable[Any]
    eval_sets: Mapping[str, Iterable[Any]]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    optimizer: OptimizerSpec | str = "sgd"
    metrics: Mapping[str, MetricFn] = field(default_factory=dict)
    monitor: str | None = None
    threads: int | None = None
    device: str = "cpu"
    # Explicit metric names, for a user's own loop that reports its metrics itself.
    names: list[str] | None = None

    def metric_names(self) -> list[str]:
        if self.names is not None:
            return list(self.names)
        names = ["loss", *self.metrics]
        return [f"{s}_{m}" for s in self.eval_sets for m in names]

    def monitored(self) -> str:
        """The metric that "best" refers to: `monitor`, else the last set's loss."""
        names = self.metric_names()
        if self.monitor is not None:
            if self.monitor not in names:
                raise TaskError(f"task monitor {self.monitor!r} is not one of {names}")
            return self.monitor
        if self.names is not None:
            return names[-1]
        return names[-len(self.metrics) - 1]

    def optimizer_spec(self) -> OptimizerSpec:
        if isinstance(self.optimizer, str):
            return OptimizerSpec(self.optimizer)
        return self.optimizer


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


def load_task(spec: TaskSpec) -> Task:
    """Build the task named by `spec`: `lesson`, `package.module:factory` or `file.py:factory`."""
    factory = _find_factory(spec.spec)
    try:
        task = factory(**dict(spec.args))
    except UserError:
        raise
    except Exception as exc:  # a user's factory may raise anything; show it in one line
        raise TaskError(
            f"task {spec.spec!r}: the factory raised {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(task, Task):
        raise TaskError(
            f"task {spec.spec!r}: the factory returned {type(task).__name__}, not lrconsole.Task"
        )
    return task


def _find_factory(spec: str) -> Callable[..., Any]:
    if spec.startswith(OWN_LOOP):
        script = spec[len(OWN_LOOP) :]
        raise TaskError(
            f"this session is trained by your own script ({script}): run it to continue"
        )
    if spec == "lesson":
        from lrconsole.core.lesson import make_lesson_task

        return make_lesson_task
    if ":" not in spec:
        raise TaskError(
            f"task {spec!r}: expected 'lesson', 'module.path:factory' or 'file.py:factory'"
        )
    where, _, name = spec.rpartition(":")
    if where.endswith(".py") or "/" in where:
        module = _import_file(Path(where), spec)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise TaskError(f"task {spec!r}: cannot import {where!r}: {exc}") from None
        except Exception as exc:
            raise TaskError(
                f"task {spec!r}: importing {where!r} raised {type(exc).__name__}: {exc}"
            ) from None
    factory = getattr(module, name, None)
    if not callable(factory):
        raise TaskError(f"task {spec!r}: {where!r} has no function {name!r}")
    return factory


def _import_file(path: Path, spec: str) -> Any:
    if not path.is_file():
        raise TaskError(f"task {spec!r}: no such file {str(path)!r}")
    module_name = f"lrconsole_user_task_{abs(hash(str(path.resolve())))}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise TaskError(f"task {spec!r}: cannot load {str(path)!r}")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        raise TaskError(
            f"task {spec!r}: loading {str(path)!r} raised {type(exc).__name__}: {exc}"
        ) from None
    return module
