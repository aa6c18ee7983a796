"""Argument helpers shared by the command modules."""

from __future__ import annotations

import argparse
from typing import TypeVar

P = TypeVar("P", bound=argparse.ArgumentParser)


def with_session(parser: P) -> P:
    """`parser` taking the SESSION positional every session command takes first."""
    parser.add_argument("session", help="a session name or path")
    return parser
