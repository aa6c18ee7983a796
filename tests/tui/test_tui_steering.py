"""The console side of steering, and the console bugs of issue 11, with a stand-in runner.

The stand-in (fake.py) answers as the runner's protocol does; what is checked here is the
console: which keys act while a field has the focus, what is sent, what the operator is
told. The real runner's side is in test_tui_pilot.py and test_tui_tmux.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fake import FakeClient, fake_factory
from textual.pilot import Pilot
from textual.widgets import Input, Static

from lrconsole.tui.app import ConsoleApp, make_app
from lrconsole.tui.screens.dialogs import ConfirmScreen, ExportScreen, PromptScreen
from lrconsole.tui.screens.help import HelpScreen
from lrconsole.tui.screens.run import RunScreen
from lrconsole.tui.widgets.planner import NumberInput

SIZE = (100, 30)


def app_for(tmp_path: Path, client: FakeClient) -> ConsoleApp:
    return make_app(
        tmp_path / "sessions",
        session_dir=tmp_path / "sessions" / client.name,
        connector_factory=fake_factory(client),
    )


async def ready(pilot: Pilot[Any], app: ConsoleApp) -> RunScreen:
    for _ in range(100):
        screen = app.screen
        if isinstance(screen, RunScreen) and screen.controller.connected:
            await pilot.pause(0.3)  # one redraw tick
            return screen
        await pilot.pause(0.05)
    raise AssertionError("the console did not connect to the stand-in")


async def type_into(pilot: Pilot[Any], field: NumberInput, text: str) -> None:
    field.focus()
    field.value = ""
    await pilot.pause()
    for ch in text:
        await pilot.press({" ": "space", "-": "minus", ".": "full_stop"}.get(ch, ch))


def sent(client: FakeClient) -> list[str]:
    return [cmd for cmd, _ in client.calls]


def toasts(app: ConsoleApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


# -- bug 1: keys typed into a field are only typed ------------------------------------------
async def test_typing_3e2_in_the_epochs_field_exports_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    client = FakeClient()
    app = app_for(tmp_path, client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot, app)
        epochs = screen.query_one("#epochs", NumberInput)
        await type_into(pilot, epochs, "3e2")
        assert epochs.value == "3e2"  # every key typed, e included
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ExportScreen)
        error = str(screen.query_one("#epochs-error", Static).render())
        assert "whole number" in error and "3e2" in error
        assert "queue" not in sent(client)
    assert not (tmp_path / "2").exists()
    assert not (tmp_path / "sessions" / client.name / "schedule.yaml").exists()


async def test_cde_then_f_in_the_lr_field_opens_no_lr_finder(tmp_path: Path) -> None:
    client = FakeClient()
    app = app_for(tmp_path, client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot, app)
        lr = screen.query_one("#lr", NumberInput)
        await type_into(pilot, lr, "cdef")
        await pilot.pause(0.1)
        assert lr.value == "cdef"
        assert "lr_find" not in sent(client) and app.screen is screen
        # t, l, q, ? and space type too; nothing is started, toggled or asked.
        await type_into(pilot, lr, "tlq? ")
        await pilot.pause(0.1)
        assert lr.value == "tlq? " and app.screen is screen
        assert not screen.tensorboard.running
        assert sent(client) == []


async def test_space_in_a_field_does_not_pause_esc_then_space_does(tmp_path: Path) -> None:
    client = FakeClient(reason="operator")
    client.state["state"] = "running"
    client.snapshot["state"]["state"] = "running"
    app = app_for(tmp_path, client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot, app)
        epochs = screen.query_one("#epochs", NumberInput)
        await type_into(pilot, epochs, "5 ")
        assert epochs.value == "5 " and "pause" not in sent(client)
        await pilot.press("escape")  # leave the field: now space is the pause key
        assert app.focused is None
        await pilot.press("space")
        await pilot.pause(0.1)
        assert sent(client) == ["pause"]


# -- bug 3: a value the program put in a field is selected ----------------------------------
async def test_values_filled_by_the_program_are_replaced_by_typing(tmp_path: Path) -> None:
    client = FakeClient()
    app = app_for(tmp_path, client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot, app)
        planner = screen.planner()
        planner.set_lr("0.5")  # as the divergence picker and the LR finder do
        await pilot.pause(0.1)
        lr = screen.query_one("#lr", NumberInput)
        assert app.focused is lr
        await pilot.press("5")
        assert lr.value == "5"  # not 0.55 or 5.5
        # After Enter the planner keeps its values, selected: typing replaces them.
        await type_into(pilot, lr, "0.01")
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert "queue" in sent(client)
        for ch in "0.005":
            await pilot.press({".": "full_stop"}.get(ch, ch))
        assert lr.value == "0.005"


# -- bug 4: one numbering --------------------------------------------------------------------
async def test_queue_items_are_numbered_as_segments_everywhere(tmp_path: Path) -> None:
    client = FakeClient()  # segments 1 and 2 trained, 3 queued
    app = app_for(tmp_path, client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot, app)
        queue = screen.query_one("#queue")
        assert str(queue.get_option_at_index(0).prompt).startswith("#3 ")  # type: ignore[attr-defined]
        queue.focus()
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert "editing queued #3" in str(screen.query_one("#editing", Static).render())
        await pilot.press("escape")
        queue.focus()
        await pilot.press("delete")
        await pilot.pause(0.2)
        assert any("removed queued segment #3" in t for t in toasts(app)), toasts(app)


# -- bug 6: a failed export keeps its dialog --------------------------------------------------
async def test_a_failed_export_keeps_the_dialog_with_the_error(tmp_path: Path) -> None:
    from conftest import write_fixed_session

    write_fixed_session(
        tmp_path / "sessions", "demo", epochs=60, segments=[(30, 0.03), (30, 0.01)], best=None
    )
    client = FakeClient()
    app = app_for(tmp_path, client)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("escape")
        await pilot.press("e")
        assert isinstance(app.screen, ExportScreen)
        path = app.screen.query_one("#export-path", Input)
        bad = tmp_path / "no-such-folder" / "deeper" / "x.yaml"
        (tmp_path / "no-such-folder").write_text("a file, not a folder")
        path.value = str(bad)
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert isinstance(app.screen, ExportScreen)  # still open
        error = str(app.screen.query_one("#export-error", Static).render())
        assert error.startswith("⚠") and len(error) > 3
        assert app.screen.query_one("#export-path", Input).value == str(bad)  # kept to fix
        path.value = str(tmp_path / "fixed.yaml")
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert not isinstance(app.screen, ExportScreen)
        assert "version: 1" in (tmp_path / "fixed.yaml").read_text()


# -- bug 7: help at 80x24 ---------------------------------------------------------------------
async def test_help_at_80x24_shows_whole_descriptions_and_close(tmp_path: Path) -> None:
    client = FakeClient()
    app = app_for(tmp_path, client)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        await pilot.press("escape")
        await pilot.press("question_mark")
        await pilot.pause(0.3)
        assert isinstance(app.screen, HelpScreen)
        close = app.screen.query_one("#close")
        region = close.region
        assert region.height >= 1 and region.bottom <= 24 and region.right <= 80
        # Every description is there in full (wrapped), reachable by scrolling.
        body = app.screen.query_one("#help-body")
        body.scroll_end(animate=False)
        await pilot.pause(0.1)
        assert close.region.bottom <= 24
        await pilot.click("#close")
        assert isinstance(app.screen, RunScreen)


async def test_help_text_wraps_instead_of_cutting(tmp_path: Path) -> None:
    from textual.app import App
    from textual.geometry import Region

    from lrconsole.tui.keys import KEYS

    class HelpOnly(App[None]):
        def on_mount(self) -> None:
            self.push_screen(HelpScreen())

    app = HelpOnly()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        keys = app.screen.query_one("#help-keys")
        assert keys.region.right <= 80
        strips = keys.render_lines(Region(0, 0, keys.size.width, keys.size.height))
        words = " ".join(strip.text for strip in strips).split()
        for key, description in KEYS:
            for word in (key + " " + description).split():
                assert word in words, (word, description)


# -- bug 8: a reopened session proposes its last LR -----------------------------------------
async def test_a_reopened_session_proposes_the_last_lr(tmp_path: Path) -> None:
    client = FakeClient(segments=[(30, 0.03), (10, 0.007)], queued=[])
    app = app_for(tmp_path, client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot, app)
        assert screen.query_one("#lr", NumberInput).value == "0.007"


async def test_a_reopened_session_after_a_decay_proposes_its_base_lr(tmp_path: Path) -> None:
    """A cosine segment ends near 0: the planner proposes the LR the operator chose."""
    client = FakeClient(segments=[(30, 0.03), (10, 0.007)], queued=[])
    client.snapshot["plan"]["segments"][-1]["shape"] = "cosine"
    client.snapshot["history"][-1]["lr"] = 2.5e-06  # where the decay ended
    app = app_for(tmp_path, client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot, app)
        assert screen.query_one("#lr", NumberInput).value == "0.007"


# -- §1: steering keys work while a field has the focus -------------------------------------
async def test_lr_keys_send_set_lr_and_say_the_new_lr(tmp_path: Path) -> None:
    client = FakeClient()  # last LR 0.01
    app = app_for(tmp_path, client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot, app)
        screen.focus_epochs()
        await pilot.press("f3")  # ÷10, typed nowhere
        await pilot.pause(0.1)
        assert client.calls[-1] == ("set_lr", {"lr": 0.001})
        assert screen.query_one("#epochs", NumberInput).value == "30"
        await pilot.press("f5")  # ×2 of 0.001
        await pilot.pause(0.1)
        assert client.calls[-1] == ("set_lr", {"lr": 0.002})
        await pilot.press("f4")
        await pilot.pause(0.1)
        assert client.calls[-1] == ("set_lr", {"lr": 0.001})
        assert any("0.002 → 0.001" in t for t in toasts(app)), toasts(app)
        # F2 asks, proposing the planner's LR, selected: typing replaces it.
        await pilot.press("f2")
        assert isinstance(app.screen, PromptScreen)
        for key in ("3", "e", "minus", "4"):
            await pilot.press(key)
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert client.calls[-1] == ("set_lr", {"lr": 3e-4})
        await pilot.press("f2")
        await pilot.press("ctrl+u", "5", "0", "enter")  # over 10: refused at the prompt
        await pilot.pause(0.1)
        assert isinstance(app.screen, PromptScreen)
        assert "10" in str(app.screen.query_one("#prompt-error", Static).render())
        await pilot.press("escape")
        assert client.calls[-1] == ("set_lr", {"lr": 3e-4})


async def test_segment_keys_end_and_extend_the_running_segment(tmp_path: Path) -> None:
    client = FakeClient()
    app = app_for(tmp_path, client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot, app)
        screen.focus_epochs()
        await pilot.press("f6")
        await pilot.pause(0.1)
        assert client.calls[-1] == ("end_segment", {"now": False})
        await pilot.press("f7")
        await pilot.pause(0.1)
        assert client.calls[-1] == ("end_segment", {"now": True})
        assert any("segment #3 ends now" in t for t in toasts(app)), toasts(app)
        await pilot.press("f8")
        assert isinstance(app.screen, PromptScreen)
        await pilot.press("minus", "5", "enter")
        await pilot.pause(0.1)
        assert client.calls[-1] == ("extend_segment", {"epochs": -5})
        assert any("shortened by 5 epochs: it ends at epoch 85" in t for t in toasts(app)), toasts(
            app
        )
        await pilot.press("f8", "0", "enter")  # 0 is refused at the prompt
        assert isinstance(app.screen, PromptScreen)
        await pilot.press("escape")
        assert [c for c, _ in client.calls].count("extend_segment") == 1


# -- bug 2: after a divergence, space does not train ----------------------------------------
async def test_after_a_divergence_space_asks_for_a_choice_and_f9_accepts(tmp_path: Path) -> None:
    client = FakeClient(reason="error", diverged=True)
    app = app_for(tmp_path, client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot, app)
        await pilot.press("escape")
        await pilot.press("space")
        await pilot.pause(0.2)
        assert client.calls[-1] == ("resume", {})
        assert client.state["state"] == "paused"  # refused: nothing trains
        assert "diverged: roll back (r) or accept (F9)" in str(
            screen.query_one("#topbar", Static).render()
        )
        await pilot.press("f9")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("enter")  # the focus is on Cancel: a reflex does not accept
        assert not isinstance(app.screen, ConfirmScreen)
        assert client.calls[-1] == ("resume", {})
        await pilot.press("f9", "y")
        await pilot.pause(0.2)
        assert client.calls[-1] == ("resume", {"accept": True})
        assert client.state["state"] == "running"


async def test_closing_a_dialog_puts_the_cursor_in_no_field(tmp_path: Path) -> None:
    """After Esc, ? and Esc, the next one-letter key acts: it is not typed into a field."""
    client = FakeClient()
    app = app_for(tmp_path, client)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot, app)
        await pilot.press("escape", "question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert app.screen is screen and app.focused is None
        await pilot.press("l")
        assert screen.query_one("#epochs", NumberInput).value == "30"
        assert screen.query_one("#loss-chart").log_scale  # type: ignore[attr-defined]
