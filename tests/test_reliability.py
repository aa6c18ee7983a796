"""Issue 10: runtime reliability, with real runner processes, files and signals.

Two launchers racing for one session, damaged metrics rows, temp files of killed writes,
a foreground run that holds the session, a `tb` that is a file, a read-only folder, a
full disk, a flood of control connections under a low fd limit, and runners that die or
are suspended while a script talks to them.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lrconsole.core.session.manifest import Manifest
from lrconsole.runner.launch import runner_alive
from tests.conftest import lrconsole, write_schedule

pytestmark = pytest.mark.slow


def one_line(out: subprocess.CompletedProcess[str]) -> str:
    """The single line a refused command prints (no traceback)."""
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    return out.stderr.strip()


def wait_alive(folder: Path, process: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + 90
    while not runner_alive(folder):
        assert time.monotonic() < deadline, "the runner never answered"
        if process is not None:
            assert process.poll() is None, process.communicate()
        time.sleep(0.1)


def lock_pid(folder: Path) -> int:
    return int((folder / "lock").read_text().strip())


def trained(tmp_path: Path, name: str, epochs: int = 4) -> Path:
    """A session trained `epochs` epochs by a real foreground run, its runner gone."""
    plan = write_schedule(tmp_path / f"{name}.yaml", [(epochs, 0.01)])
    out = lrconsole("run", name, "--schedule", str(plan), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return tmp_path / "sessions" / name


@contextlib.contextmanager
def detached(tmp_path: Path, name: str, epochs: int = 100_000) -> Iterator[Path]:
    """A background runner on a long schedule; stopped (and continued) at the end."""
    plan = write_schedule(tmp_path / f"{name}-long.yaml", [(epochs, 0.01)])
    out = lrconsole("run", name, "--schedule", str(plan), "--detach", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    folder = tmp_path / "sessions" / name
    pid = lock_pid(folder)
    try:
        yield folder
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
                break
            time.sleep(0.1)


# -- 1 and 4: who may start a runner, and who may clean up --------------------------------
def test_two_detached_starts_leave_the_winner_whole(tmp_path: Path) -> None:
    plan = write_schedule(tmp_path / "long.yaml", [(100_000, 0.01)])
    command = [sys.executable, "-m", "lrconsole", "run", "dbl", "--schedule", str(plan)]
    starts = [
        subprocess.Popen(
            [*command, "--detach"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=120), p.communicate()[1].decode()) for p in starts]
    folder = tmp_path / "sessions" / "dbl"
    assert sorted(code for code, _ in results) == [0, 2], results
    pid = lock_pid(folder)
    try:
        loser = next(err for code, err in results if code == 2)
        assert "in use by PID" in loser, loser
        # The winner keeps its lock, log and socket; a third start is refused.
        assert (folder / "lock").exists() and (folder / "runner.log").exists()
        assert runner_alive(folder)
        third = lrconsole("run", "dbl", cwd=tmp_path)
        assert third.returncode == 2 and f"in use by PID {pid}" in one_line(third)
    finally:
        os.kill(pid, signal.SIGTERM)
    assert lrconsole("stop", "dbl", cwd=tmp_path).returncode == 0


def test_detach_while_a_foreground_run_holds_the_session(tmp_path: Path) -> None:
    plan = write_schedule(tmp_path / "long.yaml", [(100_000, 0.01)])
    folder = tmp_path / "sessions" / "fg"
    run = subprocess.Popen(
        [sys.executable, "-m", "lrconsole", "run", "fg", "--schedule", str(plan)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_alive(folder, run)
        out = lrconsole("run", "fg", "--detach", cwd=tmp_path)
        assert out.returncode == 2, out
        assert f"session 'fg' is in use by PID {run.pid}" in one_line(out)
        assert "runner started" not in out.stdout
    finally:
        run.send_signal(signal.SIGINT)
        run.communicate(timeout=60)
    assert run.returncode == 130


# -- 2, 3 and 7: damaged files at open ---------------------------------------------------
def test_a_cut_row_before_the_checkpoint_refuses_the_open(tmp_path: Path) -> None:
    folder = trained(tmp_path, "cut")
    metrics = folder / "metrics.csv"
    data = metrics.read_bytes()
    metrics.write_bytes(data[:-20])  # inside the epoch-4 row: the checkpoint is at 4
    for command in (["run", "cut"], ["run", "cut", "--detach"]):
        out = lrconsole(*command, cwd=tmp_path)
        assert out.returncode == 2, out
        line = one_line(out)
        assert (
            f"{metrics.relative_to(tmp_path)}: line 5: cut short: the row of epoch 4 is missing"
            in line
        ), line
    assert metrics.read_bytes() == data[:-20]  # nothing dropped or rewritten


def test_a_missing_row_before_the_checkpoint_refuses_the_open(tmp_path: Path) -> None:
    folder = trained(tmp_path, "gap")
    metrics = folder / "metrics.csv"
    lines = metrics.read_text().splitlines(keepends=True)
    metrics.write_text("".join(lines[:3] + lines[4:]))  # epoch 3's row is gone
    out = lrconsole("run", "gap", cwd=tmp_path)
    assert out.returncode == 2
    assert f"{metrics.relative_to(tmp_path)}: line 4: epoch 4 where epoch 3 belongs" in one_line(
        out
    )


def test_a_garbage_row_is_named_by_run_and_show(tmp_path: Path) -> None:
    folder = trained(tmp_path, "junk")
    metrics = folder / "metrics.csv"
    lines = metrics.read_text().splitlines(keepends=True)
    fields = lines[0].count(",") + 1  # a whole row (the gradient norm columns too)
    lines[2] = ",".join(["xx", "yy", "zz"] + ["1"] * (fields - 3)) + "\n"
    metrics.write_text("".join(lines))
    for command in ("run", "show"):
        out = lrconsole(command, "junk", cwd=tmp_path)
        assert out.returncode == 2, out
        line = one_line(out)
        assert (
            f"{metrics.relative_to(tmp_path)}: line 3: not a metrics row (global_epoch = 'xx')"
            in line
        ), line
    assert metrics.read_text() == "".join(lines)


def test_stale_temp_files_go_when_the_session_opens(tmp_path: Path) -> None:
    folder = trained(tmp_path, "tmp", epochs=2)
    stale = [
        folder / "checkpoints" / ".step-000000099.pt.0badc0de.tmp",
        folder / ".manifest.yaml.0badc0de.tmp",
        folder / ".metrics.csv.12345678.tmp",
    ]
    for path in stale:
        path.write_bytes(b"half a write")
    keep = folder / "checkpoints" / "notes.tmp"  # not a temp name of ours
    keep.write_text("mine")
    # While another process holds the session, its temp files may be live: untouched.
    holder = hold_lock(folder, "1")
    try:
        out = lrconsole("run", "tmp", cwd=tmp_path)
        assert out.returncode == 2 and f"in use by PID {holder.pid}" in one_line(out)
        assert all(path.exists() for path in stale)
    finally:
        holder.kill()
        holder.wait()
    out = lrconsole("run", "tmp", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert not any(path.exists() for path in stale)
    assert keep.read_text() == "mine"


def hold_lock(folder: Path, written: str) -> subprocess.Popen[str]:
    """A foreign process that holds the session's flock; the file says `written`."""
    code = (
        "import fcntl, sys, time\n"
        f"h = open({str(folder / 'lock')!r}, 'a+')\n"
        "fcntl.flock(h, fcntl.LOCK_EX)\n"
        f"h.seek(0); h.truncate(); h.write({written!r}); h.flush()\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline() == "held\n"
    return process


# -- 8: a tb that is a file, a read-only folder ------------------------------------------
def test_tb_as_a_plain_file_is_one_line(tmp_path: Path) -> None:
    folder = trained(tmp_path, "tbf", epochs=2)
    before = (folder / "manifest.yaml").read_text()
    subprocess.run(["rm", "-r", str(folder / "tb")], check=True)
    (folder / "tb").write_text("not a folder")
    out = lrconsole("run", "tbf", cwd=tmp_path)
    assert out.returncode == 2, out
    line = one_line(out)
    rel = folder.relative_to(tmp_path)
    assert f"{rel / 'tb' / 'path-0'}: cannot write TensorBoard logs" in line, line
    assert f"{rel / 'tb'} is a file, not a folder" in line, line
    assert (folder / "manifest.yaml").read_text() == before


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """tmp_path/ro: a read-only bind mount of tmp_path/sessions (needs root)."""
    sessions = tmp_path / "sessions"
    sessions.mkdir(exist_ok=True)
    view = tmp_path / "ro"
    view.mkdir()
    made = subprocess.run(["mount", "--bind", str(sessions), str(view)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {made.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=True)


def test_a_read_only_session_is_one_line(tmp_path: Path, read_only: Path) -> None:
    folder = trained(tmp_path, "ro", epochs=3)
    files = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    for command in (["run", "ro"], ["rollback", "ro", "--epoch", "2"]):
        out = lrconsole("--sessions-dir", str(read_only), *command, cwd=tmp_path)
        assert out.returncode == 2, out
        line = one_line(out)
        assert f"{read_only / 'ro'}: cannot lock the session: Read-only file system" in line
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == files


# -- 9: a full disk -----------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """tmp_path/small: a 2 MB tmpfs (needs root)."""
    disk = tmp_path / "small"
    disk.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def fill(path: Path) -> None:
    """Write zeros to `path` until its disk is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


def test_a_full_disk_at_start_is_one_line_and_no_folder(tmp_path: Path, small_disk: Path) -> None:
    sessions = small_disk / "sessions"
    sessions.mkdir()
    fill(small_disk / "filler")
    plan = write_schedule(tmp_path / "plan.yaml", [(3, 0.01)])
    for detach in ([], ["--detach"]):
        command = ["run", "full", "--schedule", str(plan), *detach]
        out = lrconsole("--sessions-dir", str(sessions), *command)
        assert out.returncode == 2, out
        line = one_line(out)
        assert str(sessions / "full") in line and "no space left" in line.lower(), line
        assert not (sessions / "full").exists()


def test_a_full_disk_mid_run_stops_in_one_line_and_loses_nothing(small_disk: Path) -> None:
    plan = write_schedule(small_disk / "long.yaml", [(100_000, 0.01)])
    folder = small_disk / "sessions" / "mid"
    command = [sys.executable, "-m", "lrconsole", "--sessions-dir", str(folder.parent)]
    run = subprocess.Popen(
        [*command, "run", "mid", "--schedule", str(plan), "--checkpoint-every", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_alive(folder, run)
    deadline = time.monotonic() + 60
    while Manifest.read(folder).global_epoch < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    fill(small_disk / "filler")
    _, err = run.communicate(timeout=120)
    assert run.returncode == 1, err
    assert "Traceback" not in err and "Exception" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"lrconsole: error: {folder}: training stopped: No space left"), err
    assert "continue with `lrconsole run mid`" in last
    saved = Manifest.read(folder).global_epoch
    assert f"saved at epoch {saved};" in last
    # Space again: the session opens (every row up to the checkpoint is there) and trains on.
    (small_disk / "filler").unlink()
    again = subprocess.Popen(
        [*command, "run", "mid"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_alive(folder, again)
    while Manifest.read(folder).global_epoch <= saved and time.monotonic() < deadline + 60:
        time.sleep(0.2)
    again.send_signal(signal.SIGINT)
    _, err = again.communicate(timeout=60)
    assert again.returncode == 130, err
    rows = (folder / "metrics.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, len(rows) + 1))
    assert len(rows) >= Manifest.read(folder).global_epoch > saved


# -- 14: a flood of control connections under a low fd limit ------------------------------
def test_a_flood_of_clients_is_capped_and_training_goes_on(tmp_path: Path) -> None:
    folder = tmp_path / "sessions" / "fd"
    plan = write_schedule(tmp_path / "long.yaml", [(100_000, 0.01)])

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    runner = subprocess.Popen(
        [sys.executable, "-m", "lrconsole.runner", str(folder), "--schedule", str(plan)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=low_limit,
    )
    held: list[socket.socket] = []
    try:
        wait_alive(folder, runner)
        start_epoch = Manifest.read(folder).global_epoch
        refused = 0
        for _ in range(300):  # more than the runner's 256 descriptors
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.connect(str(folder / "control.sock"))
            held.append(conn)
        time.sleep(1.0)
        for conn in held:
            conn.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                data = conn.recv(4096)
                if data:
                    bye = json.loads(data.splitlines()[0])
                    assert bye["event"] == "bye", bye
                    assert bye["data"] == {"reason": "too_many_clients", "limit": 64}
                    refused += 1
        assert refused == 300 - 64, refused
        time.sleep(5)  # training checkpoints (and writes TensorBoard) with all held
        assert runner.poll() is None
        for conn in held:
            conn.close()
        held.clear()
        time.sleep(0.5)
        status = lrconsole("status", "fd", "--json", cwd=tmp_path)
        assert status.returncode == 0, status
        assert json.loads(status.stdout)["state"] == "running"
        assert Manifest.read(folder).global_epoch > start_epoch
    finally:
        for conn in held:
            conn.close()
        runner.terminate()
        out, _ = runner.communicate(timeout=60)
    assert runner.returncode == 0, out
    assert "Too many open files" not in out


# -- 15, 16 and 17: exit codes scripts can trust -----------------------------------------
def test_attach_lines_exits_non_zero_when_the_runner_dies(tmp_path: Path) -> None:
    for kill, code in ((False, 0), (True, 4)):
        name = f"at{int(kill)}"
        with detached(tmp_path, name) as folder:
            attach = subprocess.Popen(
                [sys.executable, "-m", "lrconsole", "attach", name, "--lines"],
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert attach.stdout is not None
            assert attach.stdout.readline().startswith(f"{name}: ")
            if kill:
                os.kill(lock_pid(folder), signal.SIGKILL)
            else:
                assert lrconsole("stop", name, cwd=tmp_path).returncode == 0
            _, err = attach.communicate(timeout=60)
        assert attach.returncode == code, err
        if kill:
            assert f"lrconsole: error: the runner of {name!r} died" in err


def test_a_suspended_runner_is_not_answering_exit_3(tmp_path: Path) -> None:
    with detached(tmp_path, "zz") as folder:
        pid = lock_pid(folder)
        os.kill(pid, signal.SIGSTOP)
        want = f"lrconsole: error: not answering: PID {pid} holds the session (suspended?)"
        for command in (["status", "zz"], ["stop", "zz"], ["attach", "zz", "--lines"]):
            out = lrconsole(*command, cwd=tmp_path, timeout=60)
            assert out.returncode == 3, out
            assert one_line(out) == want
            assert "no runner" not in out.stdout and "stopped" not in out.stdout
        out = lrconsole("run", "zz", "--detach", cwd=tmp_path, timeout=60)
        assert out.returncode == 3 and one_line(out) == want
        os.kill(pid, signal.SIGCONT)  # the stop was refused, not lost: it trains on
        wait_alive(folder)
        status = lrconsole("status", "zz", cwd=tmp_path)
        assert status.returncode == 0 and "zz: running" in status.stdout
        assert lrconsole("stop", "zz", cwd=tmp_path).returncode == 0


def test_a_foreign_lock_holder_is_named_by_the_os(tmp_path: Path) -> None:
    folder = trained(tmp_path, "fx", epochs=1)
    holder = hold_lock(folder, "424242")  # the file names a PID that is not the holder
    try:
        status = lrconsole("status", "fx", cwd=tmp_path)
        assert status.returncode == 3
        assert f"not answering: PID {holder.pid} holds the session" in one_line(status)
        # A holder seconds old and not stopped is more likely starting than wedged.
        assert "s ago: still starting? try again in a few seconds)" in one_line(status)
        run = lrconsole("run", "fx", cwd=tmp_path)
        assert run.returncode == 2
        assert f"in use by PID {holder.pid};" in one_line(run)
    finally:
        holder.kill()
        holder.wait()
    # The flock went with its process: the session is free, whatever the file says.
    status = lrconsole("status", "fx", cwd=tmp_path)
    assert status.returncode == 0 and "fx: stopped (no runner)" in status.stdout
