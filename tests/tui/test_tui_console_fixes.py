"""Console fixes: settings set "now" from elsewhere are shown, the elapsed time is the run's
training time (pauses and restarts left out), and the footer keeps its one-letter keys at
80 columns."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from fake import FakeClient, fake_factory
from screen_text import screen_text
from textual.widgets import Input

from lrconsole.tui.app import make_app
from lrconsole.tui.clock import TrainingClock
from lrconsole.tui.disk import snapshot_from_disk
from lrconsole.tui.model import RunModel
from lrconsole.tui.screens.run import RunScreen
from lrconsole.tui.widgets.charts import LossChart
from lrconsole.tui.widgets.progress import RunProgress, timing_parts
from tests.conftest import lrconsole
from tests.tui.test_tui_pilot import (
    LESSON,
    connected,
    console,
    finish,
    set_field,
    stop_runner,
    wait_for,
)


class SetClient(FakeClient):
    """The fake runner, answering `set` with a `settings_set` event as the runner does."""

    def emit(self, name: str, data: dict[str, Any]) -> None:
        self._emit(name, data)

    async def call(self, cmd: str, timeout: float = 5.0, **args: Any) -> dict[str, Any]:
        if cmd == "set":
            self.calls.append((cmd, args))
            self.emit("settings_set", {"settings": dict(args), "step": self.plan["done_steps"]})
            return {"global_step": self.plan["done_steps"]}
        return await super().call(cmd, timeout, **args)


def app_for(tmp_path: Path, client: FakeClient) -> Any:
    return make_app(
        tmp_path / "sessions",
        session_dir=tmp_path / "sessions" / client.name,
        connector_factory=fake_factory(client),
    )


def toasts(app: Any) -> list[str]:
    return [str(n.message) for n in app._notifications]


# -- settings_set -----------------------------------------------------------------------------
async def test_settings_set_elsewhere_is_toasted_with_its_step(tmp_path: Path) -> None:
    client = SetClient()
    app = app_for(tmp_path, client)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.4)
        # `lrconsole set demo momentum=0.9 clip_grad_norm=off` from another terminal
        client.emit(
            "settings_set", {"settings": {"momentum": 0.9, "clip_grad_norm": None}, "step": 845}
        )
        await pilot.pause(0.3)
        assert "momentum 0.9, clip_grad_norm off from step 845 (epoch 61)" in toasts(app)
        # The LR alone has its own toast (lr_set): no second one.
        client.emit("settings_set", {"settings": {"lr": 0.002}, "step": 850})
        await pilot.pause(0.3)
        assert not [t for t in toasts(app) if "0.002" in t]


async def test_own_ctrl_o_is_said_once(tmp_path: Path) -> None:
    client = SetClient()
    app = app_for(tmp_path, client)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.4)
        await pilot.press("ctrl+o")
        await pilot.pause(0.3)
        app.screen.query_one("#prompt-value", Input).value = "momentum=0.8 betas=0.9,0.99"
        await pilot.press("enter")
        await pilot.pause(0.4)
        assert isinstance(app.screen, RunScreen)
        said = [t for t in toasts(app) if "momentum 0.8" in t]
        assert said == ["momentum 0.8, betas 0.9,0.99 from the next step"], toasts(app)


@pytest.mark.slow
async def test_lrconsole_set_from_another_terminal_shows_in_the_console(tmp_path: Path) -> None:
    folder = tmp_path / "sessions" / "other"
    app = console(folder, create=dict(LESSON))
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await connected(pilot, app)
            await set_field(pilot, screen, "epochs", "5000")
            await set_field(pilot, screen, "lr", "0.01")
            await pilot.press("enter")
            await wait_for(pilot, lambda: screen.model.global_epoch >= 2, what="training")
            args = ("--sessions-dir", str(folder.parent), "set", "other", "momentum=0.9")
            done = await asyncio.to_thread(lrconsole, *args, "weight_decay=1e-4")
            assert done.returncode == 0, done.stderr
            await wait_for(
                pilot,
                lambda: any(
                    "momentum 0.9, weight_decay 0.0001 from step" in t for t in toasts(app)
                ),
                what="the settings toast",
            )
            # The split segment trains with them: the table's settings column says so.
            await wait_for(
                pilot,
                lambda: "m 0.9 wd 0.0001" in screen_text(app),
                what="the segments table's settings",
            )
            await screen.controller.call("pause")
            await finish(app)
    finally:
        stop_runner(folder)


# -- elapsed: the run's training time ----------------------------------------------------------
def test_the_clock_leaves_gaps_out() -> None:
    clock = TrainingClock()
    assert clock.elapsed() is None
    for epoch in range(1, 11):  # 10 epochs of 2 s
        clock.add(epoch, 1000.0 + 2 * epoch)
    assert clock.elapsed() == 20.0  # 9 gaps between ends, plus the first epoch
    clock.add(11, 1020.0 + 3600 + 2)  # paused an hour inside epoch 11
    assert clock.elapsed() == 22.0
    clock.add(19, 1022.0 + 3600 + 16)  # a thinned history: 8 epochs in one row
    assert clock.elapsed() == 38.0
    clock.add(20, 1022.0 + 3600 + 16 + 5)  # a slow epoch, no pause: still training
    assert clock.elapsed() == 43.0
    # While training, the clock runs from the last epoch end, or the resume when later.
    last = 1022.0 + 3600 + 21
    assert clock.elapsed(now=last + 1.5) == 44.5
    clock.resumed(last + 100)
    assert clock.elapsed(now=last + 101) == 44.0


def test_elapsed_on_the_counters_line_is_the_runs_training_time() -> None:
    model = RunModel()
    model.load_snapshot(
        {
            "session": {"steps_per_epoch": 10},
            "state": {"state": "paused"},
            "plan": {"segments": [{"epochs": 4, "lr": 0.1}, {"epochs": 20, "lr": 0.01}]},
        }
    )
    # Segment #1 yesterday, segment #2 today: 3 s epochs, a day apart.
    times = [10.0, 13.0, 16.0, 19.0, 86_400.0, 86_403.0]
    for e, at in enumerate(times, 1):
        row = {"global_epoch": e, "global_step": 10 * e, "segment": int(e > 4), "lr": 0.1}
        model.add_epoch({**row, "metrics": {}, "time": at}, live=False)
    assert timing_parts(model) == ["elapsed 0:18"]  # 6 epochs of 3 s; not the day between


@pytest.mark.slow
async def test_a_pause_is_not_elapsed_and_a_reopened_session_keeps_its_time(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "sessions" / "clock"
    app = console(folder, create=dict(LESSON))
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await connected(pilot, app)
            await set_field(pilot, screen, "epochs", "200")
            await set_field(pilot, screen, "lr", "0.01")
            await pilot.press("enter")
            await wait_for(pilot, lambda: screen.model.global_epoch >= 3, what="training")
            await screen.controller.call("pause")
            await wait_for(pilot, lambda: not screen.model.running, what="the pause")
            started = time.monotonic()
            await pilot.pause(4.0)  # idle, not training
            await screen.controller.call("resume")
            await wait_for(
                pilot,
                lambda: screen.model.global_epoch >= 200 and not screen.model.running,
                timeout=60,
                what="200 epochs",
            )
            wall = time.monotonic() - started
            trained = screen.model.clock.elapsed()
            assert trained is not None and 0 < trained < wall - 3.5, (trained, wall)
            shown = f"elapsed 0:{round(trained):02d}"
            await wait_for(pilot, lambda: shown in screen_text(app), what=shown)
            await finish(app)
    finally:
        stop_runner(folder)
    # Reopened: the files give the same training time before the runner answers.
    model = RunModel()
    snapshot = snapshot_from_disk(folder)
    assert snapshot is not None
    model.load_snapshot(snapshot)
    again = model.clock.elapsed()
    assert again is not None and abs(again - trained) < 0.5, (again, trained)


# -- the footer at 80 columns ------------------------------------------------------------------
async def test_the_footer_keeps_the_main_keys_at_80_columns(tmp_path: Path) -> None:
    app = app_for(tmp_path, SetClient())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.4)
        await pilot.press("escape")  # no field focused: the one-letter keys act and show
        await pilot.pause(0.3)
        footer = screen_text(app).splitlines()[-1]
        for key in ("space Pause", "F2 Set LR", "F3 ÷10", "F6 End@epoch", "F8 ±Epochs"):
            assert key in footer, footer
        assert footer.rstrip().endswith("e Export q Quit ? Help"), footer
        # Off the footer, still keys: F4 halves the LR.
        await pilot.press("f4")
        await pilot.pause(0.3)
        assert any("0.01 → 0.005" in t for t in toasts(app)), toasts(app)


async def test_the_top_line_keeps_the_divergence_note_at_80_columns(tmp_path: Path) -> None:
    client = SetClient(name="lesson-20261203-140541", reason="error", diverged=True)
    app = app_for(tmp_path, client)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.4)
        await pilot.press("escape", "space")  # a plain resume: refused, the note says why
        await pilot.pause(0.3)
        top = screen_text(app).splitlines()[0]
        assert top.rstrip().endswith("⏸ paused  │  diverged: roll back (r) or accept (F9)"), top


async def test_the_counters_line_leaves_out_what_does_not_fit_whole(tmp_path: Path) -> None:
    app = app_for(tmp_path, SetClient())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.4)
        progress = app.screen.query_one(RunProgress)
        full = "[b]epoch 60[/b]  ·  elapsed 1:00  ·  lr 0.01  ·  train_mse 5.472  ·  test_mse 6.313"
        assert progress.counters_text() == full
        assert progress.counters_text(40) == "[b]epoch 60[/b]  ·  elapsed 1:00  ·  lr 0.01"
        await pilot.resize_terminal(60, 24)
        await pilot.pause(0.3)
        line = next(x for x in screen_text(app).splitlines() if x.startswith(" epoch 60"))
        assert line.rstrip().endswith("train_mse 5.472"), line  # not a name without its value


async def test_esc_before_the_runner_answers_keeps_the_keys_acting(tmp_path: Path) -> None:
    """The runner takes seconds to start: Esc pressed meanwhile is not undone by the
    connection (a one-letter key would type into a field instead of acting)."""
    client = SetClient()
    answer = asyncio.Event()

    def factory(session_dir: Path, create: dict[str, Any] | None, attach: bool) -> Any:
        async def connect(first: bool) -> FakeClient:
            await answer.wait()
            return client

        return connect

    folder = tmp_path / "sessions" / "demo"
    app = make_app(folder.parent, session_dir=folder, connector_factory=factory)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        assert app.focused is not None  # the planner's epochs field, from the start
        await pilot.press("escape")
        answer.set()
        await pilot.pause(0.4)
        screen = app.screen
        assert isinstance(screen, RunScreen) and screen.controller.connected
        assert app.focused is None
        await pilot.press("l")  # acts: log scale, not an "l" typed into a field
        await pilot.pause(0.2)
        assert screen.query_one(LossChart).log_scale
