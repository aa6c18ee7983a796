"""The Textual console. Never imports torch: training runs in the runner process."""

from __future__ import annotations

from pathlib import Path


def run_console(
    sessions_dir: Path,
    *,
    session: str | None = None,
    new: bool = False,
    task: str | None = None,
    seed: int | None = None,
    attach: bool = False,
) -> int:
    """Run the console in this terminal; return the exit code.

    Home screen when `session is None and not new`; `new` creates a session (named
    `session`, or a fresh name); otherwise `session` is opened (or attached to).
    Raises UserError for a session that does not exist or already exists.
    """
    from lrconsole.errors import UserError
    from lrconsole.tui.app import make_app

    # The manifest code loads only for a session: the home screen's first frame skips it.
    sessions_dir = Path(sessions_dir)
    session_dir: Path | None = None
    create = None
    if new:
        from lrconsole.core.session.discover import new_session_name, resolve_session
        from lrconsole.core.session.layout import MANIFEST

        name = session or new_session_name(sessions_dir)
        session_dir = resolve_session(sessions_dir, name, must_exist=False)
        if (session_dir / MANIFEST).exists():
            raise UserError(f"session {name!r} exists: open it with `lrconsole open {name}`")
        create = {"task": task or "lesson", "seed": 0 if seed is None else seed}
    elif session is not None:
        from lrconsole.core.session.discover import resolve_session

        session_dir = resolve_session(sessions_dir, session)
    app = make_app(sessions_dir, session_dir=session_dir, create=create, attach=attach)
    code = app.run()
    return int(code or 0) if app.return_code is None else int(app.return_code)


__all__ = ["run_console"]
