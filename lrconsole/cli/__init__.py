"""The `lrconsole` command line. Parsing never imports torch: `--help` is instant."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from lrconsole import __version__
from lrconsole.errors import UserError

DESCRIPTION = """\
Steer PyTorch training by hand: train a few epochs at a learning rate, look at the
curves, choose the next epochs and LR. With no command, opens the console."""


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--sessions-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="where session folders live (default: ./sessions)",
    )
    parser = argparse.ArgumentParser(
        prog="lrconsole",
        description=DESCRIPTION,
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lrconsole {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, parents=[common])

    p = add("new", "open the console on a new session")
    p.add_argument("name", nargs="?", help="session name (default: lesson-<date>)")
    p.add_argument("--task", default=None, help="lesson, module.path:factory or file.py:factory")
    p.add_argument("--seed", type=int, default=None, help="training seed (default 0)")

    p = add("open", "open the console on a session, resuming it")
    p.add_argument("session", help="a session name or path")

    p = add("attach", "join the runner that is training a session")
    p.add_argument("session", help="a session name or path")
    p.add_argument("--lines", action="store_true", help="print events as lines, no console")

    p = add("run", "train a session headless from a schedule, creating or continuing it")
    p.add_argument("session", help="a session name or path")
    p.add_argument("--schedule", type=Path, help="schedule YAML (required for a new session)")
    p.add_argument("--task", default=None, help="override the schedule's task spec")
    p.add_argument("--seed", type=int, default=None, help="override the schedule's seed")
    p.add_argument(
        "--detach", action="store_true", help="start a runner in the background and return"
    )
    p.add_argument("--no-tensorboard", action="store_true", help="skip TensorBoard logging")
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="N",
        help="train with N processes under torchrun (DDP: gloo on CPU, nccl on GPU)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="checkpoint at the first epoch end this long after the last one (default 2)",
    )

    p = add("export", "write the path a session took as a replayable schedule YAML")
    p.add_argument("session", help="a session name or path")
    p.add_argument("-o", "--output", type=Path, help="output file (default: standard output)")

    add("sessions", "list sessions: name, task, epochs, last metrics, state")

    p = add("show", "a session's segments with per-segment metrics")
    p.add_argument("session", help="a session name or path")

    p = add("status", "one line about a session's runner")
    p.add_argument("session", help="a session name or path")
    p.add_argument("--json", action="store_true", help="print the state as JSON")

    p = add("stop", "ask a session's runner to save and exit")
    p.add_argument("session", help="a session name or path")

    p = add("rollback", "go back to a kept checkpoint; the abandoned path stays as a branch")
    p.add_argument("session", help="a session name or path")
    p.add_argument("--epoch", type=int, help="the epoch to go back to (default: list them)")

    p = add("lr-find", "LR range test on a copy of the model; proposes an LR")
    p.add_argument("session", help="a session name or path")
    p.add_argument("--start-lr", type=float, default=1e-6)
    p.add_argument("--end-lr", type=float, default=10.0)
    p.add_argument("--steps", type=int, default=100)

    p = add("preview", "draw a schedule's LR curve in the terminal")
    p.add_argument("file", type=Path, help="a schedule YAML")
    p.add_argument("--steps-per-epoch", type=int, default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "sessions_dir"):
        args.sessions_dir = Path("sessions")
    try:
        return dispatch(args)
    except UserError as exc:
        print(f"lrconsole: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def dispatch(args: argparse.Namespace) -> int:
    command = args.command
    if command == "run":
        from lrconsole.cli.headless import cmd_run

        return cmd_run(args)
    if command in ("export", "sessions", "show"):
        from lrconsole.cli import info

        return int(getattr(info, f"cmd_{command}")(args))
    if command in ("rollback", "lr-find", "preview"):
        from lrconsole.cli.strategies import dispatch as strategies

        return strategies(args)
    if command in ("status", "stop") or (command == "attach" and args.lines):
        from lrconsole.cli import remote as remote_commands

        return int(getattr(remote_commands, f"cmd_{command}")(args))
    return console(args)


def console(args: argparse.Namespace) -> int:
    from lrconsole.tui import run_console

    command = args.command
    return run_console(
        args.sessions_dir,
        session=getattr(args, "name", None) or getattr(args, "session", None),
        new=command == "new",
        task=getattr(args, "task", None),
        seed=getattr(args, "seed", None),
        attach=command == "attach",
    )
