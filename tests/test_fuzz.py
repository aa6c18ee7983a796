"""Fuzz the control socket while the runner trains: it must answer and train on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
from pathlib import Path

import pytest

from lrconsole.client import RunnerClient
from lrconsole.core.session.discover import read_metrics
from lrconsole.runner.launch import ensure_runner

pytestmark = pytest.mark.slow

BASE = [
    {"v": 1, "id": 1, "cmd": "status"},
    {"v": 1, "id": 2, "cmd": "hello", "args": {"client": "fuzz"}},
    {"v": 1, "id": 3, "cmd": "queue", "args": {"segments": [{"epochs": 1, "lr": 0.001}]}},
    {"v": 1, "id": 4, "cmd": "set_lr", "args": {"lr": 0.01}},
    {
        "v": 1,
        "id": 5,
        "cmd": "queue",
        "args": {"segments": [{"epochs": -2, "lr": 1e9}], "replace": "y"},
    },
]
JUNK = [None, True, -1, 0, 1e308, "", "x" * 300, [], {}, [1, 2], {"a": None}, float("nan")]


def mutate(rng: random.Random) -> bytes:
    choice = rng.random()
    if choice < 0.2:
        return (
            bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200))).replace(b"\n", b"")
            + b"\n"
        )
    message = json.loads(json.dumps(rng.choice(BASE)))
    if choice < 0.6:
        key = rng.choice(["v", "id", "cmd", "args", "extra"])
        message[key] = rng.choice(JUNK)
    elif choice < 0.8 and "args" in message:
        for k in list(message["args"]):
            message["args"][k] = rng.choice(JUNK)
    text = json.dumps(message)
    if rng.random() < 0.4:  # character-level damage
        chars = list(text)
        for _ in range(rng.randint(1, 5)):
            i = rng.randrange(len(chars))
            chars[i] = rng.choice('{}[]",:0\\ab\x00')
        text = "".join(chars)
    return text.replace("\n", " ").encode("utf-8", "replace") + b"\n"


async def drain(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


async def test_a_thousand_bad_lines_leave_the_runner_training(sessions: Path) -> None:
    folder = sessions / "fuzz"
    sock = ensure_runner(folder, create={"task": "lesson", "seed": 0})
    watcher = await RunnerClient.connect(sock)
    await watcher.call("queue", segments=[{"epochs": 3000, "lr": 0.01}])
    start_epoch = (await watcher.call("status"))["global_epoch"]
    rng = random.Random(1234)
    sent = 0
    while sent < 1200:
        reader, writer = await asyncio.open_unix_connection(str(sock), limit=2**24)
        reading = asyncio.create_task(drain(reader))
        for _ in range(rng.randint(20, 120)):
            writer.write(mutate(rng))
            sent += 1
        roll = rng.random()
        if roll < 0.2:
            writer.write(b'{"v":1,"id":9,"cmd":"sta')  # disconnect mid-message
        elif roll < 0.3:
            writer.write(b"x" * 70_000 + b"\n")  # over the line limit: the client is dropped
            sent += 1
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        await asyncio.sleep(0.01)
        writer.close()
        reading.cancel()
    state = await watcher.call("status")  # still answering
    assert state["global_epoch"] > start_epoch  # and still training
    await watcher.call("pause")
    await watcher.wait_for("paused", timeout=10)
    pid = watcher.snapshot["runner"]["pid"]
    await watcher.call("shutdown")
    await watcher.close()
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        await asyncio.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
    rows = read_metrics(folder)
    assert [int(r["global_epoch"]) for r in rows] == list(range(1, len(rows) + 1))
    assert len(rows) >= state["global_epoch"]
    assert sent >= 1000
