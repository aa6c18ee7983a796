"""Plain text of what a running (test) app shows: for assertions and README captures."""

from __future__ import annotations

from textual.app import App


def screen_text(app: App[object]) -> str:
    update = app.screen._compositor.render_full_update()
    return "\n".join("".join(s.text for s in line).rstrip() for line in update.strips)
