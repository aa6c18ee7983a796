"""`lrconsole status`, `stop` and `attach --lines`: talking to a runner; `--socket` reaches
one at any socket path (a forwarded one), with the console too. No torch."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrconsole.client import ConnectionLost, Event, RunnerClient
from lrconsole.core.session.discover import resolve_session
from lrconsole.core.session.layout import SOCKET
from lrconsole.core.session.manifest import Manifest
from lrconsole.errors import NotAnswering, RunnerDied, UserError
from lrconsole.runner.launch import check_answering, runner_alive

if TYPE_CHECKING:  # the console (Textual) loads only for `attach --socket` without --lines
    from lrconsole.tui.app import ConsoleApp


def folder_of(args: argparse.Namespace) -> Path:
    return resolve_session(args.sessions_dir, args.session)


def describe_state(name: str, state: dict[str, Any]) -> str:
    reason = f" ({state['reason']})" if state.get("reason") else ""
    if state.get("diverged") is not None:
        reason = (
            f" (diverged in epoch {state['diverged']}: roll back, or resume --accept-divergence)"
        )
    return (
        f"{name}: {state['state']}{reason}  epoch {state['global_epoch']}  "
        f"step {state['global_step']}  lr {state['lr']:g}  {segment_of(state)}"
    )


def segment_of(state: dict[str, Any]) -> str:
    """The segment as people count them, from 1 (the state's `segment` is an index)."""
    index, count = state.get("segment"), state.get("segments")
    if index is None:
        return ""
    if count is None:  # a runner from before `segments` was in the state
        return f"segment {index + 1}"
    return f"segment {index + 1} of {count}" if index < count else f"all {count} segments done"


async def ask_status(sock: Path) -> dict[str, Any]:
    client = await RunnerClient.connect(sock, hello=False)
    try:
        return await client.call("status")
    finally:
        await client.close()


def socket_status(sock: Path) -> dict[str, Any]:
    """The state of the runner at any socket path (one forwarded by `ssh -L`, say)."""
    try:
        return asyncio.run(ask_status(sock))
    except ConnectionLost as exc:
        raise UserError(str(exc)) from None
    except TimeoutError as exc:
        raise NotAnswering(f"not answering: {sock}: {exc}") from None


def cmd_status(args: argparse.Namespace) -> int:
    if getattr(args, "socket", None) is not None:  # no session folder on this machine
        state = socket_status(args.socket)
        print(json.dumps(state) if args.json else describe_state(str(args.socket), state))
        return 0
    folder = folder_of(args)
    if not runner_alive(folder):
        check_answering(folder)  # a suspended runner is not "no runner"
        m = Manifest.read(folder)
        state = {
            "state": "stopped",
            "reason": None,
            "global_epoch": m.global_epoch,
            "global_step": m.global_step,
            "lr": 0.0,
            "segment": None,
            "runner": None,
        }
        print(
            json.dumps(state)
            if args.json
            else f"{m.name}: stopped (no runner)  epoch {m.global_epoch}  step {m.global_step}"
        )
        return 0

    state = asyncio.run(ask_status(folder / SOCKET))
    print(json.dumps(state) if args.json else describe_state(folder.name, state))
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    folder = folder_of(args)
    if not runner_alive(folder):
        check_answering(folder)  # else the stop request would be lost, reported as done
        print(f"{folder.name}: no runner is running")
        return 0

    async def stop() -> None:
        client = await RunnerClient.connect(folder / SOCKET, hello=False)
        await client.call("shutdown")
        await client.close()

    asyncio.run(stop())
    deadline = time.monotonic() + 30
    while runner_alive(folder) and time.monotonic() < deadline:
        time.sleep(0.05)
    print(f"{folder.name}: runner stopped and saved")
    return 0


def format_event(event: Event) -> str | None:
    d = event.data
    if event.name == "epoch":
        metrics = "  ".join(f"{k} {v:.5g}" for k, v in d["metrics"].items() if v is not None)
        return f"epoch {d['global_epoch']}  lr {d['lr']:g}  {metrics}"
    if event.name == "batch":
        return None
    if event.name == "segment_start":  # segments count from 1 where people read them
        return f"segment {d['index'] + 1} starts: {json.dumps(d['segment'])}"
    if event.name == "segment_end":
        return f"segment {d['index'] + 1} ends after step {d['global_step']}"
    return f"{event.name}: {json.dumps(d)}"


def cmd_attach(args: argparse.Namespace) -> int:
    """Print a runner's events as lines until it goes away or Ctrl-C."""
    socket: Path | None = getattr(args, "socket", None)
    if socket is None:
        folder = folder_of(args)
        if not runner_alive(folder):
            check_answering(folder)
        sock, name = folder / SOCKET, folder.name
    else:  # a forwarded socket: the session's folder is on another machine
        sock, name = socket, ""

    async def follow() -> str | None:
        """Follow until the runner goes; its goodbye reason, or None if it died."""
        client = await RunnerClient.connect(sock, client="lines")
        label = name or str(client.snapshot.get("session", {}).get("name", sock))
        print(describe_state(label, client.snapshot["state"]), flush=True)
        reason: str | None = None
        try:
            async for event in client.events():
                if event.name == "bye":
                    reason = str(event.data.get("reason", "?"))
                line = format_event(event)
                if line:
                    print(line, flush=True)
        except ConnectionLost as exc:
            print(f"detached: {exc}", file=sys.stderr)
        return reason

    try:
        reason = asyncio.run(follow())
    except ConnectionLost as exc:
        print(f"lrconsole: error: {exc}", file=sys.stderr)
        return 2
    except TimeoutError as exc:  # connected, but nobody answers (a suspended runner)
        raise NotAnswering(f"not answering: {sock}: {exc}") from None
    if reason is None or reason == "error":  # killed, crashed, or training failed
        if socket is not None:  # or the forward (ssh) went down: both look alike here
            raise RunnerDied(f"lost the runner at {socket}; see runner.log in its session")
        raise RunnerDied(f"the runner of {folder.name!r} died; see {folder / 'runner.log'}")
    return 0


def socket_app(sessions_dir: Path, sock: Path) -> ConsoleApp:
    """The console on the runner at `sock` (a socket forwarded by `ssh -L`, say).

    Everything goes through the socket: history, plan, steering. The session's files are
    on the runner's machine, so what reads them here (branches on the chart, TensorBoard)
    finds nothing: its folder is named after the socket and does not exist here.
    """
    from lrconsole.tui.app import make_app

    async def connect(first: bool) -> RunnerClient:
        return await RunnerClient.connect(sock, client="console")

    return make_app(
        sessions_dir,
        session_dir=sock.parent / f"{sock.name} (remote)",
        connector_factory=lambda _folder, _create, _attach: connect,
    )


def cmd_attach_socket(args: argparse.Namespace) -> int:
    socket_status(args.socket)  # no runner there: one line now, not a console with a modal
    app = socket_app(args.sessions_dir, args.socket)
    code = app.run()
    return int(code or 0) if app.return_code is None else int(app.return_code)
