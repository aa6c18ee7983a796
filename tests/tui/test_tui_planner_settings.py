"""The planner's optional fields (momentum, betas, weight_decay, clip_grad_norm, note),
"set now" for them (ctrl+o), and the segments table's settings and note columns.

The console side against the in-process fake runner: what is sent is checked command by
command; the runner's own checks and the replay are tested with the runner itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fake import FakeClient, fake_factory
from screen_text import screen_text
from textual.pilot import Pilot
from textual.widgets import Input, OptionList, Static

from lrconsole.tui.app import make_app
from lrconsole.tui.screens.dialogs import PromptScreen
from lrconsole.tui.screens.run import RunScreen
from lrconsole.tui.widgets.planner import NumberInput

SIZE = (80, 24)


class SettingsClient(FakeClient):
    """The fake runner, answering `set` as the runner does (the step it applies from)."""

    async def call(self, cmd: str, timeout: float = 5.0, **args: Any) -> dict[str, Any]:
        if cmd == "set":
            self.calls.append((cmd, args))
            return {"global_step": self.plan["done_steps"]}
        return await super().call(cmd, timeout, **args)


def app_for(tmp_path: Path, client: FakeClient) -> Any:
    return make_app(
        tmp_path / "sessions",
        session_dir=tmp_path / "sessions" / client.name,
        connector_factory=fake_factory(client),
    )


async def settle(pilot: Pilot[Any]) -> None:
    await pilot.pause(0.4)


def queued(client: FakeClient) -> list[dict[str, Any]]:
    return [args["segments"][-1] for cmd, args in client.calls if cmd == "queue"]


def field(app: Any, name: str) -> NumberInput:
    return app.screen.query_one(f"#{name}", NumberInput)


async def test_collapsed_by_default_and_only_filled_fields_are_sent(tmp_path: Path) -> None:
    client = SettingsClient()
    app = app_for(tmp_path, client)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert not app.screen.query_one("#more").display  # the planner stays small
        assert "▸ more" in screen_text(app)
        field(app, "epochs").focus()
        await pilot.press("enter")
        await settle(pilot)
        assert queued(client)[-1] == {"epochs": 30, "lr": 0.01}  # nothing else sent

        await pilot.click("#more-toggle")
        await settle(pilot)
        assert app.screen.query_one("#more").display
        assert app.focused is field(app, "momentum")
        for name, text in (
            ("momentum", "0.95"),
            ("betas", "0.8, 0.99"),
            ("weight_decay", "1e-4"),
            ("clip_grad_norm", "off"),
            ("note", "  lower LR after the plateau "),
        ):
            field(app, name).value = text
        field(app, "epochs").focus()
        await pilot.press("enter")
        await settle(pilot)
        assert queued(client)[-1] == {
            "epochs": 30,
            "lr": 0.01,
            "momentum": 0.95,
            "betas": [0.8, 0.99],
            "weight_decay": 1e-4,
            "clip_grad_norm": None,  # off
            "note": "lower LR after the plateau",
        }
        assert field(app, "note").value == ""  # a note belongs to one segment
        assert field(app, "momentum").value == "0.95"  # settings stay, like epochs and LR
        options = app.screen.query_one("#queue", OptionList)
        last = str(options.get_option_at_index(options.option_count - 1).prompt)
        assert "m 0.95" in last and "β 0.8,0.99" in last and "clip off" in last and "✎" in last


async def test_a_bad_setting_is_refused_at_its_field(tmp_path: Path) -> None:
    client = SettingsClient()
    app = app_for(tmp_path, client)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        cases = (
            ("momentum", "1.5", "momentum: must be in [0, 1), got 1.5"),
            ("betas", "0.9", "betas: two numbers, e.g. 0.9,0.999"),
            ("weight_decay", "-1", "weight_decay: must be >= 0"),
            ("clip_grad_norm", "0", "clip_grad_norm: must be > 0 (or off)"),
            ("note", "x" * 501, "note: is 501 characters long (the limit is 500)"),
        )
        for name, bad, message in cases:
            field(app, name).value = bad
            field(app, "epochs").focus()
            await pilot.press("enter")
            await settle(pilot)
            assert app.screen.query_one("#more").display  # opened to show the field
            assert app.focused is field(app, name)
            assert message in str(app.screen.query_one(f"#{name}-error", Static).render())
            assert not queued(client), name  # nothing sent
            field(app, name).value = ""  # typing clears the message
            await pilot.pause()
            assert str(app.screen.query_one(f"#{name}-error", Static).render()) == ""


async def test_editing_a_queued_segment_loads_its_settings(tmp_path: Path) -> None:
    client = SettingsClient()
    client.plan["segments"][-1].update(momentum=0.5, note="queued with a note")
    app = app_for(tmp_path, client)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.screen.query_one("#queue", OptionList).focus()
        await pilot.press("enter")  # edit queued #3
        await settle(pilot)
        assert app.screen.query_one("#more").display
        assert field(app, "momentum").value == "0.5"
        assert field(app, "note").value == "queued with a note"
        assert field(app, "betas").value == ""
        field(app, "momentum").value = "0.7"
        field(app, "epochs").focus()
        await pilot.press("enter")
        await settle(pilot)
        sent = [a for c, a in client.calls if c == "queue"][-1]
        assert sent["replace"] is True
        assert sent["segments"] == [
            {"epochs": 30, "lr": 0.005, "momentum": 0.7, "note": "queued with a note"}
        ]


async def test_ctrl_o_sets_settings_now_even_while_typing(tmp_path: Path) -> None:
    client = SettingsClient()
    app = app_for(tmp_path, client)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        field(app, "epochs").focus()
        await pilot.press("1", "ctrl+o")  # in a field: ctrl+o still acts
        await settle(pilot)
        assert isinstance(app.screen, PromptScreen)
        value = app.screen.query_one("#prompt-value", Input)
        value.value = "momentum=1"
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, PromptScreen)  # refused in the dialog
        error = str(app.screen.query_one("#prompt-error", Static).render())
        assert "momentum: must be in [0, 1)" in error
        value.value = "momentum=0.9 weight_decay=1e-4 clip_grad_norm=off"
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, RunScreen)
        sets = [args for cmd, args in client.calls if cmd == "set"]
        assert sets == [{"momentum": 0.9, "weight_decay": 1e-4, "clip_grad_norm": None}]
        toasts = [str(n.message) for n in app._notifications]
        assert any("momentum 0.9, weight_decay 0.0001, clip_grad_norm off" in t for t in toasts)
        assert field(app, "epochs").value == "1"  # typed into the field before ctrl+o


async def test_ctrl_o_proposes_the_planners_settings(tmp_path: Path) -> None:
    client = SettingsClient()
    app = app_for(tmp_path, client)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        field(app, "momentum").value = "0.8"
        field(app, "weight_decay").value = "bad"  # not proposed
        await pilot.press("ctrl+o")
        await settle(pilot)
        assert app.screen.query_one("#prompt-value", Input).value == "momentum=0.8"


async def test_segments_table_shows_settings_that_change_and_notes(tmp_path: Path) -> None:
    client = SettingsClient()
    first, second = client.plan["segments"][:2]
    first.update(momentum=0.9, note="warm start")
    second.update(momentum=0.9, weight_decay=0.001, note="lower LR: the loss was flat")
    app = app_for(tmp_path, client)
    async with app.run_test(size=(160, 30)) as pilot:
        await settle(pilot)
        lines = screen_text(app).splitlines()
        header = next(line for line in lines if "│ #  epochs" in line)
        assert "settings" in header and header.rstrip(" │").endswith("note")
        row1 = next(line for line in lines if line.startswith("│ 1  30"))
        row2 = next(line for line in lines if line.startswith("│ 2  30"))
        assert "m 0.9" in row1 and "warm start" in row1
        # momentum did not change in segment 2: only weight decay is shown
        assert "wd 0.001" in row2 and "m 0.9" not in row2
        assert "lower LR: the loss was flat" in row2


async def test_no_settings_no_extra_columns(tmp_path: Path) -> None:
    app = app_for(tmp_path, SettingsClient())
    async with app.run_test(size=(160, 30)) as pilot:
        await settle(pilot)
        header = next(line for line in screen_text(app).splitlines() if "│ #  epochs" in line)
        assert "settings" not in header and "note" not in header


# -- with a real runner -----------------------------------------------------------------------
@pytest.mark.slow
async def test_a_real_runner_takes_the_planners_settings_and_set_now(tmp_path: Path) -> None:
    from tests.tui.test_tui_pilot import (
        LESSON,
        connected,
        console,
        finish,
        set_field,
        stop_runner,
        wait_for,
    )

    folder = tmp_path / "sessions" / "opt"
    app = console(folder, create=dict(LESSON))
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await connected(pilot, app)
            await set_field(pilot, screen, "epochs", "2")
            await set_field(pilot, screen, "lr", "0.01")
            await pilot.click("#more-toggle")
            await set_field(pilot, screen, "momentum", "0.5")
            await set_field(pilot, screen, "note", "first try")
            await pilot.press("enter")
            await wait_for(
                pilot,
                lambda: screen.model.global_epoch >= 2 and not screen.model.running,
                timeout=60,
                what="2 epochs",
            )
            first = screen.model.segments()[0]
            assert first.get("momentum") == 0.5 and first.get("note") == "first try"
            # A long segment, then ctrl+o while it trains: the runner takes `set`.
            await set_field(pilot, screen, "epochs", "5000")
            await pilot.press("enter")
            await wait_for(pilot, lambda: screen.model.running, timeout=30, what="training")
            await pilot.press("ctrl+o")
            await pilot.pause(0.2)
            assert isinstance(app.screen, PromptScreen)
            assert app.screen.query_one("#prompt-value", Input).value == "momentum=0.5"
            app.screen.query_one("#prompt-value", Input).value = "momentum=0.7"
            await pilot.press("enter")
            await wait_for(
                pilot,
                lambda: any(s.get("momentum") == 0.7 for s in screen.model.segments()),
                timeout=30,
                what="the plan with momentum 0.7 from the next step",
            )
            toasts = [str(n.message) for n in app._notifications]
            assert any("momentum 0.7 from the next step" in t for t in toasts), toasts
            await screen.controller.call("pause")
            await finish(app)
    finally:
        stop_runner(folder)
