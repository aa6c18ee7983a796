"""The home screen: sessions by recent activity (s: by name), the state never cut at 80
columns, never-trained sessions marked, delete (a confirmation naming the session) and
rename, both refused while a real runner holds the session."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from conftest import write_fixed_session
from screen_text import screen_text
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static

from lrconsole.tui.app import make_app
from lrconsole.tui.screens.dialogs import ConfirmScreen, PromptScreen
from lrconsole.tui.screens.home import NEW_KEY, HomeScreen

LONG = "a-very-long-session-name-that-goes-on-and-on-for-ever"


def touch_metrics(folder: Path, when: float) -> None:
    """Training activity at `when`: metrics.csv written then."""
    path = folder / "metrics.csv"
    path.write_text("global_epoch,global_step,segment,lr,test_mse,time\n")
    os.utime(path, (when, when))


@pytest.fixture
def three(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """old (trained long ago), newest (trained last), fresh (created, never trained)."""
    monkeypatch.chdir(tmp_path)
    sessions = tmp_path / "sessions"
    old = write_fixed_session(sessions, "old", epochs=30, segments=[(30, 0.03)], best=1.5)
    new = write_fixed_session(sessions, "newest", epochs=60, segments=[(60, 0.03)], best=0.5)
    write_fixed_session(sessions, "fresh", epochs=0, segments=[], best=None)
    touch_metrics(old, 1_767_300_000.0)
    touch_metrics(new, 1_767_400_000.0)
    return sessions


def keys(app: Any) -> list[str]:
    table = app.screen.query_one("#sessions", DataTable)
    return [str(key.value) for key in table.rows if key.value != NEW_KEY]


async def settle(pilot: Pilot[Any]) -> None:
    await pilot.pause(0.4)


async def footer_says(pilot: Pilot[Any], app: Any, text: str) -> str:
    """The screen once the footer shows `text` (it draws late on a busy machine)."""
    for _ in range(100):
        if text in (shown := screen_text(app)):
            return shown
        await pilot.pause(0.05)
    raise AssertionError(f"the footer never said {text!r}: {shown}")


async def highlight(pilot: Pilot[Any], app: Any, name: str) -> None:
    table = app.screen.query_one("#sessions", DataTable)
    table.move_cursor(row=table.get_row_index(name))
    await pilot.pause()


async def test_sorted_by_recent_activity_and_s_toggles_name_order(three: Path) -> None:
    app = make_app(three)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        # The fresh one's only activity is its manifest stamp (2026-01-01): oldest.
        assert keys(app) == ["newest", "old", "fresh"]
        text = await footer_says(pilot, app, "s Sort: recent")
        assert "most recent first" in text
        await pilot.press("s")
        await settle(pilot)
        assert keys(app) == ["fresh", "newest", "old"]
        text = await footer_says(pilot, app, "s Sort: name")
        assert "by name" in text
        await pilot.press("s")
        await settle(pilot)
        assert keys(app) == ["newest", "old", "fresh"]


async def test_state_is_whole_at_80x24_and_never_trained_is_marked(
    three: Path,
) -> None:
    write_fixed_session(three, LONG, epochs=5, segments=[(5, 0.03)], best=123456.789)
    app = make_app(three)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        lines = screen_text(app).splitlines()
        expected = {"old": "stopped", "newest": "stopped", "fresh": "never trained"}
        expected[LONG[:10]] = "stopped"
        for start, state in expected.items():
            row = next(line for line in lines if f"│ {start}" in line)
            assert f"  {state}" in row, row
        assert any("a-very-lon" in line and "…" in line for line in lines)  # cut mid-name


async def test_delete_asks_with_the_name_then_removes(three: Path) -> None:
    app = make_app(three)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await highlight(pilot, app, "old")
        await pilot.press("d")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        message = str(app.screen.query_one(".message", Static).render())
        assert "Delete session 'old'" in message and "cannot be undone" in message
        await pilot.press("escape")  # cancel: nothing happens
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen) and (three / "old").is_dir()
        await pilot.press("d")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        assert not (three / "old").exists() and keys(app) == ["newest", "fresh"]
        assert sorted(p.name for p in three.iterdir()) == ["fresh", "newest"]
        assert app.screen.query_one("#sessions", DataTable).cursor_row == 2  # where "old" was
        await highlight(pilot, app, NEW_KEY)
        await pilot.press("d")  # on the "new session" line: nothing to delete
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)


async def test_rename_checks_the_name_in_the_dialog(three: Path) -> None:
    app = make_app(three)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await highlight(pilot, app, "old")
        await pilot.press("f2")
        await settle(pilot)
        assert isinstance(app.screen, PromptScreen)
        field = app.screen.query_one("#prompt-value", Input)
        assert field.value == "old"
        for bad, why in (("newest", "already exists"), ("../up", "not a valid session name")):
            field.value = bad
            await pilot.press("enter")
            await settle(pilot)
            assert isinstance(app.screen, PromptScreen)  # still open, with the reason
            assert why in str(app.screen.query_one("#prompt-error", Static).render())
        field.value = "renamed"
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        assert not (three / "old").exists() and (three / "renamed" / "manifest.yaml").is_file()
        assert "renamed" in keys(app)
        table = app.screen.query_one("#sessions", DataTable)
        row = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        assert row == "renamed"  # the cursor stays on it


@pytest.mark.slow
async def test_delete_and_rename_refused_while_a_runner_holds_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lrconsole.runner.launch import ensure_runner, runner_alive

    short = Path(tempfile.mkdtemp(prefix="lrc"))  # socket paths must stay short
    monkeypatch.chdir(short)
    sessions = short / "sessions"
    folder = sessions / "held"
    ensure_runner(folder, create={"task": "lesson", "seed": 0})
    app = make_app(sessions)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await highlight(pilot, app, "held")
            for key in ("d", "f2"):
                await pilot.press(key)
                await settle(pilot)
                assert isinstance(app.screen, HomeScreen)  # no dialog: refused at once
            toasts = [str(n.message) for n in app._notifications]
            assert any("cannot delete 'held': a runner holds it (PID" in t for t in toasts)
            assert any("cannot rename 'held': a runner holds it (PID" in t for t in toasts)
            assert (folder / "manifest.yaml").is_file() and runner_alive(folder)
    finally:
        from tests.conftest import lrconsole

        lrconsole("--sessions-dir", str(sessions), "stop", "held")
