"""Inside a training process: the trainer on the main thread, the control server beside it.

One `Runner.serve` trains for both a background runner (the console's) and a foreground
`lrconsole run`; they differ only in whether an empty queue waits and what a signal means.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from lrconsole._version import __version__
from lrconsole.core.session.layout import SOCKET
from lrconsole.core.train import events as ev
from lrconsole.core.train.trainer import Trainer
from lrconsole.errors import UserError
from lrconsole.protocol import ProtocolError
from lrconsole.runner.server import ControlServer

# A live rollback or LR range test reloads rank 0's model and optimizer alone: the other
# ranks would train on from weights of their own. Restarting from the files is exact.
ALONE = (
    "{cmd} is not possible while a distributed run trains (the other ranks would keep "
    "their weights): stop it (`lrconsole stop {session}`), then `lrconsole rollback "
    "{session} --epoch N` and start it again"
)


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

    def serve(self, *, wait: bool, on_signal: str, socket_optional: bool = False) -> str:
        """Train while serving the control socket; returns why training stopped, with the
        session saved and closed.

        `wait`: an empty queue pauses for the operator (a background runner) instead of
        ending the run. SIGINT and SIGTERM leave at the next batch with reason `on_signal`.
        `socket_optional`: a socket that cannot be served (a path over the OS limit) is
        a warning, not an error. If training raises, every client is told, the last good
        checkpoint is kept, and the exception goes on up.
        """
        engine = self.engine
        restore = _on_signals(lambda: engine.request_exit(on_signal))
        served = self._start_server(socket_optional)
        if served and wait:
            self.server.call(lambda: self.server.loop.create_task(self._watch_idle()))
        try:
            reason = engine.run(wait=wait)
        except Exception as exc:
            message = f"training failed: {type(exc).__name__}: {exc}"
            if wait:  # a background runner's log says why now: closing may take long
                print(message, file=sys.stderr, flush=True)
            if served:
                self.server.publish("error", {"message": message, "fatal": True})
                time.sleep(0.1)
                self.server.close("error")
            self.trainer.close(state="stopped", save=False)
            raise
        finally:
            restore()
        self.trainer.close(state="stopped")
        if served:
            self.server.close(reason)
        return reason

    def _start_server(self, optional: bool) -> bool:
        try:
            self.server.start()
        except UserError as exc:
            if not optional:
                raise
            print(
                f"lrconsole: warning: {exc}; status, attach and stop cannot reach this run",
                file=sys.stderr,
            )
            return False
        return True

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
            if engine.diverged and not args["accept"]:
                epoch = engine.state()["diverged"]
                raise ProtocolError("diverged", diverged_note(epoch, self.trainer.folder.name))
            engine.resume()
        elif cmd == "stop_after_epoch":
            engine.stop_after_epoch()
        elif cmd == "queue":
            return engine.queue(args["segments"], replace=args["replace"])
        elif cmd == "set_lr":
            step = engine.set_lr(args["lr"])
            return {"lr": args["lr"], "global_step": step}
        elif cmd == "set":
            return {"global_step": engine.set_settings(args)}
        elif cmd == "note":
            engine.set_note(args["segment"], args["text"])
            return engine.plan_dict()
        elif cmd == "end_segment":
            index, step = engine.end_segment(now=args["now"])
            return {"segment": index, "global_step": step}
        elif cmd == "extend_segment":
            return engine.extend_segment(args["epochs"])
        elif cmd in ("rollback", "lr_find") and engine.hooks.step_begin is not None:
            raise UserError(ALONE.format(cmd=cmd, session=self.trainer.folder.name))
        elif cmd == "rollback":
            epoch = args["epoch"]
            return engine.submit(lambda: self.trainer.rollback(epoch).to_dict())
        elif cmd == "lr_find":
            from lrconsole.core.train.lrfind import lr_find

            return engine.submit(lambda: lr_find(engine, **args).to_dict())
        elif cmd == "rollback_points":
            return {"epochs": self.trainer.rollback_points(), "pinned": self.trainer.pinned()}
        elif cmd == "pin":
            epoch, on = args["epoch"], args["on"]
            return engine.submit(lambda: self.trainer.pin(epoch, on))
        elif cmd == "shutdown":
            engine.request_exit("shutdown")
            return {}
        return engine.state()

    def snapshot(self) -> dict[str, Any]:
        m = self.trainer.manifest
        engine = self.engine
        plan = engine.plan_dict()
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
    mark = trainer.manifest.diverged
    if mark is not None and int(mark.get("step", 0)) > trainer.engine.global_step:
        # It diverged past its checkpoint: the same LR must not resume on its own.
        trainer.engine.hold_diverged(int(mark["step"]), int(mark.get("epoch", 0)))
    try:
        Runner(trainer, idle_timeout).serve(wait=True, on_signal="shutdown")
    except Exception:  # the trainer died: the clients were told, the log says why (serve)
        return 1
    return 0


def diverged_note(epoch: int | None, session: str) -> str:
    """Why a plain resume is refused after a divergence, and the two ways on."""
    return (
        f"the loss diverged in epoch {epoch}: roll back to a good checkpoint, or resume "
        f"with accept (`lrconsole resume {session} --accept-divergence`) to go on as planned"
    )


def run_in_foreground(runner: Runner, session: str) -> int:
    """Train the plan with a progress line; Ctrl-C or SIGTERM saves and leaves (130).

    The run serves the session's control socket as a background runner does, so
    `lrconsole status`, `attach` and `stop` reach it from another terminal.
    """
    from lrconsole.runner.progress import Progress

    trainer, engine = runner.trainer, runner.engine
    progress = Progress(sys.stderr, engine.plan.total_steps, engine.steps_per_epoch)
    engine.on(ev.EpochEnd, progress.on_epoch)
    try:
        reason = runner.serve(wait=False, on_signal="interrupted", socket_optional=True)
    finally:
        progress.finish()
    code, message = stop_message(reason, trainer, session)
    print(message, file=sys.stderr)
    return code


def stop_message(reason: str, trainer: Trainer, session: str) -> tuple[int, str]:
    """The exit code and closing line of a foreground run that stopped for `reason`."""
    engine = trainer.engine
    where = f"epoch {engine.global_epoch} (step {engine.global_step})"
    if reason == "shutdown":
        return 0, (
            f"stopped by `lrconsole stop`: saved at {where}; continue with "
            f"`lrconsole run {session}`"
        )
    if reason == "diverged":
        step, epoch = engine.diverged_at or (engine.global_step, engine.global_epoch)
        return 1, (
            f"diverged at step {step} (epoch {epoch}): the last good checkpoint "
            f"(epoch {trainer.manifest.global_epoch}) is kept; roll back with "
            f"`lrconsole rollback {session} --epoch N` and train on at a lower LR"
        )
    if reason == "interrupted":
        return 130, f"interrupted: saved at {where}; continue with `lrconsole run {session}`"
    return 0, f"done: {trainer.folder.name} at {where}"


def _on_signals(action: Any) -> Any:
    """Run `action` on SIGINT and SIGTERM; returns the undo. Off the main thread (a test,
    an embedding program) signals are not ours to take: nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: object) -> None:
        action()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
