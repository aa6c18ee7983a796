"""An async client for a runner's control socket (docs/protocol.md). No torch import.

client = await RunnerClient.connect(folder / SOCKET)  # SOCKET: core.session.layout
print(client.snapshot["state"])
await client.call("queue", segments=[{"epochs": 5, "lr": 0.03}])
async for event in client.events():
    print(event.name, event.data)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrconsole.protocol import VERSION


@dataclass(frozen=True)
class Event:
    name: str
    data: dict[str, Any]
    seq: int


class ConnectionLost(Exception):
    """The runner went away (it exited, crashed, or dropped this client)."""


class CommandFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


_END = object()


class RunnerClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self.snapshot: dict[str, Any] = {}
        self.closed_reason: str | None = None
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    @classmethod
    async def connect(
        cls, socket_path: Path, *, client: str = "console", timeout: float = 5.0, hello: bool = True
    ) -> RunnerClient:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(socket_path), limit=2**28), timeout
            )
        except (OSError, asyncio.TimeoutError) as exc:
            raise ConnectionLost(f"no runner answers at {socket_path}: {exc}") from None
        self = cls(reader, writer)
        if hello:
            self.snapshot = await self.call("hello", timeout=timeout, client=client)
        return self

    async def call(self, cmd: str, timeout: float = 5.0, **args: Any) -> dict[str, Any]:
        """Send a command and wait for its reply; CommandFailed on an error reply."""
        if self.closed_reason is not None:
            raise ConnectionLost(self.closed_reason)
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        line = json.dumps({"v": VERSION, "id": request_id, "cmd": cmd, "args": args}) + "\n"
        try:
            self._writer.write(line.encode())
            await self._writer.drain()
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"the runner did not answer {cmd!r} within {timeout:g}s") from None
        except (ConnectionError, OSError) as exc:
            raise ConnectionLost(f"connection to the runner broke: {exc}") from None
        finally:
            self._pending.pop(request_id, None)

    async def events(self) -> AsyncIterator[Event]:
        """Every event in order; raises ConnectionLost once the runner is gone."""
        while True:
            item = await self._events.get()
            if item is _END:
                self._events.put_nowait(_END)  # later iterators end too
                raise ConnectionLost(self.closed_reason or "closed")
            yield item

    async def next_event(self, timeout: float | None = None) -> Event:
        item = await asyncio.wait_for(self._events.get(), timeout)
        if item is _END:
            self._events.put_nowait(_END)
            raise ConnectionLost(self.closed_reason or "closed")
        return item

    async def wait_for(self, name: str, timeout: float = 10.0) -> Event:
        """The next event called `name`, skipping others."""

        async def scan() -> Event:
            while True:
                event = await self.next_event()
                if event.name == name:
                    return event

        return await asyncio.wait_for(scan(), timeout)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()
        self._finish("closed by the client")

    def _finish(self, reason: str) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionLost(reason))
            self._events.put_nowait(_END)

    async def _read_loop(self) -> None:
        reason = "the runner closed the connection"
        fatal = ""
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    break
                message = json.loads(line)
                if message.get("type") == "reply":
                    future = self._pending.get(message.get("id"))
                    if future is not None and not future.done():
                        if message.get("ok"):
                            future.set_result(message.get("result") or {})
                        else:
                            error = message.get("error") or {}
                            future.set_exception(
                                CommandFailed(error.get("code", "?"), error.get("message", ""))
                            )
                elif message.get("type") == "event":
                    event = Event(
                        message["event"], message.get("data") or {}, message.get("seq", 0)
                    )
                    if event.name == "error" and event.data.get("fatal"):
                        fatal = str(event.data.get("message", ""))  # said before its bye
                    if event.name == "bye":
                        reason = f"the runner said bye: {event.data.get('reason', '?')}"
                        if fatal:
                            reason += f" ({fatal})"
                    self._events.put_nowait(event)
        except (ConnectionError, OSError, ValueError) as exc:
            reason = f"connection to the runner broke: {exc}"
        finally:
            self._finish(reason)
