"""An in-process stand-in for RunnerClient: deterministic data for snapshot tests.

It speaks the protocol's shapes (snapshot, events, command results) without a runner
process. Behaviour tests use the real runner; this fake serves the snapshot tests, where
the screen must be the same on every machine.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrconsole.core.plan.segment import OptimizerSpec, TaskSpec
from lrconsole.core.session.manifest import Manifest
from lrconsole.core.session.snapshot import build_snapshot

SPE = 14
METRICS = ["train_mse", "test_mse"]


class FakeConnectionLost(Exception):
    pass


class FakeCommandFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class FakeEvent:
    name: str
    data: dict[str, Any]
    seq: int


def lesson_like_history(segments: list[tuple[int, float]]) -> list[dict[str, Any]]:
    """A made-up but plausible loss curve: fixed numbers, no clock, no randomness."""
    rows: list[dict[str, Any]] = []
    epoch = 0
    for index, (epochs, lr) in enumerate(segments):
        for _ in range(epochs):
            epoch += 1
            train = 0.05 + 30.0 / (1.0 + epoch * lr * 8.0) + 0.3 * math.sin(epoch / 3.0) ** 2
            test = train * 1.15 + 0.02
            rows.append(
                {
                    "global_epoch": epoch,
                    "global_step": epoch * SPE,
                    "segment": index,
                    "lr": lr,
                    "metrics": {"train_mse": round(train, 6), "test_mse": round(test, 6)},
                    "time": 1_700_000_000.0 + epoch,
                }
            )
    return rows


@dataclass
class FakeClient:
    """Paused after `segments` with `queued` waiting; never trains by itself."""

    name: str = "demo"
    segments: list[tuple[int, float]] = field(default_factory=lambda: [(30, 0.03), (30, 0.01)])
    queued: list[tuple[int, float]] = field(default_factory=lambda: [(30, 0.005)])
    reason: str = "operator"
    diverged: bool = False  # a plain resume is refused with code "diverged", as the runner does

    def __post_init__(self) -> None:
        history = lesson_like_history(self.segments)
        done = sum(e for e, _ in self.segments)
        plan_segments = [{"epochs": e, "lr": lr} for e, lr in self.segments + self.queued]
        self.plan: dict[str, Any] = {
            "segments": plan_segments,
            "done_steps": done * SPE,
            "current": len(self.segments),
            "steps_per_epoch": SPE,
        }
        self.state = {
            "state": "paused",
            "reason": self.reason,
            "global_epoch": done,
            "global_step": done * SPE,
            "lr": self.segments[-1][1] if self.segments else None,
            "segment": len(self.segments),
        }
        manifest = Manifest(
            name=self.name,
            task=TaskSpec("lesson"),
            seed=0,
            optimizer=OptimizerSpec("sgd"),
            steps_per_epoch=SPE,
            metrics=list(METRICS),
            monitor="test_mse",
        )
        self.snapshot: dict[str, Any] = build_snapshot(
            manifest,
            folder=Path("sessions") / self.name,
            plan=dict(self.plan),
            state=dict(self.state),
            history=history,
            runner={"pid": 0, "version": "test"},
        )
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._queue: asyncio.Queue[FakeEvent | None] = asyncio.Queue()
        self._seq = 0

    def _emit(self, name: str, data: dict[str, Any]) -> None:
        self._seq += 1
        self._queue.put_nowait(FakeEvent(name, data, self._seq))

    async def call(self, cmd: str, timeout: float = 5.0, **args: Any) -> dict[str, Any]:
        self.calls.append((cmd, args))
        if cmd == "pause":
            self.state.update(state="paused", reason="operator")
            self._emit("paused", {"reason": "operator", "global_epoch": 60, "global_step": 840})
            return dict(self.state)
        if cmd == "resume":
            if self.diverged and not args.get("accept"):
                raise FakeCommandFailed("diverged", "the run diverged: roll back or accept")
            self.diverged = False
            self.state.update(state="running", reason=None)
            self._emit("resumed", {"global_step": self.plan["done_steps"]})
            return dict(self.state)
        if cmd == "queue":
            for seg in args["segments"]:
                if not 0 < float(seg["lr"]) <= 10:
                    raise FakeCommandFailed("bad_args", "lr: out of range")
            done = [s for s in self.plan["segments"][: self.plan["current"]]]
            if args.get("replace"):
                self.plan["segments"] = done + list(args["segments"])
            else:
                self.plan["segments"] = self.plan["segments"] + list(args["segments"])
            self._emit("plan", dict(self.plan))
            return dict(self.plan)
        if cmd == "shutdown":
            self._emit("bye", {"reason": "shutdown"})
            self._queue.put_nowait(None)
            return {}
        if cmd == "status":
            return dict(self.state)
        if cmd == "set_lr":
            self.state["lr"] = float(args["lr"])
            self._emit("lr_set", {"lr": float(args["lr"]), "global_step": self.plan["done_steps"]})
            return {"lr": float(args["lr"]), "global_step": self.plan["done_steps"]}
        index = min(self.plan["current"], len(self.plan["segments"]) - 1)
        end = SPE * sum(int(seg["epochs"]) for seg in self.plan["segments"][: index + 1])
        if cmd == "end_segment":  # as the runner answers: the segment, the step it ends at
            step = self.plan["done_steps"] if args.get("now") else end
            return {"segment": index, "global_step": step}
        if cmd == "extend_segment":
            segment = self.plan["segments"][index]
            segment["epochs"] = int(segment["epochs"]) + int(args["epochs"])
            self._emit("plan", dict(self.plan))
            end += int(args["epochs"]) * SPE
            return {"segment": index, "epochs": segment["epochs"], "end_step": end, "changed": True}
        raise FakeCommandFailed("unknown_command", cmd)

    async def events(self) -> AsyncIterator[FakeEvent]:
        while True:
            event = await self._queue.get()
            if event is None:
                raise FakeConnectionLost("the runner closed the connection")
            yield event

    def die(self, message: str = "RuntimeError: boom") -> None:
        self._emit("error", {"message": message, "fatal": True})
        self._queue.put_nowait(None)

    async def close(self) -> None:
        self._queue.put_nowait(None)


Connect = Callable[[bool], Awaitable["FakeClient"]]


def fake_factory(client: FakeClient) -> Callable[[Path, dict[str, Any] | None, bool], Connect]:
    """A connector factory for make_app that always hands out `client`."""

    def factory(session_dir: Path, create: dict[str, Any] | None, attach: bool) -> Connect:
        async def connect(first: bool) -> FakeClient:
            return client

        return connect

    return factory
