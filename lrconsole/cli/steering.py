"""`lrconsole set-lr`, `end-segment`, `extend`, `queue`, `pause` and `resume`: steering a
live runner from the shell, one line each. Parsing stays light: the client loads on use."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lrconsole.core.plan import shapes
from lrconsole.core.plan.schema import EPOCHS_MAX, Field, FieldError, read_epochs, read_lr
from lrconsole.errors import UserError

COMMANDS = ("set-lr", "end-segment", "extend", "queue", "pause", "resume")


def _schema_type(rule: Callable[[Field], Any], name: str) -> Callable[[str], Any]:
    """An argparse type: the text as a number, checked by the schema's rule for it."""

    def parse(text: str) -> Any:
        try:
            value: Any = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        try:
            return rule(Field(value, name))
        except FieldError as exc:  # argparse names the argument already
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{name}: ")) from None

    return parse


def _shape(text: str) -> str:
    if text not in shapes.SHAPES:
        known = ", ".join(shapes.SHAPES)
        raise argparse.ArgumentTypeError(f"unknown shape {text!r} (known: {known})")
    return text


def _extend_epochs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 0 < abs(value) <= EPOCHS_MAX:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from -{EPOCHS_MAX:,} to {EPOCHS_MAX:,}, not 0, got {text!r}"
        )
    return value


def add_commands(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """Register the steering commands with the main parser's `add`."""
    lr = _schema_type(read_lr, "LR")
    p = add("set-lr", "train the running segment at LR from the next optimizer step")
    p.add_argument("session", help="a session name or path")
    p.add_argument("lr", type=lr, metavar="LR", help="the learning rate, > 0 and at most 10")

    p = add("end-segment", "end the running segment after this epoch; the queue moves on")
    p.add_argument("session", help="a session name or path")
    p.add_argument("--now", action="store_true", help="end it at the next batch instead")

    p = add("extend", "add epochs to the running segment; a negative number shortens it")
    p.add_argument("session", help="a session name or path")
    p.add_argument(
        "epochs",
        type=_extend_epochs,
        metavar="EPOCHS",
        help="epochs to add (negative: to remove; it still finishes the epoch in progress)",
    )

    p = add("queue", "queue a segment after the others")
    p.add_argument("session", help="a session name or path")
    p.add_argument(
        "--epochs",
        type=_schema_type(read_epochs, "--epochs"),
        required=True,
        metavar="N",
        help=f"epochs, 1 to {EPOCHS_MAX:,}",
    )
    p.add_argument("--lr", type=lr, required=True, help="the segment's (peak) learning rate")
    p.add_argument(
        "--shape",
        type=_shape,
        default="constant",
        metavar="NAME",
        help=f"the LR's shape, with its default parameters: {', '.join(shapes.SHAPES)}",
    )

    p = add("pause", "pause a session's runner at the next batch")
    p.add_argument("session", help="a session name or path")

    p = add("resume", "resume a paused runner")
    p.add_argument("session", help="a session name or path")
    p.add_argument(
        "--accept-divergence",
        action="store_true",
        help="after the loss diverged: go on as planned instead of rolling back",
    )


def ask(folder: Path, requests: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Send `requests` in order over one connection to the session's live runner."""
    from lrconsole.client import CommandFailed, ConnectionLost, RunnerClient
    from lrconsole.core.session.layout import SOCKET
    from lrconsole.runner.launch import check_answering, runner_alive

    if not runner_alive(folder):
        check_answering(folder)  # suspended: exit 3, not "no runner"
        raise UserError(
            f"no runner is running for {folder.name}; start it with "
            f"`lrconsole run {folder.name} --detach`"
        )

    async def talk() -> list[dict[str, Any]]:
        client = await RunnerClient.connect(folder / SOCKET, hello=False)
        try:
            return [await client.call(cmd, timeout=10, **args) for cmd, args in requests]
        finally:
            await client.close()

    try:
        return asyncio.run(talk())
    except CommandFailed as exc:
        raise UserError(exc.message) from None
    except (ConnectionLost, TimeoutError) as exc:
        raise UserError(f"{folder.name}: {exc}") from None


def where(step: int, spe: int) -> str:
    """A step as a person counts: epoch (and batch) from 1."""
    epoch, batch = divmod(step, spe)
    return f"after epoch {epoch}" if batch == 0 else f"in epoch {epoch + 1} after batch {batch}"


def run_command(args: argparse.Namespace) -> int:
    from lrconsole.core.session.discover import resolve_session
    from lrconsole.core.session.manifest import Manifest

    folder = resolve_session(args.sessions_dir, args.session)
    name, spe = folder.name, Manifest.read(folder).steps_per_epoch
    command = args.command
    if command == "set-lr":
        result, state = ask(folder, [("set_lr", {"lr": args.lr}), ("status", {})])
        step = result["global_step"]
        print(
            f"{name}: lr {args.lr:g} from the next step ({where(step, spe)}) to the end of "
            f"the running segment (numbered {state['segment'] + 1} from there)"
        )
    elif command == "end-segment":
        (result,) = ask(folder, [("end_segment", {"now": args.now})])
        step = result["global_step"]
        print(
            f"{name}: segment {result['segment'] + 1} ends {where(step, spe)}; the queue moves on"
        )
    elif command == "extend":
        (result,) = ask(folder, [("extend_segment", {"epochs": args.epochs})])
        n, epochs = result["segment"] + 1, result["epochs"]
        size = f"{epochs:g} epochs" if epochs != 1 else "1 epoch"
        if result["changed"]:
            print(f"{name}: segment {n} is now {size}, ending {where(result['end_step'], spe)}")
        else:
            print(f"{name}: segment {n} stays {size}: the epoch in progress always completes")
    elif command == "queue":
        seg = {"epochs": args.epochs, "lr": args.lr, "shape": args.shape}
        plan, state = ask(folder, [("queue", {"segments": [seg]}), ("status", {})])
        count = len(plan["segments"])
        waiting = ""
        if state["state"] == "paused" and state["reason"] != "queue_empty":
            waiting = f"; paused ({state['reason']}): `lrconsole resume {name}` goes on"
        shape = "" if args.shape == "constant" else f" {args.shape}"
        print(f"{name}: queued segment {count}: {args.epochs} epochs @ {args.lr:g}{shape}{waiting}")
    elif command == "pause":
        (state,) = ask(folder, [("pause", {})])
        print(f"{name}: pausing at the next batch (epoch {state['global_epoch']})")
    else:
        accept = {"accept": True} if args.accept_divergence else {}
        (state,) = ask(folder, [("resume", accept)])
        print(f"{name}: resumed {where(state['global_step'], spe)}")
    return 0
