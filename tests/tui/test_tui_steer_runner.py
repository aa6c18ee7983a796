"""Steering the running segment from the console, with a real runner behind it; and a
runner that holds the session but does not answer (suspended)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import Static

from lrconsole.tui import messages as m
from lrconsole.tui.screens.dialogs import ErrorScreen, PromptScreen
from lrconsole.tui.screens.run import RunScreen
from tests.tui.test_tui_pilot import (
    LESSON,
    SIZE,
    Recorder,
    connected,
    console,
    finish,
    set_field,
    stop_runner,
    wait_for,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Path]:
    sessions = tmp_path / "sessions"
    sessions.mkdir()
    folder = sessions / "steer"
    yield folder
    stop_runner(folder)


async def test_lr_and_segment_keys_steer_the_running_segment(session: Path) -> None:
    rec = Recorder()
    app = console(session, create=dict(LESSON))
    async with app.run_test(size=SIZE, message_hook=rec) as pilot:
        screen = await connected(pilot, app)
        await set_field(pilot, screen, "epochs", "5000")
        await set_field(pilot, screen, "lr", "0.01")
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.model.global_epoch >= 2, what="training")
        # F3 from inside a field: LR ÷10 from the next step; nothing typed.
        await pilot.press("f3")
        await wait_for(pilot, lambda: rec.of(m.LrSet), what="the lr_set event")
        assert rec.of(m.LrSet)[-1].lr == 0.001
        assert screen.query_one("#lr").value == "0.01"  # type: ignore[attr-defined]
        await wait_for(
            pilot,
            lambda: screen.model.lr.last == 0.001,
            what="an epoch at the new LR",
        )
        # F6: the segment ends after this epoch and the queue (empty) moves on: it waits.
        await pilot.press("f6")
        await wait_for(
            pilot,
            lambda: screen.model.state.get("reason") == "queue_empty" and not screen.model.running,
            timeout=40,  # the epoch in progress ends first; a loaded CI box is slow
            what="the end of the segment",
        )
        ended_at = screen.model.global_epoch
        assert ended_at < 1000
        assert not screen.model.pending()
        # F8 on a paused segment: 1000 epochs shortened by 995 train 5.
        await pilot.press("escape")
        await pilot.press("space")  # no field focused: nothing queued, so it says so
        await set_field(pilot, screen, "epochs", "1000")
        await screen.controller.call("pause")
        await wait_for(pilot, lambda: screen.model.state.get("reason") == "operator", what="pause")
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.model.pending(), what="the queued segment")
        await pilot.press("f8")
        assert isinstance(app.screen, PromptScreen)
        await pilot.press("minus", "9", "9", "5", "enter")
        await wait_for(
            pilot,
            lambda: screen.model.segments()[-1].get("epochs") == 5,
            what="the shortened plan",
        )
        await pilot.press("escape")
        await pilot.press("space")
        await wait_for(
            pilot,
            lambda: screen.model.global_epoch == ended_at + 5 and not screen.model.running,
            what="5 epochs",
        )
        commands = rec.commands()
        assert {"set_lr", "end_segment", "extend_segment"} <= set(commands)
        await finish(app)


async def test_a_suspended_runner_is_named_at_once(session: Path) -> None:
    from lrconsole.core.session.discover import runner_pid
    from lrconsole.runner.launch import ensure_runner

    ensure_runner(session, create=dict(LESSON))
    pid = runner_pid(session)
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        app = console(session)
        async with app.run_test(size=SIZE) as pilot:
            start = time.monotonic()
            await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen), 15, "the modal")
            assert time.monotonic() - start < 10  # not the 20 s of "connecting…"
            await pilot.pause(0.2)  # the modal composes its buttons
            modal = app.screen
            assert isinstance(modal, ErrorScreen) and modal.held
            assert f"not answering: PID {pid} holds the session (suspended?)" in modal.message
            assert "Try again" in str(modal.query_one("#restart").label)  # type: ignore[attr-defined]
            await pilot.press("escape")
            screen = app.screen
            assert isinstance(screen, RunScreen)
            assert "not answering" in str(screen.query_one("#topbar", Static).render())
            os.kill(pid, signal.SIGCONT)  # `fg`: then trying again connects
            await pilot.press("escape")
            screen.connect()
            await connected(pilot, app)
            await finish(app)
    finally:
        os.kill(pid, signal.SIGCONT)
