"""The `lrconsole` command line. Parsing never imports torch: `--help` is instant."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from lrconsole import __version__
from lrconsole.cli.args import with_session
from lrconsole.errors import UserError

DESCRIPTION = """\
Steer PyTorch training by hand: train a few epochs at a learning rate, look at the
curves, choose the next epochs and LR. With no command, opens the console."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: `lrconsole: error: ...`, exit 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: dict[str, Parser] = {}

    def error(self, message: str) -> NoReturn:
        message = " ".join(message.split())
        self.exit(2, f"lrconsole: error: {message} (see {self.prog} --help)\n")


def whole(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum}, got {text!r}")
        return value

    return parse


def seconds(text: str) -> float:
    """An argparse type: a finite number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def folder_path(text: str) -> Path:
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    return Path(text)


def build_parser() -> Parser:
    common = Parser(add_help=False)
    common.add_argument(
        "--sessions-dir",
        type=folder_path,
        default=argparse.SUPPRESS,
        help="where session folders live (default: ./sessions)",
    )
    parser = Parser(
        prog="lrconsole",
        description=DESCRIPTION,
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lrconsole {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_text: str) -> Parser:
        command = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        parser.commands[name] = command
        return command

    p = add("new", "open the console on a new session")
    p.add_argument("name", nargs="?", help="session name (default: lesson-<date>)")
    p.add_argument("--task", default=None, help="lesson, module.path:factory or file.py:factory")
    p.add_argument("--seed", type=whole(0), default=None, help="training seed (default 0)")

    p = with_session(add("open", "open the console on a session, resuming it"))

    p = add("attach", "join the runner that is training a session")
    p.add_argument("session", nargs="?", help="a session name or path, HOST:SESSION (over ssh)")
    p.add_argument("--lines", action="store_true", help="print events as lines, no console")
    p.add_argument(
        "--socket", type=folder_path, metavar="PATH", help="a runner's control socket (ssh -L)"
    )

    p = with_session(
        add("run", "train a session headless from a schedule, creating or continuing it")
    )
    p.add_argument("--schedule", type=Path, help="schedule YAML (required for a new session)")
    p.add_argument("--task", default=None, help="override the schedule's task spec")
    p.add_argument("--seed", type=whole(0), default=None, help="override the schedule's seed")
    p.add_argument(
        "--detach", action="store_true", help="start a runner in the background and return"
    )
    p.add_argument("--no-tensorboard", action="store_true", help="skip TensorBoard logging")
    p.add_argument(
        "--no-grad-norm",
        action="store_true",
        help="no gradient diagnostics: no grad_norm columns and no gradient guard",
    )
    p.add_argument(
        "--grad-norm-layers",
        action="store_true",
        help="also log each layer's gradient norm to TensorBoard at epoch ends",
    )
    p.add_argument(
        "--nproc",
        type=whole(1),
        default=1,
        metavar="N",
        help="train with N processes under torchrun (DDP: gloo on CPU, nccl on GPU)",
    )
    p.add_argument(
        "--nnodes", type=whole(1), default=1, metavar="N", help="machines in the run (default 1)"
    )
    p.add_argument(
        "--node-rank",
        type=whole(0),
        default=0,
        metavar="K",
        help="this machine's number, 0..N-1; node 0 holds the session folder",
    )
    p.add_argument(
        "--rdzv-endpoint",
        default=None,
        metavar="HOST:PORT",
        help="node 0's address and a free port for torchrun's c10d rendezvous",
    )
    p.add_argument(
        "--checkpoint-every",
        type=seconds,
        default=2.0,
        metavar="SECONDS",
        help="checkpoint at the first epoch end this long after the last one (default 2)",
    )

    p = with_session(add("export", "write the path a session took as a replayable schedule YAML"))
    p.add_argument("-o", "--output", metavar="FILE", help="output file; - or none: standard output")

    add("sessions", "list sessions: name, task, epochs, last metrics, state")

    p = with_session(add("show", "a session's segments with per-segment metrics"))

    p = add("status", "one line about a session's runner")
    p.add_argument("session", nargs="?", help="a session name or path (or --socket)")
    p.add_argument("--json", action="store_true", help="print the state as JSON")
    p.add_argument(
        "--socket", type=folder_path, metavar="PATH", help="a runner's control socket (ssh -L)"
    )

    p = with_session(add("stop", "ask a session's runner to save and exit"))

    p = with_session(
        add("rollback", "go back to a kept checkpoint; the abandoned path stays as a branch")
    )
    p.add_argument("--epoch", type=whole(0), help="the epoch to go back to (default: list them)")

    p = with_session(
        add("prune", "remove checkpoints a session no longer needs; prints what it freed")
    )
    p.add_argument(
        "--keep",
        type=whole(0),
        default=None,
        metavar="N",
        help="newest checkpoints to keep, the current one always (default: keep_checkpoints)",
    )
    p.add_argument("--keep-boundaries", action="store_true", help="keep every segment boundary too")

    p = with_session(
        add("pin", "keep a checkpoint for good (pruning skips it); no EPOCH: list them")
    )
    p.add_argument("epoch", type=whole(0), nargs="?", help="the epoch whose checkpoint to pin")
    p.add_argument("--off", action="store_true", help="unpin it instead")

    p = with_session(add("lr-find", "LR range test on a copy of the model; proposes an LR"))
    p.add_argument(
        "--start-lr",
        type=float,
        default=1e-6,
        metavar="LR",
        help="the sweep's first LR, > 0 (default 1e-6)",
    )
    p.add_argument(
        "--end-lr",
        type=float,
        default=10.0,
        metavar="LR",
        help="the sweep's last LR, above --start-lr, at most 10 (default 10)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=100,
        metavar="N",
        help="batches in the sweep, 5 to 10000 (default 100); it stops early on divergence",
    )

    p = add("preview", "draw a schedule's LR curve in the terminal")
    p.add_argument("file", type=Path, help="a schedule YAML")
    p.add_argument(
        "--steps-per-epoch",
        type=whole(1),
        default=None,
        metavar="N",
        help="optimizer steps per epoch (default: the schedule's steps_per_epoch, else 1)",
    )

    from lrconsole.cli.steering import add_commands as add_steering

    add_steering(add)
    from lrconsole.cli.admin import add_commands as add_admin

    add_admin(add)

    p = add("compare", "runs side by side: a table of their metrics and one chart")
    p.add_argument("sessions", nargs="+", metavar="SESSION", help="two or more sessions")
    p.add_argument("--metric", default=None, help="the metric to chart (default: the monitor)")
    p.add_argument("--log", action="store_true", help="log scale for the chart")
    from lrconsole.cli.plot import add_command as add_plot

    add_plot(add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check(parser, args)
    try:
        code = dispatch(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except UserError as exc:
        print(f"lrconsole: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader left (`lrconsole show X | head -1`): stop quietly. Python flushes
        # stdout again at exit, so point it at devnull first (the Python docs' recipe).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def check(parser: Parser, args: argparse.Namespace) -> None:
    """What argparse cannot check one argument at a time; exits 2 with one line."""
    command = parser.commands.get(args.command, parser)
    given = hasattr(args, "sessions_dir")
    if not given:
        args.sessions_dir = Path("sessions")
    if args.sessions_dir.exists() and not args.sessions_dir.is_dir():
        default = "" if given else " (the default)"
        command.error(f"--sessions-dir: {args.sessions_dir}{default} is a file, not a folder")
    if args.command in ("attach", "status") and (args.session is None) == (args.socket is None):
        both = args.session is not None
        command.error("give a SESSION or --socket PATH" + (", not both" if both else ""))
    if args.command == "lr-find":  # the runner's rules: 0 < start_lr < end_lr <= 10, steps
        from lrconsole.protocol import ProtocolError, check_args

        options = {"start_lr": args.start_lr, "end_lr": args.end_lr, "steps": args.steps}
        try:
            check_args("lr_find", options)
        except ProtocolError as exc:
            command.error(exc.message)


STEERING = ("set-lr", "set", "note", "end-segment", "extend", "queue", "pause", "resume")


def dispatch(args: argparse.Namespace) -> int:
    command = args.command
    if command == "run":
        from lrconsole.cli.headless import cmd_run

        return cmd_run(args)
    if command in ("export", "sessions", "show"):
        from lrconsole.cli import info

        return int(getattr(info, f"cmd_{command}")(args))
    if command in ("prune", "pin"):
        from lrconsole.cli import prune

        return prune.cmd_prune(args) if command == "prune" else prune.cmd_pin(args)
    if command == "compare":
        from lrconsole.cli.compare import cmd_compare

        return cmd_compare(args)
    if command == "plot":
        from lrconsole.cli.plot import cmd_plot

        return cmd_plot(args)
    if command in ("delete", "rename"):
        from lrconsole.cli.admin import run_command as admin

        return admin(args)
    if command in STEERING:
        from lrconsole.cli.steering import run_command

        return run_command(args)
    if command in ("rollback", "lr-find", "preview"):
        from lrconsole.cli.strategies import dispatch as strategies

        return strategies(args)
    if command == "attach" and ":" in (args.session or ""):  # HOST:SESSION, through ssh
        from lrconsole.cli.sshattach import attach_over_ssh

        if (code := attach_over_ssh(args)) is not None:
            return code
    if command == "attach" and args.socket is not None and not args.lines:
        from lrconsole.cli.remote import cmd_attach_socket

        return cmd_attach_socket(args)
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
