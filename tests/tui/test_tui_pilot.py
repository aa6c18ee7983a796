"""Pilot tests with a real runner behind the console: every key, every bad input.

One runner (the built-in lesson task, ~5 ms per epoch) serves most tests of this module;
each test opens a fresh console on it. Tests that end the runner use their own session.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.message import Message
from textual.pilot import Pilot
from textual.widgets import Static
from textual.worker import WorkerCancelled

from lrconsole.tui import messages as m
from lrconsole.tui.app import ConsoleApp, make_app
from lrconsole.tui.screens.dialogs import ErrorScreen, ExportScreen, QuitScreen
from lrconsole.tui.screens.help import HelpScreen
from lrconsole.tui.screens.home import HomeScreen
from lrconsole.tui.screens.run import RunScreen
from lrconsole.tui.widgets.charts import LossChart
from lrconsole.tui.widgets.planner import NumberInput

pytestmark = pytest.mark.slow

SIZE = (100, 30)
LESSON = {"task": "lesson", "seed": 0}


# -- helpers --------------------------------------------------------------------------------
class Recorder:
    """A message_hook that keeps every message once (a bubbling message is seen per node)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._seen: set[int] = set()

    def __call__(self, message: Message) -> None:
        if id(message) not in self._seen:
            self._seen.add(id(message))
            self.messages.append(message)

    def of(self, kind: type[Message]) -> list[Any]:
        return [msg for msg in self.messages if isinstance(msg, kind)]

    def commands(self) -> list[str]:
        return [msg.cmd for msg in self.of(m.CommandSent)]


async def wait_for(
    pilot: Pilot[Any], predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}{describe(pilot.app)}")
        await pilot.pause(0.05)


def describe(app: Any) -> str:
    """What the console knew when a wait timed out: a failure in CI explains itself."""
    screens = [s for s in app.screen_stack if isinstance(s, RunScreen)]
    if not screens:
        return f" (screens: {app.screen_stack})"
    model, sent = screens[0].model, screens[0].controller.sent
    return (
        f" (state {model.state}, epoch {model.global_epoch}, step {model.global_step}, "
        f"plan {model.segments()}, last commands {sent[-4:]}, screen {app.screen})"
    )


def run_screen(app: ConsoleApp) -> RunScreen:
    for screen in app.screen_stack:
        if isinstance(screen, RunScreen):
            return screen
    raise AssertionError(f"no run screen in {app.screen_stack}")


async def connected(pilot: Pilot[Any], app: ConsoleApp) -> RunScreen:
    await wait_for(
        pilot,
        lambda: any(isinstance(s, RunScreen) for s in app.screen_stack),
        what="the run screen",
    )
    screen = run_screen(app)

    def ready() -> bool:
        if isinstance(app.screen, ErrorScreen):
            raise AssertionError(f"the runner failed: {app.screen.message}")
        return bool(screen.controller.connected and screen.model.session)

    await wait_for(pilot, ready, timeout=60, what="the runner connection")
    return screen


async def type_text(pilot: Pilot[Any], text: str) -> None:
    for ch in text:
        await pilot.press({" ": "space", "-": "minus", ".": "full_stop"}.get(ch, ch))


async def set_field(pilot: Pilot[Any], screen: RunScreen, field: str, text: str) -> None:
    widget = screen.query_one(f"#{field}", NumberInput)
    widget.focus()
    widget.value = ""
    await pilot.pause()
    await type_text(pilot, text)
    assert widget.value == text


async def finish(app: ConsoleApp) -> None:
    """End the test's console: detach from the runner, end the connection worker."""
    for screen in app.screen_stack:
        if isinstance(screen, RunScreen):
            await screen.controller.close(shutdown=False)
    app.workers.cancel_all()
    with contextlib.suppress(WorkerCancelled):
        await app.workers.wait_for_complete()


def stop_runner(folder: Path) -> None:
    from lrconsole.core.session.discover import runner_pid

    pid = runner_pid(folder)
    if pid is None:
        return
    subprocess.run(
        [
            sys.executable,
            "-m",
            "lrconsole",
            "--sessions-dir",
            str(folder.parent),
            "stop",
            folder.name,
        ],
        capture_output=True,
        timeout=60,
    )
    deadline = time.monotonic() + 20
    while runner_pid(folder) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    pid = runner_pid(folder)
    if pid is not None:
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A session with a live runner, shared by the tests that leave the runner running."""
    from lrconsole.runner.launch import ensure_runner

    sessions = tmp_path_factory.mktemp("tui") / "sessions"
    sessions.mkdir()
    folder = sessions / "shared"
    ensure_runner(folder, create=dict(LESSON))
    yield folder
    stop_runner(folder)


@pytest.fixture
def own_session(tmp_path: Path) -> Iterator[Path]:
    """A new session folder for a test that stops or kills its runner."""
    sessions = tmp_path / "sessions"
    sessions.mkdir()
    folder = sessions / "own"
    yield folder
    stop_runner(folder)


def console(folder: Path, *, create: dict[str, Any] | None = None) -> ConsoleApp:
    return make_app(folder.parent, session_dir=folder, create=create)


async def queue_and_wait_paused(pilot: Pilot[Any], screen: RunScreen, epochs: int) -> None:
    """Queue `epochs` at 0.01 and wait until the runner is done with them."""
    start = screen.model.global_epoch
    await set_field(pilot, screen, "epochs", str(epochs))
    await set_field(pilot, screen, "lr", "0.01")
    await pilot.press("enter")
    await wait_for(
        pilot,
        lambda: screen.model.global_epoch >= start + epochs and not screen.model.running,
        timeout=60,
        what=f"{epochs} epochs",
    )
    # The model is updated before the screen handles the pause (RunStateChanged), which
    # puts the cursor in the planner: let it land, or a later Esc is undone by it.
    await pilot.pause(0.1)


# -- Enter, space --------------------------------------------------------------------------
async def test_enter_queues_the_default_segment_and_trains(own_session: Path) -> None:
    rec = Recorder()
    app = console(own_session, create=dict(LESSON))
    async with app.run_test(size=SIZE, message_hook=rec) as pilot:
        screen = await connected(pilot, app)
        assert screen.model.state.get("reason") == "queue_empty"
        assert app.focused is screen.query_one("#epochs")  # the lesson's prompt
        await pilot.press("enter")  # 30 epochs @ 0.03, the defaults
        await wait_for(pilot, lambda: screen.model.global_epoch >= 30, timeout=60, what="30 epochs")
        assert "queue" in rec.commands()
        assert rec.of(m.HistoryGrew)
        await wait_for(pilot, lambda: not screen.model.running, what="the queue to run dry")
        await pilot.pause(0.4)
        text = str(screen.query_one("#counters", Static).render())
        assert "epoch 30" in text
        rows = screen.model.segment_rows()
        assert len(rows) == 1 and rows[0].end_epoch == 30 and rows[0].lr == 0.03
        await finish(app)


async def test_space_pauses_and_resumes(shared: Path) -> None:
    rec = Recorder()
    app = console(shared)
    async with app.run_test(size=SIZE, message_hook=rec) as pilot:
        screen = await connected(pilot, app)
        await set_field(pilot, screen, "epochs", "5000")
        await set_field(pilot, screen, "lr", "0.001")
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.model.running, what="training")
        await pilot.press("space")  # inside the field, space is typed: it does not pause
        await pilot.pause(0.3)
        assert screen.query_one("#lr", NumberInput).value.endswith(" ")
        assert "pause" not in rec.commands() and screen.model.running
        await pilot.press("escape")  # leave the field: now space is the pause key
        await pilot.press("space")
        await wait_for(
            pilot,
            lambda: rec.of(m.RunStateChanged) and rec.of(m.RunStateChanged)[-1].state == "paused",
            what="paused",
        )
        paused_at = screen.model.global_epoch
        await pilot.pause(0.5)
        assert screen.model.global_epoch <= paused_at + 1
        await pilot.press("space")
        await wait_for(
            pilot, lambda: rec.of(m.RunStateChanged)[-1].state == "running", what="resumed"
        )
        await wait_for(
            pilot, lambda: screen.model.global_epoch > paused_at + 2, what="epochs after resume"
        )
        assert rec.commands().count("pause") == 1 and rec.commands().count("resume") >= 1
        # Leave the shared runner idle for the next tests: cut the segment at this epoch.
        await screen.controller.call("stop_after_epoch")
        await wait_for(pilot, lambda: not screen.model.running, what="the cut")
        assert not screen.model.pending()
        await finish(app)


# -- bad input: an inline message, nothing queued, nothing sent -----------------------------
BAD_INPUTS = [
    ("epochs", "", "enter a whole number"),
    ("epochs", "abc", "not a number"),
    ("epochs", "-3", "at least 1"),
    ("epochs", "0", "at least 1"),
    ("epochs", "2.5", "whole number"),
    ("epochs", "100001", "too many"),
    ("epochs", "nan", "whole number"),
    ("epochs", "inf", "whole number"),
    ("lr", "", "enter a learning rate"),
    ("lr", "abc", "not a number"),
    ("lr", "-0.1", "must be > 0"),
    ("lr", "0", "must be > 0"),
    ("lr", "nan", "finite"),
    ("lr", "inf", "finite"),
    ("lr", "11", "absurdly large"),
]


@pytest.mark.parametrize(("field", "text", "needle"), BAD_INPUTS)
async def test_bad_input_is_refused_at_the_field(
    shared: Path, field: str, text: str, needle: str
) -> None:
    rec = Recorder()
    app = console(shared)
    async with app.run_test(size=SIZE, message_hook=rec) as pilot:
        screen = await connected(pilot, app)
        plan_before = screen.model.segments()
        sent_before = list(screen.controller.sent)
        await set_field(pilot, screen, field, text)
        await pilot.press("enter")
        await pilot.pause(0.2)
        error = screen.query_one(f"#{field}-error", Static)
        assert error.has_class("-shown") and error.display
        assert needle in str(error.render())
        assert screen.query_one(f"#{field}", NumberInput).has_class("-invalid")
        assert [msg.field_id for msg in rec.of(m.InputRejected)] == [field]
        assert not rec.of(m.SegmentRequested)
        assert not rec.of(m.CommandSent) and screen.controller.sent == sent_before
        status = await screen.controller.client.call("status")  # type: ignore[union-attr]
        assert screen.model.segments() == plan_before
        assert status["state"] == "paused"
        # The same message appears when the button is clicked instead of Enter.
        await pilot.click("#queue-button")
        await pilot.pause(0.1)
        assert len(rec.of(m.InputRejected)) == 2 and not rec.of(m.CommandSent)
        # Typing a fix clears the message.
        await set_field(pilot, screen, field, "3" if field == "epochs" else "0.01")
        assert not error.has_class("-shown")
        await finish(app)


# -- l, ?, e, t, the palette, the mouse -----------------------------------------------------
async def test_l_toggles_log_scale(shared: Path) -> None:
    app = console(shared)
    async with app.run_test(size=SIZE) as pilot:
        screen = await connected(pilot, app)
        chart = screen.query_one(LossChart)
        assert not chart.log_scale
        await pilot.press("l")  # the focus is in a field: l is typed there
        assert not chart.log_scale
        await pilot.press("escape")  # no field focused: l toggles
        await pilot.press("l")
        assert chart.log_scale and "log" in str(chart.border_title)
        await pilot.press("l")
        assert not chart.log_scale
        await finish(app)


async def test_question_mark_opens_help(shared: Path) -> None:
    app = console(shared)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, app)
        await pilot.press("escape")  # one-letter keys act when no field has the focus
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, RunScreen)
        from textual.widgets._footer import FooterKey

        app.screen.set_focus(None)  # the footer shows "?" while no field has the focus
        await pilot.pause(0.1)
        help_key = next(k for k in app.screen.query(FooterKey) if k.key == "question_mark")
        await pilot.click(help_key)  # the footer's "? Help"
        await pilot.pause(0.1)
        assert isinstance(app.screen, HelpScreen)
        await pilot.click("#close")
        assert isinstance(app.screen, RunScreen)
        await finish(app)


async def test_e_exports_the_schedule(shared: Path) -> None:
    from lrconsole.core.plan.schedule import Schedule

    rec = Recorder()
    app = console(shared)
    async with app.run_test(size=SIZE, message_hook=rec) as pilot:
        screen = await connected(pilot, app)
        await queue_and_wait_paused(pilot, screen, 4)
        assert app.focused is screen.query_one("#lr")  # here e types an exponent: 1e-3
        await pilot.press("escape")  # leave the field
        assert app.focused is None
        await pilot.press("e")
        assert isinstance(app.screen, ExportScreen)
        path_input = app.screen.query_one("#export-path")
        assert path_input.value == str(shared / "schedule.yaml")  # type: ignore[attr-defined]
        await pilot.press("enter")
        await wait_for(pilot, lambda: rec.of(m.ScheduleExported), what="the export")
        schedule = Schedule.load(shared / "schedule.yaml")
        assert schedule.segments[-1].epochs == 4 and schedule.segments[-1].lr == 0.01
        assert sum(s.epochs or 0 for s in schedule.segments) == screen.model.global_epoch
        await finish(app)


async def test_export_from_a_connected_console_keeps_the_sessions_settings(
    own_session: Path,
) -> None:
    """The console's export builds the schedule from the live plan: settings that only the
    manifest holds (spike_factor) must come through, or a replay pauses where the run did not."""
    from lrconsole.core.plan.schedule import Schedule

    plan = own_session.parent / "plan.yaml"
    plan.write_text(
        "version: 1\ntask: lesson\nseed: 0\nspike_factor: 3.0\n"
        "segments:\n  - {epochs: 2, lr: 0.03}\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lrconsole",
            "--sessions-dir",
            str(own_session.parent),
            "run",
            own_session.name,
            "--schedule",
            str(plan),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rec = Recorder()
    app = console(own_session)
    async with app.run_test(size=SIZE, message_hook=rec) as pilot:
        screen = await connected(pilot, app)
        await queue_and_wait_paused(pilot, screen, 2)
        await pilot.press("escape")
        await pilot.press("e")
        assert isinstance(app.screen, ExportScreen)
        await pilot.press("enter")
        await wait_for(pilot, lambda: rec.of(m.ScheduleExported), what="the export")
        schedule = Schedule.load(own_session / "schedule.yaml")
        assert [(s.epochs, s.lr) for s in schedule.segments] == [(2, 0.03), (2, 0.01)]
        assert schedule.spike_factor == 3.0
        await finish(app)


async def test_t_starts_tensorboard(shared: Path) -> None:
    import urllib.request

    rec = Recorder()
    app = console(shared)
    async with app.run_test(size=SIZE, message_hook=rec) as pilot:
        screen = await connected(pilot, app)
        await pilot.press("escape")  # one-letter keys act when no field has the focus
        await pilot.press("t")
        started = rec.of(m.TensorBoardStarted)
        assert started and started[0].url.startswith("http://127.0.0.1:")
        assert screen.tensorboard.running
        url = started[0].url + "data/plugin/scalars/tags"

        def answers() -> bool:
            try:
                with urllib.request.urlopen(url, timeout=1) as reply:
                    return bool(reply.status == 200)
            except OSError:
                return False

        deadline = time.monotonic() + 30
        ok = False
        while time.monotonic() < deadline and not (ok := await asyncio.to_thread(answers)):
            await pilot.pause(0.3)
        assert ok, "TensorBoard did not answer"
        await pilot.press("t")  # a second t shows the same server
        assert len({msg.url for msg in rec.of(m.TensorBoardStarted)}) == 1
        process = screen.tensorboard.process
        await finish(app)
    assert process is not None and process.poll() is not None  # stopped with the console


async def test_command_palette_and_mouse(shared: Path) -> None:
    rec = Recorder()
    app = console(shared)
    async with app.run_test(size=SIZE, message_hook=rec) as pilot:
        screen = await connected(pilot, app)
        await pilot.press("ctrl+p")
        await type_text(pilot, "log scale")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert screen.query_one(LossChart).log_scale
        # Queue with the mouse: the button, not Enter.
        await set_field(pilot, screen, "epochs", "2")
        await set_field(pilot, screen, "lr", "2e-2")  # in the LR field, e is an exponent
        start = screen.model.global_epoch
        await pilot.click("#queue-button")
        await wait_for(pilot, lambda: screen.model.global_epoch >= start + 2, what="2 epochs")
        assert rec.of(m.SegmentRequested)[-1].epochs == 2
        assert rec.of(m.SegmentRequested)[-1].lr == 0.02
        await finish(app)


async def test_queue_edit_and_remove(shared: Path) -> None:
    app = console(shared)
    async with app.run_test(size=SIZE) as pilot:
        screen = await connected(pilot, app)
        await screen.controller.call("pause")
        await wait_for(
            pilot, lambda: screen.model.state.get("reason") == "operator", what="the operator pause"
        )
        for epochs, lr in (("7", "0.02"), ("8", "0.03"), ("9", "0.04")):
            await set_field(pilot, screen, "epochs", epochs)
            await set_field(pilot, screen, "lr", lr)
            await pilot.press("enter")
            await pilot.pause(0.1)
        await wait_for(
            pilot,
            lambda: len(screen.model.pending()) == 3,
            what=f"3 queued: {screen.model.plan} {screen.model.state}",
        )
        assert not screen.model.running  # an operator pause holds the queue
        queue = screen.query_one("#queue")
        await pilot.pause(0.3)
        assert queue.option_count == 3  # type: ignore[attr-defined]
        # Remove the second with the keyboard.
        queue.focus()
        await pilot.press("down")
        await pilot.press("delete")
        await wait_for(pilot, lambda: len(screen.model.pending()) == 2, what="the removal")
        queued = [screen.model.segments()[i] for i in screen.model.pending()]
        assert [(s["epochs"], s["lr"]) for s in queued] == [(7, 0.02), (9, 0.04)]
        # Edit the first: Enter on it loads it into the planner; Enter saves.
        queue.focus()
        await pilot.press("home")
        await pilot.press("enter")
        assert screen.query_one("#epochs", NumberInput).value == "7"
        await set_field(pilot, screen, "epochs", "11")
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda: screen.model.segments()[screen.model.pending()[0]].get("epochs") == 11,
            what="the edit",
        )
        assert len(screen.model.pending()) == 2
        # A bad edit is refused like any input.
        queue.focus()
        await pilot.press("enter")
        await set_field(pilot, screen, "lr", "99")
        await pilot.press("enter")
        assert screen.query_one("#lr-error", Static).has_class("-shown")
        # Remove one more with the mouse.
        await pilot.click("#remove-button")
        await wait_for(pilot, lambda: len(screen.model.pending()) == 1, what="a mouse removal")
        # Train what is left, so that the shared runner is idle again.
        await pilot.press("escape")  # one-letter keys act when no field has the focus
        await pilot.press("space")
        await wait_for(
            pilot,
            lambda: not screen.model.pending() and not screen.model.running,
            what="the queue to run",
        )
        await finish(app)


# -- q: detach, stop and save; resume with the same counter --------------------------------
async def test_q_detach_leaves_the_runner_training(own_session: Path) -> None:
    from lrconsole.runner.launch import runner_alive

    app = console(own_session, create=dict(LESSON))
    async with app.run_test(size=SIZE) as pilot:
        screen = await connected(pilot, app)
        await set_field(pilot, screen, "epochs", "100000")
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.model.running, what="training")
        await pilot.press("escape")  # one-letter keys act when no field has the focus
        await pilot.press("q")
        assert isinstance(app.screen, QuitScreen)
        assert app.screen.query("#detach")
        await pilot.press("escape")  # cancel: nothing happens
        assert isinstance(app.screen, RunScreen)
        await pilot.press("escape")  # one-letter keys act when no field has the focus
        await pilot.press("q")
        await pilot.press("d")
        await finish(app)
    assert app.return_code == 0
    assert runner_alive(own_session)
    # Attach again: the runner is still training, the counter kept moving.
    app = make_app(own_session.parent, session_dir=own_session, attach=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = await connected(pilot, app)
        assert screen.model.running and screen.model.global_epoch > 0
        await finish(app)


async def test_q_stop_and_save_then_open_keeps_the_counter(own_session: Path) -> None:
    from lrconsole.runner.launch import runner_alive

    app = console(own_session, create=dict(LESSON))
    async with app.run_test(size=SIZE) as pilot:
        screen = await connected(pilot, app)
        await set_field(pilot, screen, "epochs", "100000")
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.model.global_epoch >= 20, timeout=60, what="20 epochs")
        await pilot.press("escape")  # one-letter keys act when no field has the focus
        await pilot.press("q")
        await pilot.press("s")
        await finish(app)
    assert app.return_code == 0
    for _ in range(100):
        if not runner_alive(own_session):
            break
        await asyncio.sleep(0.1)
    assert not runner_alive(own_session)
    saved = screen.model.global_epoch
    app = console(own_session)  # `lrconsole open`
    async with app.run_test(size=SIZE) as pilot:
        screen = await connected(pilot, app)
        assert screen.model.global_epoch >= saved
        assert len(screen.model.lr) == screen.model.global_epoch  # the whole history
        await finish(app)


# -- the runner dies: a modal, the console lives, restart from the checkpoint ---------------
async def test_runner_death_shows_modal_and_restarts(own_session: Path) -> None:
    from lrconsole.core.session.discover import runner_pid

    rec = Recorder()
    app = console(own_session, create=dict(LESSON))
    async with app.run_test(size=SIZE, message_hook=rec) as pilot:
        screen = await connected(pilot, app)
        await queue_and_wait_paused(pilot, screen, 10)
        await wait_for(pilot, lambda: rec.of(m.CheckpointSaved), what="a checkpoint")
        pid = runner_pid(own_session)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen), what="the modal")
        assert app.is_running
        await pilot.press("r")  # restart from the last checkpoint
        await wait_for(
            pilot, lambda: screen.controller.connected, timeout=60, what="the restarted runner"
        )
        assert len(rec.of(m.Connected)) == 2
        assert screen.model.global_epoch >= rec.of(m.CheckpointSaved)[-1].global_epoch
        # It dies again; this time close the modal: the console stays, disconnected.
        pid = runner_pid(own_session)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen), what="the modal")
        await pilot.press("escape")
        assert isinstance(app.screen, RunScreen) and app.is_running
        await pilot.press("escape")  # one-letter keys act when no field has the focus
        await pilot.press("space")  # a command now only says that no runner is there
        await set_field(pilot, screen, "epochs", "3")
        await pilot.press("enter")
        assert app.is_running
        await pilot.press("escape")  # one-letter keys act when no field has the focus
        await pilot.press("q")  # no runner: no detach choice
        assert isinstance(app.screen, QuitScreen) and not app.screen.query("#detach")
        await pilot.press("s")
        await finish(app)
    assert app.return_code == 0


# -- the home screen ------------------------------------------------------------------------
async def test_home_enter_trains_the_lesson(monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    short = Path(tempfile.mkdtemp(prefix="lrc"))  # socket paths must stay short
    monkeypatch.chdir(short)
    sessions = short / "sessions"
    sessions.mkdir()
    app = make_app(sessions)
    folder: Path | None = None
    try:
        async with app.run_test(size=SIZE) as pilot:
            assert isinstance(app.screen, HomeScreen)
            await pilot.press("enter")  # the first, default line: a new lesson session
            screen = await connected(pilot, app)
            folder = screen.session_dir
            await pilot.press("enter")  # the planner's defaults
            await wait_for(
                pilot, lambda: screen.model.global_epoch >= 3, timeout=60, what="training"
            )
            await finish(app)
    finally:
        if folder is not None:
            stop_runner(folder)
