"""Snapshot tests (pytest-textual-snapshot): fixed data, no clocks or pids on screen.

Update the reference SVGs with `pytest tests/tui --snapshot-update` after a deliberate
change of the layout, and look at them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fake import FakeClient, fake_factory
from textual.pilot import Pilot

from lrconsole.tui.app import make_app

SIZE = (100, 30)


class TestHomeScreen:
    def test_home_lists_sessions(self, snap_compare: Any, fixed_sessions: Path) -> None:
        app = make_app(fixed_sessions)
        assert snap_compare(app, terminal_size=SIZE)

    def test_home_large_terminal(self, snap_compare: Any, fixed_sessions: Path) -> None:
        app = make_app(fixed_sessions)
        assert snap_compare(app, terminal_size=(140, 40))


class TestRunScreen:
    @staticmethod
    def _app(tmp_path: Path, client: FakeClient) -> Any:
        return make_app(
            tmp_path / "sessions",
            session_dir=tmp_path / "sessions" / client.name,
            connector_factory=fake_factory(client),
        )

    @staticmethod
    async def _settle(pilot: Pilot[Any]) -> None:
        await pilot.pause(0.4)  # one throttle tick draws the charts

    def test_paused_run(self, snap_compare: Any, tmp_path: Path) -> None:
        app = self._app(tmp_path, FakeClient())
        assert snap_compare(app, terminal_size=SIZE, run_before=self._settle)

    def test_paused_run_log_scale_large(self, snap_compare: Any, tmp_path: Path) -> None:
        app = self._app(tmp_path, FakeClient())

        async def run_before(pilot: Pilot[Any]) -> None:
            await pilot.press("escape", "l")  # l acts when no field has the focus
            await self._settle(pilot)

        assert snap_compare(app, terminal_size=(140, 40), run_before=run_before)

    def test_waiting_for_first_segment(self, snap_compare: Any, tmp_path: Path) -> None:
        client = FakeClient(name="fresh", segments=[], queued=[], reason="queue_empty")
        app = self._app(tmp_path, client)
        assert snap_compare(app, terminal_size=SIZE, run_before=self._settle)

    def test_bad_input_messages(self, snap_compare: Any, tmp_path: Path) -> None:
        app = self._app(tmp_path, FakeClient())

        async def run_before(pilot: Pilot[Any]) -> None:
            await self._settle(pilot)
            app.screen.query_one("#epochs").value = "2.5"
            app.screen.query_one("#lr").value = "nan"
            await pilot.press("enter")
            await pilot.pause(0.2)

        assert snap_compare(app, terminal_size=SIZE, run_before=run_before)

    def test_help_screen(self, snap_compare: Any, tmp_path: Path) -> None:
        app = self._app(tmp_path, FakeClient())
        assert snap_compare(
            app, terminal_size=SIZE, press=["escape", "question_mark"], run_before=self._settle
        )
