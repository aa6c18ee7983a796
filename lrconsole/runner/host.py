"""Inside the runner process: the trainer on the main thread, the control server beside it."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from lrconsole import __version__
from lrconsole.core.session.layout import SOCKET
from lrconsole.core.train import events as ev
from lrconsole.core.train.trainer import Trainer
from lrconsole.runner.server import ControlServer


class Runner:
    def __init__(self, trainer: Trainer, idle_timeout: float = 600.0) -> None:
        self.trainer = trainer
        self.engine = trainer.engine
        self.idle_timeout = idle_timeout
        self.server = ControlServer(trainer.folder / SOCKET, self.handle, trainer.history)
        for kind in ev.ALL_EVENTS:
            if kind is not ev.BatchEnd:
                self.engine.on(kind, self._forward)
        self.engine.on(ev.BatchEnd, self.server.publish_batch)

    def _forward(self, event: ev.Event) -> None:
        self.server.publish(event.name, event.to_dict(), urgent=not isinstance(event, ev.EpochEnd))

    def serve(self) -> int:
        def on_signal(signum: int, frame: FrameType | None) -> None:
            self.engine.request_exit("shutdown")

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.server.start()
        self.server.call(lambda: self.server.loop.create_task(self._watch_idle()))
        try:
            reason = self.engine.run(wait=True)
        except (
            Exception
        ) as exc:  # the trainer died: tell every client, keep the last good checkpoint
            message = f"training failed: {type(exc).__name__}: {exc}"
            print(message, file=sys.stderr, flush=True)
            self.server.publish("error", {"message": message, "fatal": True})
            time.sleep(0.1)
            self.server.close("error")
            self.trainer.close(state="stopped", save=False)
            return 1
        self.trainer.close(state="stopped")
        self.server.close(reason)
        return 0

    async def _watch_idle(self) -> None:
        import asyncio

        while True:
            await asyncio.sleep(min(1.0, self.idle_timeout / 4))
            idle_for = time.monotonic() - self.server.last_client_seen
            if (
                not self.server.subscribers()
                and self.engine.paused
                and idle_for > self.idle_timeout
            ):
                self.engine.request_exit("idle")
                return

    # -- commands, on the server's thread ------------------------------------------------
    def handle(self, cmd: str, args: dict[str, Any]) -> Any:
        engine = self.engine
        if cmd == "hello":
            return self.snapshot()
        if cmd == "status":
            return engine.state()
        if cmd == "pause":
            engine.pause("operator")
        elif cmd == "stop_now":
            engine.pause("stop")
        elif cmd == "resume":
            engine.resume()
        elif cmd == "stop_after_epoch":
            engine.stop_after_epoch()
        elif cmd == "queue":
            engine.queue(args["segments"], replace=args["replace"])
            with engine._lock:
                return self.trainer.plan.to_dict(engine.global_step)
        elif cmd == "set_lr":
            step = engine.set_lr(args["lr"])
            return {"lr": args["lr"], "global_step": step}
        elif cmd == "rollback":
            epoch = args["epoch"]
            return engine.submit(lambda: self.trainer.rollback(epoch).to_dict())
        elif cmd == "lr_find":
            from lrconsole.core.train.lrfind import lr_find

            return engine.submit(lambda: lr_find(engine, **args).to_dict())
        elif cmd == "rollback_points":
            return {"epochs": self.trainer.rollback_points()}
        elif cmd == "shutdown":
            engine.request_exit("shutdown")
            return {}
        return engine.state()

    def snapshot(self) -> dict[str, Any]:
        m = self.trainer.manifest
        engine = self.engine
        with engine._lock:
            plan = self.trainer.plan.to_dict(engine.global_step)
        return {
            "protocol": 1,
            "runner": {"pid": os.getpid(), "version": __version__},
            "session": {
                "name": m.name,
                "dir": str(self.trainer.folder.resolve()),
                "task": m.task.spec,
                "seed": m.seed,
                "optimizer": m.optimizer.to_dict(),
                "steps_per_epoch": m.steps_per_epoch,
                "metrics": m.metrics,
                "monitor": m.monitor,
                "policy_marks": list(m.policy_marks),
            },
            "state": engine.state(),
            "plan": plan,
        }


def main(
    folder: Path,
    schedule_path: Path | None,
    task: str | None,
    seed: int | None,
    idle_timeout: float,
    paused: bool = False,
) -> int:
    from lrconsole.core.plan.schedule import Schedule
    from lrconsole.core.plan.segment import TaskSpec

    schedule = None
    if schedule_path is not None:
        schedule = Schedule.load(schedule_path)
    elif task is not None or seed is not None:
        schedule = Schedule([], task=TaskSpec(task or "lesson"), seed=seed or 0)
    trainer = Trainer.open(folder, schedule=schedule)
    if paused and trainer.engine.global_step < trainer.plan.total_steps:
        trainer.engine.pause("operator")  # a reopened session waits for the operator
    return Runner(trainer, idle_timeout).serve()
