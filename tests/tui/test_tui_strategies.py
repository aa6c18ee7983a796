"""Pilot tests for the strategies in the console: r (rollback), f (LR range test), and the
divergence guard's offer, with a real runner behind them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import OptionList

from lrconsole.tui.screens.strategies import LrFindScreen, RollbackScreen
from lrconsole.tui.widgets.planner import NumberInput
from tests.tui.test_tui_pilot import (
    LESSON,
    SIZE,
    connected,
    console,
    finish,
    queue_and_wait_paused,
    set_field,
    stop_runner,
    wait_for,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Path]:
    sessions = tmp_path / "sessions"
    sessions.mkdir()
    folder = sessions / "strat"
    yield folder
    stop_runner(folder)


async def test_r_rolls_back_to_a_picked_checkpoint(session: Path) -> None:
    app = console(session, create=dict(LESSON))
    async with app.run_test(size=SIZE) as pilot:
        screen = await connected(pilot, app)
        await queue_and_wait_paused(pilot, screen, 3)
        await queue_and_wait_paused(pilot, screen, 2)
        assert screen.model.global_epoch == 5
        await pilot.press("ctrl+r")  # from inside a field too (r alone is typed there)
        await wait_for(pilot, lambda: isinstance(app.screen, RollbackScreen), what="the picker")
        picker = app.screen
        assert isinstance(picker, RollbackScreen) and 3 in picker.epochs
        options = picker.query_one(OptionList)
        options.highlighted = picker.epochs.index(3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.model.global_epoch == 3, what="epoch 3 again")
        assert len(screen.model.lr) == 3  # the history after the fork is gone from the chart
        assert (session / "branches" / "path-0.csv").is_file()  # ...and kept as a branch
        await finish(app)


async def test_f_runs_the_range_test_and_prefills_the_lr(session: Path) -> None:
    app = console(session, create=dict(LESSON))
    async with app.run_test(size=SIZE) as pilot:
        screen = await connected(pilot, app)
        await queue_and_wait_paused(pilot, screen, 2)
        screen.query_one("#segments").focus()  # not typing in a field
        await pilot.press("f")
        await wait_for(pilot, lambda: isinstance(app.screen, LrFindScreen), 60, "the result")
        result = app.screen
        assert isinstance(result, LrFindScreen)
        proposed = result.result["suggestion"]
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, LrFindScreen), what="close")
        assert screen.query_one("#lr", NumberInput).value == f"{proposed:.3g}"
        assert screen.model.global_epoch == 2  # the run itself did not move
        await finish(app)


async def test_divergence_offers_rollback_with_a_lower_lr(session: Path) -> None:
    app = console(session, create=dict(LESSON))
    async with app.run_test(size=SIZE) as pilot:
        screen = await connected(pilot, app)
        await queue_and_wait_paused(pilot, screen, 3)
        await set_field(pilot, screen, "epochs", "5")
        await set_field(pilot, screen, "lr", "10")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RollbackScreen), 60, "the offer")
        offer = app.screen
        assert isinstance(offer, RollbackScreen) and "loss" in offer.reason
        assert offer.epochs[0] == 3  # the last good epoch comes first
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.model.global_epoch == 3, what="epoch 3 again")
        await wait_for(
            pilot, lambda: screen.query_one("#lr", NumberInput).value == "1", what="lr 1"
        )
        # The proposal is selected, in the focused LR field: typing replaces it.
        lr = screen.query_one("#lr", NumberInput)
        assert app.focused is lr
        await pilot.press("5")
        assert lr.value == "5"
        await finish(app)


async def test_after_a_divergence_esc_and_space_do_not_train(session: Path) -> None:
    """Bug 2: the diverged LR never resumes on a single key; F9 accepts, after a question."""
    app = console(session, create=dict(LESSON))
    async with app.run_test(size=SIZE) as pilot:
        screen = await connected(pilot, app)
        await queue_and_wait_paused(pilot, screen, 3)
        await set_field(pilot, screen, "epochs", "30")
        await set_field(pilot, screen, "lr", "5")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RollbackScreen), 60, "the offer")
        await pilot.press("escape")  # close the offer
        await pilot.press("escape")  # leave the field
        at = screen.model.global_epoch
        await pilot.press("space")
        await wait_for(
            pilot,
            lambda: "roll back (r) or accept (F9)" in str(screen.query_one("#topbar").render()),
            what="the refusal",
        )
        assert ("resume", {}) in screen.controller.sent
        await pilot.pause(0.5)
        assert screen.model.global_epoch == at and not screen.model.running
        status = await screen.controller.call("status")
        assert status["state"] == "paused"
        # Accept explicitly: a question first, then the run goes on (and diverges again).
        await pilot.press("f9")
        await pilot.press("y")
        await wait_for(
            pilot, lambda: ("resume", {"accept": True}) in screen.controller.sent, what="accept"
        )
        await wait_for(pilot, lambda: isinstance(app.screen, RollbackScreen), 60, "a new offer")
        await finish(app)
