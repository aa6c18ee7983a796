"""Errors that reach the user as one line and exit code 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: shown as one line, exit code 2, no traceback."""

    exit_code = 2


class SessionBusy(UserError):
    """Another live process holds the session's lock."""
