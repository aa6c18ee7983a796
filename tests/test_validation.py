"""One schema for schedules, manifests and protocol commands: tags, duplicate keys and
limits are refused in one line naming the file and line (issue 10, items 5, 6, 10-13)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from lrconsole import protocol
from lrconsole.core.plan import schema
from lrconsole.core.plan.plan import Plan
from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.plan.segment import ScheduleError, Segment
from lrconsole.core.session.discover import list_sessions
from lrconsole.errors import UserError
from lrconsole.runner.launch import ensure_runner
from tests.conftest import lrconsole, write_schedule
from tests.test_cli_input import one_line_error

HEAD = "version: 1\ntask: lesson\nseed: 0\n"


def refused(text: str) -> str:
    with pytest.raises(UserError) as info:
        Schedule.loads(text, "plan.yaml")
    message = str(info.value)
    assert "\n" not in message
    return message


# -- item 11: a key given twice, at every level ---------------------------------------------
@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("seed: 1\nseed: 2\nsegments:\n  - {epochs: 1, lr: 0.1}\n", 2),
        ("segments:\n  - {epochs: 5, lr: 0.01, lr: 5}\n", 2),
        ("segments:\n  - epochs: 5\n    lr: 0.01\n    lr: 5\n", 4),
        (
            "optimizer:\n  name: sgd\n  momentum: 0.9\n  momentum: 0\n"
            "segments: [{epochs: 1, lr: 1}]",
            4,
        ),
        ("task:\n  spec: lesson\n  args: {a: 1, a: 2}\nsegments: [{epochs: 1, lr: 1}]\n", 3),
        ("segments:\n  - {epochs: 1, lr: 1, plateau: {patience: 2, patience: 3}}\n", 2),
    ],
)
def test_a_key_given_twice_is_refused_on_its_line(text: str, line: int) -> None:
    message = refused(text)
    assert message.startswith(f"plan.yaml:{line}: ")
    assert "appears twice" in message


# -- item 6: YAML tags that would build Python objects ---------------------------------------
@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("segments:\n  - epochs: 1\n    lr: !!python/object/apply:os.system ['touch {}']\n", 6),
        (
            "task:\n  spec: lesson\n  args:\n    x: !!python/object/apply:os.system ['touch {}']\n"
            "segments: [{epochs: 1, lr: 0.1}]\n",
            6,
        ),
        ("segments:\n  - !!python/object:builtins.dict {epochs: 1, lr: 0.1}\n", 5),
    ],
)
def test_a_python_tag_in_a_schedule_is_one_line_in_run_and_preview(
    sessions: Path, tmp_path: Path, body: str, line: int
) -> None:
    witness = tmp_path / "ran"
    bad = tmp_path / "bad.yaml"
    task = "" if "task:" in body else "task: lesson\n"
    bad.write_text("version: 1\nseed: 0\n" + task + body.replace("{}", str(witness)))
    run = lrconsole("--sessions-dir", str(sessions), "run", "new", "--schedule", str(bad))
    line_text = one_line_error(run, f"{bad}:{line}: ", "the tag !!python/object")
    assert "is not allowed here" in line_text
    one_line_error(lrconsole("preview", str(bad)), f"{bad}:{line}: ", "!!python/object")
    assert not witness.exists() and not (sessions / "new").exists()


# -- item 10: seeds and threads past what the machine can do ----------------------------------
@pytest.mark.parametrize(
    ("top", "fragment"),
    [
        (
            "seed: 99999999999999999999999",
            "plan.yaml:3: seed: 99999999999999999999999 is too large",
        ),
        ("threads: 100000", "plan.yaml:4: threads: 100000 is too large (the limit is 256)"),
        ("threads: 0", "plan.yaml:4: threads: must be at least 1"),
    ],
)
def test_seed_and_threads_are_bounded(top: str, fragment: str) -> None:
    text = "version: 1\ntask: lesson\n" + ("" if top.startswith("seed") else "seed: 0\n") + top
    assert fragment in refused(text + "\nsegments: [{epochs: 1, lr: 0.1}]\n")


def test_a_huge_seed_or_thread_count_leaves_no_session_folder(
    sessions: Path, tmp_path: Path
) -> None:
    for top in ({"threads": 100000}, {"steps_per_epoch": 3, "threads": 10**6}):
        bad = write_schedule(tmp_path / "bad.yaml", [(1, 0.03)], **top)
        result = lrconsole("--sessions-dir", str(sessions), "run", "new", "--schedule", str(bad))
        one_line_error(result, f"{bad}:", "threads: ", "is too large")
    bad = tmp_path / "seed.yaml"
    bad.write_text(
        "version: 1\ntask: lesson\nseed: 99999999999999999999999\n"
        "segments: [{epochs: 1, lr: 0.1}]\n"
    )
    result = lrconsole("--sessions-dir", str(sessions), "run", "new", "--schedule", str(bad))
    one_line_error(result, f"{bad}:3: seed: ")
    assert list(sessions.iterdir()) == []


# -- item 12: steps bounded like epochs; LRs bounded below ------------------------------------
def test_steps_and_tiny_lrs_are_bounded() -> None:
    message = refused(HEAD + "segments:\n  - {steps: 1000000000000000, lr: 0.1}\n")
    assert message.startswith("plan.yaml:5: segments[0].steps: ") and "too many" in message
    assert "absurdly small" in refused(HEAD + "segments:\n  - {epochs: 1, lr: 5.0e-324}\n")
    assert Schedule.loads(HEAD + f"segments: [{{steps: {schema.STEPS_MAX}, lr: 1.0e-12}}]\n")


# -- item 13: size limits --------------------------------------------------------------------
def test_too_many_segments_or_bytes_are_refused_at_once(tmp_path: Path) -> None:
    many = HEAD + "segments:\n" + "  - {epochs: 1, lr: 0.1}\n" * (schema.SEGMENTS_MAX + 1)
    assert "10,001 segments are too many (the limit is 10,000)" in refused(many)
    big = tmp_path / "big.yaml"
    big.write_text(HEAD + "# " + "x" * schema.FILE_MAX + "\nsegments: [{epochs: 1, lr: 0.1}]\n")
    started = time.monotonic()
    with pytest.raises(ScheduleError, match=rf"^{big}: [0-9,]+ bytes is too big"):
        Schedule.load(big)
    assert time.monotonic() - started < 1.0  # not read, let alone parsed
    laughs = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefg", "bcdefgh", strict=True)
    )
    assert "values (aliases expanded): too big" in refused(laughs)


def test_a_queue_cannot_grow_the_plan_past_the_limit() -> None:
    plan = Plan([Segment(0.1, epochs=1)] * (schema.SEGMENTS_MAX - 1), steps_per_epoch=2)
    plan.append([Segment(0.1, epochs=1)])
    with pytest.raises(ScheduleError, match="would hold 10,001 segments"):
        plan.append([Segment(0.1, epochs=1)])
    assert len(plan.segments) == schema.SEGMENTS_MAX  # unchanged by the refused one


# -- item 12: the protocol's envelope and arguments ------------------------------------------
@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"v": True, "id": 1, "cmd": "status"}, "bad_version"),
        ({"v": 1.0, "id": 1, "cmd": "status"}, "bad_version"),
        ({"v": 1, "id": 10**30, "cmd": "status"}, "bad_message"),
        ({"v": 1, "id": -(2**53), "cmd": "status"}, "bad_message"),
        ('{"v": 1, "cmd": "set_lr", "args": {"lr": 0.01, "lr": 5}}', "bad_message"),
    ],
)
def test_the_envelope_wants_an_integer_version_a_bounded_id_and_each_key_once(
    message: dict[str, object] | str, code: str
) -> None:
    line = message if isinstance(message, str) else json.dumps(message)
    with pytest.raises(protocol.ProtocolError) as info:
        protocol.parse_request(line.encode())
    assert info.value.code == code
    assert (
        protocol.parse_request(b'{"v": 1, "id": 9007199254740991, "cmd": "status"}')[0] == 2**53 - 1
    )


@pytest.mark.parametrize(
    ("cmd", "args", "fragment"),
    [
        ("queue", {"segments": [{"steps": 10**21, "lr": 0.1}]}, "segments[0].steps: "),
        ("set_lr", {"lr": 5e-324}, "set_lr.lr: 5e-324 is absurdly small"),
        ("set_lr", {}, "missing argument 'lr'"),
        ("queue", {"segments": [{"epochs": 1, "lr": 0.1, "lr ": 1}]}, "unknown field 'lr '"),
        ("rollback", {"epoch": -1}, "rollback.epoch: must be at least 0"),
        ("hello", {"client": "x" * 101}, "client must be a short string"),
    ],
)
def test_command_arguments_use_the_schema(cmd: str, args: dict[str, object], fragment: str) -> None:
    with pytest.raises(protocol.ProtocolError) as info:
        protocol.check_args(cmd, args)
    assert info.value.code == "bad_args" and fragment in info.value.message


def test_a_real_runner_refuses_bad_envelopes_and_an_oversized_plan(sessions: Path) -> None:
    sock_path = ensure_runner(sessions / "live", create={"task": "lesson", "seed": 0})
    pid = int((sessions / "live" / "lock").read_text().split()[0])
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(sock_path))
            reader = sock.makefile("rb")

            def call(message: dict[str, object]) -> dict[str, object]:
                sock.sendall(json.dumps(message).encode() + b"\n")
                while True:
                    reply = json.loads(reader.readline())
                    if reply["type"] == "reply":
                        return reply  # type: ignore[no-any-return]

            assert call({"v": True, "id": 1, "cmd": "status"})["error"]["code"] == "bad_version"  # type: ignore[index]
            assert call({"v": 1, "id": 10**30, "cmd": "status"})["error"]["code"] == "bad_message"  # type: ignore[index]
            seg = {"epochs": 1, "lr": 0.1}
            for _ in range(3):  # 3 x 2,500 fit; a 4th message would pass 10,000
                assert call({"v": 1, "id": 2, "cmd": "queue", "args": {"segments": [seg] * 2500}})[
                    "ok"
                ]
            reply = call({"v": 1, "id": 3, "cmd": "queue", "args": {"segments": [seg] * 2501}})
            assert not reply["ok"] and "would hold 10,001 segments" in reply["error"]["message"]  # type: ignore[index]
            status = call({"v": 1, "id": 4, "cmd": "status"})
            assert status["ok"]
            call({"v": 1, "id": 5, "cmd": "shutdown"})
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# -- item 5: a manifest with a Python tag ----------------------------------------------------
def test_a_tagged_manifest_is_one_line_and_sessions_lists_the_others(
    sessions: Path, tmp_path: Path
) -> None:
    plan = write_schedule(tmp_path / "plan.yaml", [(1, 0.03)])
    for name in ("good", "bad"):
        result = lrconsole("--sessions-dir", str(sessions), "run", name, "--schedule", str(plan))
        assert result.returncode == 0, result.stderr
    manifest = sessions / "bad" / "manifest.yaml"
    witness = tmp_path / "ran"
    lines = manifest.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("seed:"))
    lines[at] = f"seed: !!python/object/apply:os.system ['touch {witness}']"
    manifest.write_text("\n".join(lines) + "\n")
    before = manifest.read_bytes()
    for command in (["run", "bad"], ["show", "bad"], ["export", "bad"]):
        result = lrconsole("--sessions-dir", str(sessions), *command)
        one_line_error(result, f"{manifest}:{at + 1}: ", "is not allowed here")
    listed = lrconsole("--sessions-dir", str(sessions), "sessions")
    assert listed.returncode == 0, listed.stderr
    table, note = listed.stdout.splitlines()[:3], listed.stdout.splitlines()[3:]
    rows = {line.split()[0]: line for line in table}
    assert rows["good"].split()[-1] == "stopped" and rows["bad"].split()[-1] == "broken"
    assert len(note) == 1 and note[0].startswith(f"bad is broken: {manifest}:{at + 1}: seed: ")
    assert [s.state for s in list_sessions(sessions)] == ["broken", "stopped"]
    assert manifest.read_bytes() == before and not witness.exists()


def test_manifest_fields_go_through_the_same_rules(sessions: Path, tmp_path: Path) -> None:
    plan = write_schedule(tmp_path / "plan.yaml", [(1, 0.03)])
    assert (
        lrconsole("--sessions-dir", str(sessions), "run", "s", "--schedule", str(plan)).returncode
        == 0
    )
    manifest = sessions / "s" / "manifest.yaml"
    text = manifest.read_text()
    for bad, fragment in (
        (text.replace("seed: 0", "seed: 99999999999999999999999"), "seed: "),
        (text.replace("- epochs: 1\n", "- epochs: 1\n  epochs: 2\n"), "appears twice"),
        (text + "seed: 3\n", "appears twice"),
    ):
        manifest.write_text(bad)
        one_line_error(
            lrconsole("--sessions-dir", str(sessions), "show", "s"), f"{manifest}:", fragment
        )
    manifest.write_text(text)
    assert lrconsole("--sessions-dir", str(sessions), "show", "s").returncode == 0
