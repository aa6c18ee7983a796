"""The command line as a user meets it: replay, listings, and every kind of bad input."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest
import torch
import yaml

from lrconsole.core.session.layout import LOCK, MANIFEST
from tests.conftest import EXAMPLES, lrconsole, metric_rows, write_schedule


def run_ok(*args: str) -> str:
    result = lrconsole(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def assert_user_error(result: object, *fragments: str) -> None:
    rc, err = result.returncode, result.stderr  # type: ignore[attr-defined]
    assert rc == 2, (rc, err)
    assert "Traceback" not in err
    line = err.strip()
    assert "\n" not in line, err
    assert line.startswith("lrconsole: error: ")
    for fragment in fragments:
        assert fragment in line, line


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sessions = tmp_path_factory.mktemp("sessions")
    plan = write_schedule(sessions.parent / "plan.yaml", [(4, 0.03), (3, 0.01)])
    run_ok("--sessions-dir", str(sessions), "run", "base", "--schedule", str(plan))
    return sessions


def test_export_then_replay_reproduces_every_epoch_bit_for_bit(
    trained: Path, tmp_path: Path
) -> None:
    out = tmp_path / "path.yaml"
    run_ok("--sessions-dir", str(trained), "export", "base", "-o", str(out))
    exported = yaml.safe_load(out.read_text())
    assert exported["segments"] == [{"epochs": 4, "lr": 0.03}, {"epochs": 3, "lr": 0.01}]
    assert exported["steps_per_epoch"] == 14
    run_ok("--sessions-dir", str(tmp_path), "run", "replay", "--schedule", str(out))
    assert metric_rows(tmp_path / "replay") == metric_rows(trained / "base")


def test_plain_pytorch_example_replays_the_export_exactly(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "path.yaml"
    run_ok("--sessions-dir", str(trained), "export", "base", "-o", str(out))
    import subprocess
    import sys

    plain = (
        subprocess.run(
            [sys.executable, str(EXAMPLES / "plain_pytorch.py"), str(out)],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[1:]
    )
    session = metric_rows(trained / "base")[1:]
    assert [r.split(",") for r in plain] == [[r[0], r[3], r[4], r[5]] for r in session]


def test_export_to_stdout_sessions_and_show(trained: Path) -> None:
    text = run_ok("--sessions-dir", str(trained), "export", "base")
    assert "segments:" in text and "lr: 0.03" in text
    listing = run_ok("--sessions-dir", str(trained), "sessions")
    assert "base" in listing and "lesson" in listing and "7" in listing and "stopped" in listing
    show = run_ok("--sessions-dir", str(trained), "show", "base")
    assert "4 epochs @ 0.03" in show and "3 epochs @ 0.01" in show and "disk use" in show


def test_continuing_with_a_longer_schedule_extends_the_path(trained: Path, tmp_path: Path) -> None:
    sessions = tmp_path / "s"
    short = write_schedule(tmp_path / "short.yaml", [(2, 0.03)])
    longer = write_schedule(tmp_path / "long.yaml", [(2, 0.03), (2, 0.01)])
    run_ok("--sessions-dir", str(sessions), "run", "x", "--schedule", str(short))
    run_ok("--sessions-dir", str(sessions), "run", "x", "--schedule", str(longer))
    assert len(metric_rows(sessions / "x")) == 1 + 4
    other = write_schedule(tmp_path / "other.yaml", [(2, 0.5), (2, 0.01)])
    result = lrconsole("--sessions-dir", str(sessions), "run", "x", "--schedule", str(other))
    assert_user_error(result, "does not follow")


def test_help_never_imports_torch() -> None:
    code = (
        "import sys; from lrconsole.cli import main\n"
        "try: main(['--help'])\nexcept SystemExit: pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


@pytest.mark.parametrize(
    ("yaml_text", "fragments"),
    [
        ("segments:\n  - {epochs: 3, lr: [\n", ("bad.yaml:", "malformed YAML")),
        (
            "segments:\n  - {epochs: 3, lr: 0.1, warmup: 2}\n",
            ("bad.yaml:2:", "unknown field 'warmup'"),
        ),
        ("segments:\n  - {epochs: three, lr: 0.1}\n", ("bad.yaml:2:", "epochs")),
        ("segments:\n  - {epochs: 3, lr: -1}\n", ("bad.yaml:2:", "lr: must be > 0")),
        ("segments:\n  - {epochs: 3, lr: .nan}\n", ("bad.yaml:2:", "finite")),
        ("segments:\n  - {epochs: 3, lr: 1e5}\n", ("bad.yaml:2:", "absurdly large")),
        ("segments:\n  - {epochs: 1.5, lr: 0.1}\n", ("bad.yaml:2:", "whole number")),
        ("segments:\n  - {epochs: 0, lr: 0.1}\n", ("bad.yaml:2:", "at least 1")),
        (
            "task: {spec: nowhere.module:make}\nsegments:\n  - {epochs: 1, lr: 0.1}\n",
            ("cannot import",),
        ),
        (
            "task: {spec: lesson, args: {wings: 2}}\nsegments:\n  - {epochs: 1, lr: 0.1}\n",
            ("factory raised",),
        ),
    ],
)
def test_bad_schedule_is_one_line_exit_2_and_creates_nothing(
    sessions: Path, tmp_path: Path, yaml_text: str, fragments: tuple[str, ...]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml_text)
    result = lrconsole("--sessions-dir", str(sessions), "run", "new", "--schedule", str(bad))
    assert_user_error(result, *fragments)
    assert not (sessions / "new").exists()


def test_broken_task_files(sessions: Path, tmp_path: Path) -> None:
    plan = write_schedule(tmp_path / "p.yaml", [(1, 0.1)])

    def run_with_task(spec: str) -> object:
        return lrconsole(
            "--sessions-dir", str(sessions), "run", "a", "--schedule", str(plan), "--task", spec
        )

    broken = tmp_path / "broken.py"
    broken.write_text("import torch\ndef broken(:\n")
    assert_user_error(run_with_task(f"{broken}:make"), "broken.py", "SyntaxError")
    wrong = tmp_path / "wrong.py"
    wrong.write_text("def make():\n    return 42\n")
    assert_user_error(run_with_task(f"{wrong}:make"), "returned int, not lrconsole.Task")
    assert_user_error(run_with_task("no-colon"), "expected 'lesson'")
    assert_user_error(run_with_task(f"{wrong}:absent"), "has no function 'absent'")
    assert not (sessions / "a").exists()


def test_missing_session_and_missing_schedule(sessions: Path, tmp_path: Path) -> None:
    assert_user_error(
        lrconsole("--sessions-dir", str(sessions), "show", "ghost"), "no session 'ghost'"
    )
    assert_user_error(lrconsole("--sessions-dir", str(sessions), "run", "ghost"), "--schedule")
    assert_user_error(
        lrconsole(
            "--sessions-dir", str(sessions), "run", "g", "--schedule", str(tmp_path / "x.yaml")
        ),
        "x.yaml: no such file",
    )


@pytest.fixture
def small_session(sessions: Path, tmp_path: Path) -> Path:
    plan = write_schedule(tmp_path / "p.yaml", [(2, 0.03)])
    run_ok("--sessions-dir", str(sessions), "run", "s", "--schedule", str(plan))
    return sessions / "s"


def checkpoint_of(folder: Path) -> Path:
    return folder / yaml.safe_load((folder / MANIFEST).read_text())["checkpoint"]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != LOCK
    }


def test_truncated_and_corrupt_checkpoints(small_session: Path) -> None:
    ckpt = checkpoint_of(small_session)
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    before = snapshot(small_session)
    result = lrconsole("--sessions-dir", str(small_session.parent), "run", "s")
    assert_user_error(result, "corrupt or truncated checkpoint")
    assert snapshot(small_session) == before  # nothing overwritten
    ckpt.write_bytes(b"\x00garbage" * 100)
    assert_user_error(lrconsole("--sessions-dir", str(small_session.parent), "run", "s"), "corrupt")
    ckpt.unlink()
    assert_user_error(lrconsole("--sessions-dir", str(small_session.parent), "run", "s"), "missing")


class Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_with_a_pickle_payload_is_refused_and_never_runs(
    small_session: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    ckpt = checkpoint_of(small_session)
    state = torch.load(ckpt, weights_only=True)
    state["extra"] = Payload(str(marker))
    torch.save(state, ckpt)
    result = lrconsole("--sessions-dir", str(small_session.parent), "run", "s")
    assert_user_error(result, "refused", "pickled")
    assert not marker.exists()


def test_manifest_newer_truncated_or_missing(small_session: Path) -> None:
    manifest = small_session / MANIFEST
    text = manifest.read_text()
    manifest.write_text(text.replace("format: 1", "format: 99"))
    assert_user_error(lrconsole("--sessions-dir", str(small_session.parent), "show", "s"), "newer")
    manifest.write_text(text[: len(text) // 3])
    assert_user_error(lrconsole("--sessions-dir", str(small_session.parent), "run", "s"), MANIFEST)
    manifest.write_text(": : :\n  - [")
    assert_user_error(
        lrconsole("--sessions-dir", str(small_session.parent), "export", "s"), "malformed"
    )
    manifest.unlink()
    assert_user_error(
        lrconsole("--sessions-dir", str(small_session.parent), "run", "s"), "no session"
    )


def test_a_second_process_is_told_who_holds_the_session(small_session: Path) -> None:
    with open(small_session / LOCK, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        result = lrconsole("--sessions-dir", str(small_session.parent), "run", "s")
    assert_user_error(result, f"in use by PID {os.getpid()}")
