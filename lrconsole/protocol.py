"""Wire format shared by the runner and its clients: newline-delimited JSON, version 1.

See docs/protocol.md. No torch here: the console imports this.
"""

from __future__ import annotations

import json
import math
from typing import Any

from lrconsole.core.plan.segment import ScheduleError, Segment, check_lr

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
    "stop_after_epoch",
    "stop_now",
    "shutdown",
    "rollback",
    "rollback_points",
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


def parse_request(line: bytes) -> tuple[Any, str, dict[str, Any]]:
    """(id, cmd, args) of a request line, or ProtocolError."""
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("bad_json", f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("bad_message", "a request is a JSON object")
    if message.get("v") != VERSION:
        raise ProtocolError(
            "bad_version", f"protocol version {VERSION} expected, got {message.get('v')!r}"
        )
    request_id = message.get("id")
    if request_id is not None and (isinstance(request_id, bool) or not isinstance(request_id, int)):
        raise ProtocolError("bad_message", "id must be an integer")
    cmd = message.get("cmd")
    if not isinstance(cmd, str):
        raise ProtocolError("bad_message", "cmd must be a string", request_id)
    if cmd not in COMMANDS:
        raise ProtocolError("unknown_command", f"unknown command {cmd[:40]!r}", request_id)
    args = message.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError("bad_args", "args must be an object", request_id)
    return request_id, cmd, args


def check_args(cmd: str, args: dict[str, Any]) -> dict[str, Any]:
    """Typed, range-checked arguments of `cmd`, or ProtocolError('bad_args')."""
    allowed = {
        "hello": {"client"},
        "queue": {"segments", "replace"},
        "set_lr": {"lr"},
        "rollback": {"epoch"},
        "lr_find": {"start_lr", "end_lr", "steps"},
    }.get(cmd, set())
    extra = set(args) - allowed
    if extra:
        raise ProtocolError("bad_args", f"{cmd}: unknown argument {sorted(extra)[0]!r}")
    try:
        if cmd == "queue":
            segments = args.get("segments")
            replace_all = args.get("replace") is True
            if not isinstance(segments, list) or (not segments and not replace_all):
                raise ProtocolError(
                    "bad_args", "queue: segments must be a non-empty list (or [] with replace)"
                )
            if len(segments) > 1000:
                raise ProtocolError("bad_args", "queue: at most 1000 segments at once")
            replace = args.get("replace", False)
            if not isinstance(replace, bool):
                raise ProtocolError("bad_args", "queue: replace must be true or false")
            parsed = []
            for i, seg in enumerate(segments):
                if not isinstance(seg, dict):
                    raise ProtocolError("bad_args", f"segments[{i}]: must be an object")
                parsed.append(Segment.from_dict(seg, f"segments[{i}]"))
            return {"segments": parsed, "replace": replace}
        if cmd == "set_lr":
            lr = args.get("lr")
            if isinstance(lr, bool) or not isinstance(lr, (int, float)):
                raise ProtocolError("bad_args", f"set_lr: lr must be a number, got {lr!r}")
            return {"lr": check_lr(lr)}
        if cmd == "rollback":
            epoch = args.get("epoch")
            if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
                raise ProtocolError(
                    "bad_args", f"rollback: epoch must be a whole number >= 0, got {epoch!r}"
                )
            return {"epoch": epoch}
        if cmd == "lr_find":
            start = check_lr(args.get("start_lr", 1e-6), "lr_find.start_lr")
            end = check_lr(args.get("end_lr", 10.0), "lr_find.end_lr")
            steps = args.get("steps", 100)
            if isinstance(steps, bool) or not isinstance(steps, int) or not 5 <= steps <= 10_000:
                raise ProtocolError(
                    "bad_args", "lr_find: steps must be a whole number from 5 to 10000"
                )
            if end <= start:
                raise ProtocolError("bad_args", "lr_find: end_lr must be above start_lr")
            return {"start_lr": start, "end_lr": end, "steps": steps}
        if cmd == "hello":
            client = args.get("client", "client")
            if not isinstance(client, str) or len(client) > 100:
                raise ProtocolError("bad_args", "hello: client must be a short string")
            return {"client": client}
    except ScheduleError as exc:
        raise ProtocolError("bad_args", str(exc)) from None
    return {}
