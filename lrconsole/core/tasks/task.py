"""The Task contract: what lrconsole needs to train a model, and how specs are loaded."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lrconsole.core.plan.segment import OptimizerSpec, TaskSpec
from lrconsole.errors import UserError

MetricFn = Callable[[torch.Tensor, torch.Tensor], "torch.Tensor | float"]


# Built-in tasks by name, as specs: the registry imports nothing until one is asked for.
BUILTIN_TASKS = {"lesson": "lrconsole.core.tasks.lesson:make_lesson_task"}

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
    spec = BUILTIN_TASKS.get(spec, spec)
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
