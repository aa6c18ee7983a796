"""Errors that reach the user as one line and exit code 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: shown as one line, exit code 2, no traceback."""

    exit_code = 2


class SessionBusy(UserError):
    """Another live process holds the session's lock."""


class NotAnswering(UserError):
    """A live process holds the session's lock but its control socket does not answer
    (suspended with SIGSTOP or Ctrl-Z, or wedged): exit code 3, so scripts can tell it
    from "no runner" (0) and bad input (2)."""

    exit_code = 3


class RunnerDied(UserError):
    """The runner a client followed went away without saying goodbye: exit code 4."""

    exit_code = 4


class TrainingFailed(UserError):
    """Training stopped mid-run on an error outside the user's input (a full disk):
    one line and exit code 1; the last checkpoint is kept."""

    exit_code = 1
