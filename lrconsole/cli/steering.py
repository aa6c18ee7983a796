"""`lrconsole set-lr`, `set`, `note`, `end-segment`, `extend`, `queue`, `pause` and
`resume`: steering a live runner from the shell, one line each (`note` edits a session no
runner holds on disk). Parsing stays light: the client loads on use."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from lrconsole.cli.args import with_session
from lrconsole.core.plan import settings as opt
from lrconsole.core.plan import shapes
from lrconsole.core.plan.schema import EPOCHS_MAX, Field, FieldError, read_epochs, read_lr
from lrconsole.errors import UserError

if TYPE_CHECKING:
    from lrconsole.core.session.manifest import Manifest

T = TypeVar("T")

COMMANDS = ("set-lr", "set", "note", "end-segment", "extend", "queue", "pause", "resume")
SET_KEYS = ("lr", *opt.SETTINGS)


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


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text  # the schema's rule says what it must be


def _setting(text: str) -> tuple[str, Any]:
    """`momentum=0.9`, `betas=0.9,0.99`, `clip_grad_norm=off`: a name and its value, checked."""
    name, eq, raw = text.partition("=")
    if not eq or name not in SET_KEYS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not KEY=VALUE with KEY one of {', '.join(SET_KEYS)}"
        )
    value: Any = _number(raw)
    if name == "betas":
        value = [_number(part) for part in raw.split(",")]
    elif name == "clip_grad_norm" and raw.lower() in ("off", "none", "null"):
        value = None
    rule = read_lr if name == "lr" else opt.READERS[name]
    try:
        rule(Field(value, name))
    except FieldError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name, value


def _typed(rule: Callable[[Field], Any], name: str, parse: Callable[[str], Any]) -> Any:
    """An argparse type: `parse` the text, then check it by the schema's rule."""

    def check(text: str) -> Any:
        value = parse(text)
        try:
            rule(Field(value, name))
        except FieldError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{name}: ")) from None
        return value

    return check


def _shown(value: Any) -> str:
    """A setting as `set` takes it: 0.9, 0.9,0.999 or off."""
    if value is None:
        return "off"
    return ",".join(f"{v:g}" for v in value) if isinstance(value, list) else f"{value:g}"


def _segment_number(text: str) -> int:
    value = _number(text)
    if not isinstance(value, int) or value < 1:
        raise argparse.ArgumentTypeError(f"must be a segment number from 1, got {text!r}")
    return value


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
    p = with_session(add("set-lr", "train the running segment at LR from the next optimizer step"))
    p.add_argument("lr", type=lr, metavar="LR", help="the learning rate, > 0 and at most 10")

    p = with_session(add("set", "set optimizer settings (and the LR) from the next optimizer step"))
    p.add_argument(
        "settings",
        nargs="+",
        type=_setting,
        metavar="KEY=VALUE",
        help="momentum=0.9 betas=0.9,0.999 weight_decay=1e-4 clip_grad_norm=1 (or off) lr=0.01",
    )

    p = with_session(
        add("note", "write a segment's note (live, or on disk when no runner holds it)")
    )
    p.add_argument("segment", type=_segment_number, metavar="SEGMENT", help="its number, from 1")
    p.add_argument("text", type=_typed(opt.read_note, "note", str), help="the note ('' clears)")

    p = with_session(
        add("end-segment", "end the running segment after this epoch; the queue moves on")
    )
    p.add_argument("--now", action="store_true", help="end it at the next batch instead")

    p = with_session(
        add("extend", "add epochs to the running segment; a negative number shortens it")
    )
    p.add_argument(
        "epochs",
        type=_extend_epochs,
        metavar="EPOCHS",
        help="epochs to add (negative: to remove; it still finishes the epoch in progress)",
    )

    p = with_session(add("queue", "queue a segment after the others"))
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
    # Absent unless given (SUPPRESS): `--clip-grad-norm off` is a value, None.
    unset = argparse.SUPPRESS
    p.add_argument("--momentum", type=_schema_type(opt.read_momentum, "--momentum"), default=unset)
    p.add_argument(
        "--betas",
        type=_typed(opt.read_betas, "--betas", lambda t: [_number(v) for v in t.split(",")]),
        metavar="B1,B2",
        default=unset,
    )
    p.add_argument(
        "--weight-decay",
        type=_schema_type(opt.read_weight_decay, "--weight-decay"),
        default=unset,
    )
    p.add_argument(
        "--clip-grad-norm",
        type=_typed(
            opt.read_clip, "--clip-grad-norm", lambda t: None if t == "off" else _number(t)
        ),
        metavar="NORM",
        help="the max total gradient norm, or off",
        default=unset,
    )
    p.add_argument(
        "--note", type=_typed(opt.read_note, "--note", str), help="why this segment", default=unset
    )

    p = with_session(add("pause", "pause a session's runner at the next batch"))

    p = with_session(add("resume", "resume a paused runner"))
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
    elif command == "set":
        given = dict(args.settings)
        (result,) = ask(folder, [("set", given)])
        shown = " ".join(f"{k}={_shown(v)}" for k, v in opt.to_wire(given).items())
        print(f"{name}: {shown} from the next step ({where(result['global_step'], spe)})")
    elif command == "note":
        print(f"{name}: {set_note(folder, args.segment - 1, args.text)}")
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
        for key in ("momentum", "betas", "weight_decay", "clip_grad_norm", "note"):
            if hasattr(args, key):
                seg[key] = getattr(args, key)
        plan, state = ask(folder, [("queue", {"segments": [seg]}), ("status", {})])
        count = len(plan["segments"])
        waiting = ""
        if state["state"] == "paused" and state["reason"] != "queue_empty":
            waiting = f"; paused ({state['reason']}): `lrconsole resume {name}` goes on"
        from lrconsole.core.plan.segment import Segment

        print(f"{name}: queued segment {count}: {Segment.from_dict(seg).describe()}{waiting}")
    elif command == "pause":
        (state,) = ask(folder, [("pause", {})])
        print(f"{name}: pausing at the next batch (epoch {state['global_epoch']})")
    else:
        accept = {"accept": True} if args.accept_divergence else {}
        (state,) = ask(folder, [("resume", accept)])
        print(f"{name}: resumed {where(state['global_step'], spe)}")
    return 0


def edit_manifest(folder: Path, change: Callable[[Manifest], T]) -> T:
    """Apply `change` to the manifest on disk, under the session's lock (for a session no
    runner holds: a runner starting now waits for this write, or this waits for it)."""
    from lrconsole.core.session.manifest import Manifest
    from lrconsole.core.session.store import SessionLock  # torch: after parsing

    lock = SessionLock(folder)
    lock.acquire()
    try:
        manifest = Manifest.read(folder)
        result = change(manifest)
        manifest.write(folder)
        return result
    finally:
        lock.release()


def set_note(folder: Path, index: int, text: str) -> str:
    """Write segment `index`'s note through the live runner, or in the manifest (under the
    session's lock) when none holds the session; what was done, in words."""
    from lrconsole.core.plan.plan import Plan
    from lrconsole.runner.launch import runner_alive

    if runner_alive(folder):
        ask(folder, [("note", {"segment": index, "text": text})])
        return f"segment {index + 1}'s note written (live)"

    def change(manifest: Manifest) -> None:
        plan = Plan(manifest.segments, manifest.steps_per_epoch)
        plan.set_note(index, text)
        manifest.segments = plan.segments

    edit_manifest(folder, change)
    return f"segment {index + 1}'s note written"
