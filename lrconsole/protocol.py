"""Wire format shared by the runner and its clients: newline-delimited JSON, version 1.

See docs/protocol.md. No torch here: the console imports this.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lrconsole.core.plan import settings as opt
from lrconsole.core.plan.schema import (
    EPOCHS_MAX,
    ID_MAX,
    Field,
    FieldError,
    read_lr,
    read_segment_list,
    show,
)
from lrconsole.core.plan.segment import Segment

VERSION = 1
MAX_LINE = 65_536
CLIENT_BUFFER = 1_000
BATCH_EVENTS_PER_SECOND = 20

COMMANDS = (
    "hello",
    "status",
    "pause",
    "resume",
    "queue",
    "set_lr",
    "set",
    "note",
    "end_segment",
    "extend_segment",
    "stop_after_epoch",
    "stop_now",
    "shutdown",
    "rollback",
    "rollback_points",
    "pin",
    "lr_find",
)


class ProtocolError(Exception):
    """A message that breaks the protocol; `code` is one of docs/protocol.md's error codes."""

    def __init__(self, code: str, message: str, request_id: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


def encode(message: dict[str, Any]) -> bytes:
    return (
        json.dumps({"v": VERSION, **message}, allow_nan=False, separators=(",", ":")) + "\n"
    ).encode()


def clean(value: Any) -> Any:
    """NaN and inf have no JSON form: they travel as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def event(name: str, seq: int, data: dict[str, Any]) -> bytes:
    return encode({"type": "event", "seq": seq, "event": name, "data": clean(data)})


def reply_ok(request_id: Any, result: dict[str, Any]) -> bytes:
    return encode({"type": "reply", "id": request_id, "ok": True, "result": clean(result)})


def reply_error(request_id: Any, code: str, message: str) -> bytes:
    error = {"code": code, "message": message}
    return encode({"type": "reply", "id": request_id, "ok": False, "error": error})


def _once_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different (json.loads lets the last one win)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ProtocolError("bad_message", f"the key {show(key)} appears twice")
        out[key] = value
    return out


def parse_request(line: bytes) -> tuple[Any, str, dict[str, Any]]:
    """(id, cmd, args) of a request line, or ProtocolError."""
    try:
        message = json.loads(line, object_pairs_hook=_once_each)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("bad_json", f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("bad_message", "a request is a JSON object")
    version = message.get("v")
    if type(version) is not int or version != VERSION:  # not true, not 1.0
        raise ProtocolError(
            "bad_version", f"protocol version {VERSION} expected, got {show(version)}"
        )
    request_id = message.get("id")
    if request_id is not None and (type(request_id) is not int or abs(request_id) >= ID_MAX):
        raise ProtocolError("bad_message", "id must be an integer below 2**53 in size")
    cmd = message.get("cmd")
    if not isinstance(cmd, str):
        raise ProtocolError("bad_message", "cmd must be a string", request_id)
    if cmd not in COMMANDS:
        raise ProtocolError("unknown_command", f"unknown command {cmd[:40]!r}", request_id)
    args = message.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError("bad_args", "args must be an object", request_id)
    return request_id, cmd, args


@dataclass(frozen=True)
class Arg:
    """One argument of a command: the schema rule that reads it, and its default when
    absent (REQUIRED: it must be given)."""

    rule: Callable[[Field], Any]
    default: Any = None


REQUIRED = object()


def _client(f: Field) -> str:
    if not isinstance(f.value, str) or len(f.value) > 100:
        f.refuse("hello: client must be a short string")
    return f.value


def _queue_segments(f: Field) -> list[Segment]:
    if not isinstance(f.value, list):
        f.refuse("queue: segments must be a non-empty list (or [] with replace)")
    return [Segment.read(item) for item in read_segment_list(f, allow_empty=True)]


def _extend_epochs(f: Field) -> int:
    value = f.value
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < abs(value) <= EPOCHS_MAX:
        f.refuse(
            f"extend_segment: epochs must be a whole number from -{EPOCHS_MAX:,} to "
            f"{EPOCHS_MAX:,}, not 0 (< 0 shortens), got {show(value)}"
        )
    return value


def _lr_find_steps(f: Field) -> int:
    value = f.value
    if isinstance(value, bool) or not isinstance(value, int) or not 5 <= value <= 10_000:
        f.refuse("lr_find: steps must be a whole number from 5 to 10000")
    return value


ABSENT = object()  # an optional argument not given (for `set`, null means "clip off")


def _note_segment(f: Field) -> int:
    value = f.value
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < ID_MAX:
        f.refuse(f"note: segment must be a segment's index from 0, got {show(value)}")
    return value


# Each command's arguments, one line each; a command not listed takes none.
ARGS: dict[str, dict[str, Arg]] = {
    "hello": {"client": Arg(_client, "client")},
    "queue": {"segments": Arg(_queue_segments, REQUIRED), "replace": Arg(Field.boolean, False)},
    "set_lr": {"lr": Arg(read_lr, REQUIRED)},
    "set": {"lr": Arg(read_lr, ABSENT), **{k: Arg(r, ABSENT) for k, r in opt.READERS.items()}},
    "note": {"segment": Arg(_note_segment, REQUIRED), "text": Arg(opt.read_note, REQUIRED)},
    "end_segment": {"now": Arg(Field.boolean, False)},
    "extend_segment": {"epochs": Arg(_extend_epochs, REQUIRED)},
    "resume": {"accept": Arg(Field.boolean, False)},
    "rollback": {"epoch": Arg(lambda f: f.whole(minimum=0), REQUIRED)},
    "pin": {"epoch": Arg(lambda f: f.whole(minimum=0), REQUIRED), "on": Arg(Field.boolean, True)},
    "lr_find": {
        "start_lr": Arg(read_lr, 1e-6),
        "end_lr": Arg(read_lr, 10.0),
        "steps": Arg(_lr_find_steps, 100),
    },
}


def _check_queue(args: dict[str, Any]) -> None:
    if not args["segments"] and not args["replace"]:
        raise ProtocolError(
            "bad_args", "queue: segments must be a non-empty list (or [] with replace)"
        )


def _check_lr_find(args: dict[str, Any]) -> None:
    if args["end_lr"] <= args["start_lr"]:
        raise ProtocolError("bad_args", "lr_find: end_lr must be above start_lr")


def _check_set(args: dict[str, Any]) -> None:
    for name in [k for k, v in args.items() if v is ABSENT]:
        del args[name]
    if not args:
        known = ", ".join(("lr", *opt.SETTINGS))
        raise ProtocolError("bad_args", f"set: give at least one of {known}")


# Rules across a command's arguments, after each is read.
CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "queue": _check_queue,
    "set": _check_set,
    "lr_find": _check_lr_find,
}


def check_args(cmd: str, args: dict[str, Any]) -> dict[str, Any]:
    """Typed, range-checked arguments of `cmd` by its ARGS line, or ProtocolError('bad_args')."""
    rules = ARGS.get(cmd, {})
    root = Field(args, cmd)
    try:
        given = root.fields(optional=tuple(rules), noun="argument")
        out = {}
        for name, arg in rules.items():
            if name in given:
                out[name] = arg.rule(given[name])
            elif arg.default is REQUIRED:
                root.fail(f"missing argument {name!r}")
            else:
                out[name] = arg.default
    except FieldError as exc:
        raise ProtocolError("bad_args", str(exc)) from None
    CHECKS.get(cmd, lambda _: None)(out)
    return out
