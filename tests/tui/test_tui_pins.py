"""The rollback picker lists only the epochs that can be restored, marks the pinned ones,
and `p` pins or unpins the highlighted one through the given command."""

from __future__ import annotations

from screen_text import screen_text
from textual.app import App
from textual.widgets import OptionList

from lrconsole.tui.screens.strategies import RollbackScreen


async def test_p_pins_and_unpins_the_highlighted_epoch() -> None:
    sent: list[tuple[int, bool]] = []
    pinned_now: set[int] = {2}

    async def pin(epoch: int, on: bool) -> list[int] | None:
        sent.append((epoch, on))
        (pinned_now.add if on else pinned_now.discard)(epoch)
        return sorted(pinned_now)

    rows = [{"global_epoch": e, "lr": 0.01, "metrics": {"test_loss": 1.0 / e}} for e in (2, 5, 9)]
    screen = RollbackScreen([2, 5, 9], rows, "test_loss", pinned=[2], pin=pin)
    app: App[None] = App()
    async with app.run_test() as pilot:
        app.push_screen(screen)
        await pilot.pause()
        options = screen.query_one(OptionList)

        def labels() -> list[str]:
            return [str(options.get_option_at_index(i).prompt) for i in range(3)]

        assert labels() == [
            "epoch 9  test_loss 0.11111  lr 0.01",
            "epoch 5  test_loss 0.2  lr 0.01",
            "epoch 2  test_loss 0.5  lr 0.01  (pinned)",
        ]
        # Drawn, not only in the prompt string (a "[pinned]" was taken as markup: unseen).
        assert "epoch 2  test_loss 0.5  lr 0.01  (pinned)" in screen_text(app)
        await pilot.press("p")  # the newest is highlighted first
        await pilot.pause()
        assert sent == [(9, True)] and labels()[0].endswith("(pinned)")
        await pilot.press("down", "down", "p")
        await pilot.pause()
        assert sent[-1] == (2, False) and not labels()[2].endswith("(pinned)")
        assert screen.pinned == {9}
