"""The control socket: an asyncio server on its own thread, beside the training thread.

Training never waits for it. Engine events reach it through `publish` (one thread-safe
loop wake-up per event) and batch progress through `publish_batch`, which only stores the
newest value; a pump sends that at most 20 times a second. Each client has a bounded
queue; one that stops reading is dropped with a reason.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import os
import resource
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lrconsole import protocol
from lrconsole.core.session.history import EpochHistory
from lrconsole.errors import UserError

# A handler answers at once with a dict, or with a Future when the work runs elsewhere.
Handler = Callable[[str, dict[str, Any]], Any]

MAX_CLIENTS = 64  # connected at once; more are told why and closed
ACCEPT_BACKLOG = 16  # connections accepted per loop turn: a flood holds few fds at once


def client_limit() -> int:
    """MAX_CLIENTS, or fewer under a low open-file limit: at most a quarter of the
    descriptors go to clients, so training (checkpoints, TensorBoard) never runs out."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return MAX_CLIENTS
    if soft == resource.RLIM_INFINITY:
        return MAX_CLIENTS
    return max(1, min(MAX_CLIENTS, soft // 4))


class Client:
    def __init__(self, server: ControlServer, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.writer = writer
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=protocol.CLIENT_BUFFER)
        self.subscribed = False
        self.name = "client"
        self.task = asyncio.get_running_loop().create_task(self._pump())

    def send(self, data: bytes) -> None:
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            self.drop("too_slow")

    def drop(self, reason: str) -> None:
        """Say bye with a reason and disconnect, without waiting for the client."""
        if self in self.server.clients:
            self.server.forget(self)
            with contextlib.suppress(Exception):
                self.writer.write(protocol.event("bye", self.server.next_seq(), {"reason": reason}))
            self.task.cancel()
            # A client that misbehaves is cut off hard (it may never read); the others get
            # their bye, so a client that sees none can tell a runner that died.
            cut = reason in ("too_slow", "line_too_long")
            self.writer.transport.abort() if cut else self.writer.close()

    async def _pump(self) -> None:
        try:
            while True:
                data = await self.queue.get()
                if data is None:
                    break
                self.writer.write(data)
                await self.writer.drain()
        except (ConnectionError, OSError):
            self.server.forget(self)


class ControlServer:
    def __init__(self, path: Path, handler: Handler, history: Iterable[dict[str, Any]]) -> None:
        self.path = path
        self.handler = handler
        # Appended on the loop thread, so snapshots stay consistent; bounded (thinned when
        # long): a runner's memory must not grow with its epochs. metrics.csv has them all.
        self.history = EpochHistory(history)
        self.clients: set[Client] = set()
        self.loop = asyncio.new_event_loop()
        self._seq = 0
        self._outbox: collections.deque[tuple[str, dict[str, Any]]] = collections.deque()
        self._latest_batch: Any = None  # a BatchEnd event
        self._sent_batch: Any = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lrconsole-control", daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._error: BaseException | None = None
        self.last_client_seen = time.monotonic()
        self._attached = 0  # subscribed clients, counted on the loop thread
        self.max_clients = client_limit()

    # -- called from other threads ---------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise UserError(f"cannot serve {self.path}: {self._error}")

    def publish(self, name: str, data: dict[str, Any], urgent: bool = True) -> None:
        """Queue an event in order; `urgent` wakes the loop now, others wait for the pump.

        Epoch events are not urgent: waking the loop thread 200 times a second costs the
        training thread its GIL turn, so they go out in batches of up to 50 ms.
        """
        self._outbox.append((name, data))
        if urgent:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody to tell
                self.loop.call_soon_threadsafe(self._flush)

    def publish_batch(self, event: Any) -> None:
        # Only the newest is kept, and turned into a dict by the pump: the step stays cheap.
        self._latest_batch = event

    def call(self, fn: Callable[[], object]) -> None:
        self.loop.call_soon_threadsafe(fn)

    def close(self, reason: str) -> None:
        if not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(reason), self.loop)
        with contextlib.suppress(Exception):
            future.result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    # -- the loop thread ---------------------------------------------------------------------
    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._listen())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.create_task(self._batch_pump())
        self.loop.run_forever()
        self.loop.close()

    async def _listen(self) -> None:
        self._hello = asyncio.Event()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket from a runner that died: we hold the lock
        old = os.umask(0o177)  # the socket is born 0600: no window for other users
        try:
            self._server = await asyncio.start_unix_server(
                self._serve_client, str(self.path), limit=protocol.MAX_LINE, backlog=ACCEPT_BACKLOG
            )
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def _shutdown(self, reason: str) -> None:
        for client in list(self.clients):
            client.drop(reason)
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        await asyncio.sleep(0.05)  # let the byes go out
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:  # let them finish: a loop closed on a pending task warns at exit
            await asyncio.wait(tasks, timeout=2)

    def subscribers(self) -> list[Client]:
        """Clients that said hello: consoles and followers, not one-shot probes."""
        return [c for c in self.clients if c.subscribed]

    def forget(self, client: Client) -> None:
        self.clients.discard(client)
        if client.subscribed:
            client.subscribed = False
            self._attached -= 1
            self.last_client_seen = time.monotonic()

    @property
    def attached(self) -> bool:
        """Whether a console is attached; safe to read from any thread."""
        return self._attached > 0

    def _flush(self) -> None:
        while self._outbox:
            name, data = self._outbox.popleft()
            self._broadcast(name, data)

    def _broadcast(self, name: str, data: dict[str, Any]) -> None:
        if name == "epoch":
            self.history.append(data)
        elif name == "rollback":
            self.history.truncate(int(data["global_epoch"]))
        message = protocol.event(name, self.next_seq(), data)
        for client in list(self.clients):
            if client.subscribed:
                client.send(message)

    async def _batch_pump(self) -> None:
        interval = 1.0 / protocol.BATCH_EVENTS_PER_SECOND
        while True:
            # With nobody attached there is nobody to tell: wake rarely, leave the GIL be.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._hello.wait(), interval if self._attached else 0.5)
            self._hello.clear()
            self._flush()
            latest = self._latest_batch
            if latest is not None and latest is not self._sent_batch:
                self._sent_batch = latest
                self._broadcast("batch", latest.to_dict())
            if self.subscribers():
                self.last_client_seen = time.monotonic()

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if len(self.clients) >= self.max_clients:
            reason = {"reason": "too_many_clients", "limit": self.max_clients}
            with contextlib.suppress(Exception):
                writer.write(protocol.event("bye", self._seq, reason))
                writer.close()
            return
        client = Client(self, writer)
        self.clients.add(client)
        try:
            while client in self.clients:
                try:
                    line = await reader.readline()
                except (asyncio.LimitOverrunError, ValueError):
                    client.send(
                        protocol.reply_error(
                            None, "line_too_long", f"lines are limited to {protocol.MAX_LINE} bytes"
                        )
                    )
                    await asyncio.sleep(0.05)  # let the reply go out before the bye
                    client.drop("line_too_long")
                    break
                if not line or not line.endswith(b"\n"):
                    break  # closed, possibly mid-message
                if line.strip():
                    self._answer(client, line)
        except (ConnectionError, OSError):
            pass
        finally:
            if client in self.clients:
                self.forget(client)
                client.task.cancel()
                writer.close()

    async def _answer_later(
        self, client: Client, request_id: Any, future: concurrent.futures.Future[dict[str, Any]]
    ) -> None:
        try:
            result = await asyncio.wrap_future(future)
            client.send(protocol.reply_ok(request_id, result))
        except UserError as exc:
            client.send(protocol.reply_error(request_id, "not_now", str(exc)))
        except Exception as exc:
            client.send(
                protocol.reply_error(request_id, "internal", f"{type(exc).__name__}: {exc}")
            )

    def _answer(self, client: Client, line: bytes) -> None:
        request_id = None
        try:
            request_id, cmd, raw_args = protocol.parse_request(line)
            args = protocol.check_args(cmd, raw_args)
            result = self.handler(cmd, args)
            if isinstance(result, concurrent.futures.Future):  # runs on the training thread
                self.loop.create_task(self._answer_later(client, request_id, result))
                return
            if cmd == "hello":
                self._hello.set()  # the pump goes back to 20 a second at once
                self._flush()  # epochs still in the outbox belong to the history
                result["history"] = self.history.rows()
                if not client.subscribed:
                    self._attached += 1
                client.subscribed = True
                client.name = args["client"]
            client.send(protocol.reply_ok(request_id, result))
        except protocol.ProtocolError as exc:
            request_id = request_id if exc.request_id is None else exc.request_id
            client.send(protocol.reply_error(request_id, exc.code, exc.message))
        except UserError as exc:
            client.send(protocol.reply_error(request_id, "not_now", str(exc)))
        except Exception as exc:  # a bug must not stop training: report it to the client
            client.send(
                protocol.reply_error(request_id, "internal", f"{type(exc).__name__}: {exc}")
            )
