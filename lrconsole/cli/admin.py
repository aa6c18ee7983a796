"""`lrconsole delete SESSION [--yes]` and `lrconsole rename SESSION NEW` (no torch)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from lrconsole.cli.args import with_session
from lrconsole.errors import UserError

COMMANDS = ("delete", "rename")


def add_commands(add: Callable[[str, str], Any]) -> None:
    p = with_session(add("delete", "delete a session folder and all its files (asks first)"))
    p.add_argument("--yes", action="store_true", help="do not ask (needed without a terminal)")

    p = with_session(add("rename", "rename a session (its folder)"))
    p.add_argument("new", metavar="NEW", help="the new name")


def run_command(args: argparse.Namespace) -> int:
    from lrconsole.core.session.admin import (
        check_free,
        delete_session,
        folder_size,
        format_size,
        rename_session,
    )
    from lrconsole.core.session.discover import resolve_session

    folder = resolve_session(args.sessions_dir, args.session)
    if args.command == "rename":
        target = rename_session(folder, args.new)
        print(f"renamed session {folder.name!r} to {target.name!r}")
        return 0
    what = f"session {folder.name!r} ({folder}, {format_size(folder_size(folder))})"
    check_free(folder, "delete")  # before asking: a question whose yes would be refused
    if not args.yes:
        if not sys.stdin.isatty():
            raise UserError(f"delete: not asking without a terminal: add --yes to delete {what}")
        try:
            answer = input(f"delete {what} and all its files? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    delete_session(folder)
    print(f"deleted {what}")
    return 0
