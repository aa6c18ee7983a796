"""`lrconsole status`, `stop` and `attach --lines`: talking to a runner. No torch."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from lrconsole.client import ConnectionLost, Event, RunnerClient
from lrconsole.core.session.discover import resolve_session
from lrconsole.core.session.layout import SOCKET
from lrconsole.core.session.manifest import Manifest
from lrconsole.errors import RunnerDied
from lrconsole.runner.launch import check_answering, runner_alive


def folder_of(args: argparse.Namespace) -> Path:
    return resolve_session(args.sessions_dir, args.session)


def describe_state(name: str, state: dict[str, Any]) -> str:
    reason = f" ({state['reason']})" if state.get("reason") else ""
    return (
        f"{name}: {state['state']}{reason}  epoch {state['global_epoch']}  "
        f"step {state['global_step']}  lr {state['lr']:g}  segment {state['segment']}"
    )


def cmd_status(args: argparse.Namespace) -> int:
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

    async def ask() -> dict[str, Any]:
        client = await RunnerClient.connect(folder / SOCKET, hello=False)
        try:
            return await client.call("status")
        finally:
            await client.close()

    state = asyncio.run(ask())
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
    return f"{event.name}: {json.dumps(d)}"


def cmd_attach(args: argparse.Namespace) -> int:
    """Print a runner's events as lines until it goes away or Ctrl-C."""
    folder = folder_of(args)
    if not runner_alive(folder):
        check_answering(folder)

    async def follow() -> str | None:
        """Follow until the runner goes; its goodbye reason, or None if it died."""
        client = await RunnerClient.connect(folder / SOCKET, client="lines")
        print(describe_state(folder.name, client.snapshot["state"]), flush=True)
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
    if reason is None or reason == "error":  # killed, crashed, or training failed
        raise RunnerDied(f"the runner of {folder.name!r} died; see {folder / 'runner.log'}")
    return 0
