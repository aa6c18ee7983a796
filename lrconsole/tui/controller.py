"""The console's side of the runner connection: commands out, events in, model updated.

The controller holds no Textual widgets. The run screen runs `Controller.serve` in one
declared worker; `serve` connects, loads the snapshot and turns each event into a message.
Training runs in the runner process, so nothing here competes with it for the GIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from textual.message import Message

from lrconsole.tui import messages as m
from lrconsole.tui.model import RunModel


class ClientLike(Protocol):
    """What the console needs of `lrconsole.client.RunnerClient`."""

    snapshot: dict[str, Any]

    async def call(self, cmd: str, timeout: float = 5.0, **args: Any) -> dict[str, Any]: ...

    def events(self) -> AsyncIterator[Any]: ...

    async def close(self) -> None: ...


Connector = Callable[[bool], Awaitable[ClientLike]]
"""Connects to the session's runner; the argument says whether this is the first try."""

Post = Callable[[Message], bool]


class NotConnected(Exception):
    """A command while no runner is connected."""


def runner_connector(
    session_dir: Path, *, create: dict[str, Any] | None = None, attach: bool = False
) -> Connector:
    """The real connector: start the session's runner if needed, then say hello.

    `create` is used on the first try only; a restart resumes from the last checkpoint.
    """

    async def connect(first: bool) -> ClientLike:
        # Imported here: none of this is needed to draw the first frame.
        from lrconsole.client import RunnerClient
        from lrconsole.core.session.layout import SOCKET
        from lrconsole.errors import UserError
        from lrconsole.runner.launch import check_answering, ensure_runner, runner_alive

        if attach and first:
            if not await asyncio.to_thread(runner_alive, session_dir):
                check_answering(session_dir)  # a suspended holder: NotAnswering says so
                raise UserError(f"no runner is running for {session_dir.name}")
            sock = session_dir / SOCKET
        else:
            sock = await asyncio.to_thread(
                ensure_runner,
                session_dir,
                create=create if first else None,
                paused=first and create is None,
            )
        client: ClientLike = await RunnerClient.connect(sock, client="console")
        return client

    return connect


class Controller:
    """Owns one RunnerClient at a time and the RunModel it feeds."""

    def __init__(self, session_dir: Path, connector: Connector) -> None:
        self.session_dir = session_dir
        self.connector = connector
        self.model = RunModel()
        self.client: ClientLike | None = None
        self.closing = False  # set when the console itself ends the connection
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self._tries = 0
        self._post: Post | None = None

    @property
    def connected(self) -> bool:
        return self.client is not None

    async def serve(self, post: Post) -> None:
        """Connect, then pump events into `post` until the runner goes away (raises)."""
        self._post = post
        self.closing = False
        first = self._tries == 0
        self._tries += 1
        client = await self.connector(first)
        self.client = client
        try:
            self.model.load_snapshot(client.snapshot)
            post(m.Connected(client.snapshot))
            async for event in client.events():
                if event.name == "rollback":  # the past changed: start again from a snapshot
                    snapshot = await client.call("hello", client="console")
                    self.model.load_snapshot(snapshot)
                    post(m.Connected(snapshot))
                    epoch = int((event.data or {}).get("global_epoch", 0))
                    post(m.RunnerWarning(f"rolled back to epoch {epoch}; the rest is a branch"))
                    continue
                self._dispatch(event.name, event.data or {}, post)
        finally:
            self.client = None

    def _dispatch(self, name: str, data: dict[str, Any], post: Post) -> None:
        model = self.model
        if name == "batch":
            model.batch = data
            model.global_step = max(model.global_step, int(data.get("global_step") or 0))
            post(m.BatchProgress(data))
        elif name == "epoch":
            model.add_epoch(data)
            post(m.HistoryGrew(model.global_epoch))
        elif name == "segment_start":
            post(m.SegmentStarted(int(data.get("index", 0)), dict(data.get("segment") or {})))
        elif name == "segment_end":
            post(m.HistoryGrew(model.global_epoch))
        elif name == "paused":
            model.state = {**model.state, "state": "paused", "reason": data.get("reason")}
            epoch = int(data.get("global_epoch") or model.global_epoch)
            post(m.RunStateChanged("paused", data.get("reason"), epoch))
        elif name == "resumed":
            model.state = {**model.state, "state": "running", "reason": None}
            model.clock.resumed(time.time())  # the pause before it is not training time
            post(m.RunStateChanged("running", None, model.global_epoch))
        elif name == "plan":
            model.plan = dict(data)
            post(m.PlanChanged(dict(data)))
        elif name == "lr_set":
            model.set_current_lr(float(data.get("lr", 0)))
            post(m.LrSet(float(data.get("lr", 0)), int(data.get("global_step") or 0)))
        elif name == "settings_set":  # the `plan` event after it carries the split segment
            post(m.SettingsSet(dict(data.get("settings") or {}), int(data.get("step") or 0)))
        elif name == "checkpoint":
            post(m.CheckpointSaved(str(data.get("path", "")), int(data.get("global_epoch") or 0)))
        elif name == "policy":
            model.add_policy_mark(int(data.get("global_epoch") or 0), str(data.get("policy", "")))
            post(m.RunnerWarning(str(data.get("message", ""))))
            post(m.HistoryGrew(model.global_epoch))  # the charts draw the mark
        elif name == "warning":
            post(m.RunnerWarning(str(data.get("message", ""))))
        elif name == "error":
            model.last_error = str(data.get("message", "the trainer failed"))
            post(m.RunnerError(model.last_error, bool(data.get("fatal"))))
        elif name == "bye":
            model.state = {**model.state, "bye": data.get("reason")}

    async def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        """Send one command; raises NotConnected, or the client's CommandFailed."""
        client = self.client
        if client is None:
            raise NotConnected("no runner is connected")
        self.sent.append((cmd, args))
        if self._post is not None:
            self._post(m.CommandSent(cmd, dict(args)))
        result = await client.call(cmd, **args)
        # The state in a pause/resume reply can predate the change (the trainer applies it
        # at the next batch boundary); the paused/resumed events are the truth for those.
        if cmd == "status" and result:
            self.model.state = {**self.model.state, **result}
        elif cmd == "queue" and result:
            self.model.plan = dict(result)
        elif cmd == "set_lr" and result and result.get("lr") is not None:
            self.model.set_current_lr(float(result["lr"]))
        return result

    async def close(self, *, shutdown: bool) -> None:
        """End the connection; with `shutdown`, the runner saves and exits first."""
        self.closing = True
        client = self.client
        if client is None:
            return
        if shutdown:
            self.sent.append(("shutdown", {}))
            with contextlib.suppress(Exception):  # the runner may already be gone
                await client.call("shutdown", timeout=30.0)
        with contextlib.suppress(Exception):
            await client.close()
        self.client = None
