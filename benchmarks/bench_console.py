"""The console's costs: time to first frame, and training speed with the console attached.

    python benchmarks/bench_console.py                 # both parts
    python benchmarks/bench_console.py --first-frame   # launch to first frame only
    python benchmarks/bench_console.py --attached      # training with/without console only

First frame: `python -m lrconsole` (the home screen) is started in a pseudo-terminal
(100x30); the time runs from `Popen` until the home screen's text is on the terminal.
Target: median <= 0.5 s. Launches alternate with a bare Textual app showing the same line in
a DataTable, the floor that Textual's own import and first layout set on this machine.

Attached: the lesson task trains SEGMENT epochs in a runner process, once with no console
(the headless runner; this script's own event reader is the only client) and once with the
real console attached in a pseudo-terminal (`lrconsole attach`, charts live). The mean epoch
time comes from the runner's own epoch timestamps. Runs alternate A/B to share the machine's
noise. Target: median ratio attached/headless <= 1.05.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import fcntl
import os
import pty
import select
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FIRST_FRAME_TARGET = 0.5
RATIO_TARGET = 1.05
HOME_MARKER = b"new session on the built-in lesson task"
RUN_MARKER = b"learning rate"


class Terminal:
    """A child process on a pseudo-terminal of a given size; reads what it draws."""

    def __init__(self, args: list[str], cwd: Path, size: tuple[int, int] = (100, 30)) -> None:
        self.master, slave = pty.openpty()
        cols, rows = size
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(cols), "LINES": str(rows)}
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            args,
            cwd=cwd,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
        os.close(slave)
        self.screen = b""

    def read_until(self, marker: bytes, timeout: float) -> float | None:
        """Seconds from launch until `marker` was written, or None on timeout."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.01)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    return None
                self.screen += chunk
                if marker in self.screen:
                    return time.perf_counter() - self.started
        return None

    def drain(self, seconds: float) -> None:
        """Keep reading (a terminal that is not read blocks the app) for `seconds`."""
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    self.screen = (self.screen + os.read(self.master, 65536))[-200_000:]
                except OSError:
                    return

    def start_draining(self) -> None:
        """Read the terminal from a thread from now on (the app blocks if nobody reads)."""
        self._stop = threading.Event()

        def pump() -> None:
            while not self._stop.is_set():
                ready, _, _ = select.select([self.master], [], [], 0.05)
                if ready:
                    try:
                        self.screen = (self.screen + os.read(self.master, 65536))[-200_000:]
                    except OSError:
                        return

        self._thread = threading.Thread(target=pump, daemon=True)
        self._thread.start()

    def stop_draining(self) -> None:
        if hasattr(self, "_thread"):
            self._stop.set()
            self._thread.join()
            del self._thread

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        os.close(self.master)


def console_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "lrconsole", *args]


# The floor: the least Textual app with what the home screen shows (a DataTable, a footer).
BARE_TEXTUAL_APP = f"""
from textual.app import App
from textual.widgets import DataTable, Footer

class Bare(App):
    BINDINGS = [("q", "quit", "Quit")]

    def compose(self):
        yield DataTable()
        yield Footer()

    def on_mount(self):
        table = self.query_one(DataTable)
        table.add_columns("session", "task")
        table.add_row({HOME_MARKER.decode()!r}, "lesson")

Bare().run()
"""


def time_first_frame(command: list[str], cwd: Path) -> float:
    term = Terminal(command, cwd)
    try:
        elapsed = term.read_until(HOME_MARKER, timeout=20)
        if elapsed is None:
            tail = term.screen[-2000:].decode(errors="replace")
            raise SystemExit(f"no first frame within 20 s; the terminal showed:\n{tail}")
        term.send("q")
        term.drain(0.3)
        return elapsed
    finally:
        term.close()


def first_frame(repeat: int) -> float:
    # As on a user's machine, Python caches compiled modules: with PYTHONDONTWRITEBYTECODE
    # set (some shells and CI images set it) every launch would compile lrconsole anew.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    bare_command = [sys.executable, "-c", BARE_TEXTUAL_APP]
    times: list[float] = []
    bare: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "sessions").mkdir()
        time_first_frame(console_command(), Path(tmp))  # writes the bytecode caches; not timed
        for _ in range(repeat):  # alternate, so that the machine's noise hits both alike
            times.append(time_first_frame(console_command(), Path(tmp)))
            bare.append(time_first_frame(bare_command, Path(tmp)))
    median, floor = statistics.median(times), statistics.median(bare)
    verdict = "ok" if median <= FIRST_FRAME_TARGET else "OVER TARGET"
    print(
        f"launch to first frame ({repeat} launches): median {median:.3f} s, "
        f"min {min(times):.3f} s, max {max(times):.3f} s "
        f"(target <= {FIRST_FRAME_TARGET} s): {verdict}"
    )
    print(
        f"  a bare Textual app (DataTable + Footer), same runs: median {floor:.3f} s; "
        f"lrconsole/bare {median / floor:.2f}"
    )
    return median


# -- training with and without the console ------------------------------------------------
async def train_segment(sock: Path, epochs: int, lr: float) -> float:
    """Queue one segment and return the mean epoch time from the runner's timestamps."""
    from lrconsole.client import RunnerClient

    client = await RunnerClient.connect(sock, client="bench")
    try:
        stamps: list[float] = []
        await client.call("queue", segments=[{"epochs": epochs, "lr": lr}])
        state = await client.call("status")
        if state.get("state") == "paused":
            await client.call("resume")
        seen: list[str] = []
        while True:
            try:
                event = await client.next_event(timeout=30)
            except asyncio.TimeoutError:
                status = await client.call("status")
                raise SystemExit(f"training stalled: {status}; last events {seen[-8:]}") from None
            seen.append(f"{event.name} {event.data}"[:160])
            if event.name == "epoch":
                stamps.append(float(event.data["time"]))
            elif event.name == "paused" and event.data.get("reason") == "error":
                await client.call("resume")  # the loss-spike guard; train on
            elif event.name in ("segment_end", "paused") and len(stamps) >= epochs:
                break
        # Skip the first few epochs (start-up, the console's first frames).
        skip = min(5, len(stamps) // 10)
        span = stamps[-1] - stamps[skip]
        return span / (len(stamps) - 1 - skip)
    finally:
        await client.close()


def attached(rounds: int, epochs: int) -> float:
    from lrconsole.runner.launch import ensure_runner

    tmp = Path(tempfile.mkdtemp(prefix="bench-console-"))
    sessions = tmp / "sessions"
    sessions.mkdir()
    ratios: list[float] = []
    headless: list[float] = []
    with_console: list[float] = []
    try:
        folder = sessions / "bench"
        sock = ensure_runner(folder, create={"task": "lesson", "seed": 0})
        asyncio.run(train_segment(sock, 20, 0.003))  # warm up the runner
        for i in range(rounds):
            a = asyncio.run(train_segment(sock, epochs, 0.003))
            term = Terminal(console_command("attach", "bench"), tmp, size=(100, 30))
            try:
                if term.read_until(RUN_MARKER, timeout=20) is None:
                    raise SystemExit("the console did not draw the run screen")
                term.drain(1.0)
                term.start_draining()
                b = asyncio.run(train_segment(sock, epochs, 0.003))
            finally:
                term.stop_draining()
                term.send("q")
                term.drain(0.3)
                term.send("d")  # detach: leave the runner for the next round
                term.drain(0.5)
                term.close()
            headless.append(a)
            with_console.append(b)
            ratios.append(b / a)
            print(
                f"  round {i + 1}: headless {a * 1000:.2f} ms/epoch, "
                f"console attached {b * 1000:.2f} ms/epoch, ratio {b / a:.3f}"
            )
        asyncio.run(_shutdown(sock))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    median = statistics.median(ratios)
    verdict = "ok" if median <= RATIO_TARGET else "OVER TARGET"
    print(
        f"lesson task, {epochs} epochs per run, {rounds} rounds: "
        f"headless median {statistics.median(headless) * 1000:.2f} ms/epoch, "
        f"attached median {statistics.median(with_console) * 1000:.2f} ms/epoch, "
        f"median ratio {median:.3f} (target <= {RATIO_TARGET}): {verdict}"
    )
    return median


async def _shutdown(sock: Path) -> None:
    from lrconsole.client import RunnerClient

    client = await RunnerClient.connect(sock, client="bench")
    with contextlib.suppress(Exception):  # it is going away
        await client.call("shutdown", timeout=30.0)
    await client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--first-frame", action="store_true", help="only the first-frame part")
    parser.add_argument("--attached", action="store_true", help="only the training part")
    parser.add_argument("--repeat", type=int, default=7, help="launches for the first frame")
    parser.add_argument("--rounds", type=int, default=5, help="A/B rounds for training")
    parser.add_argument("--epochs", type=int, default=400, help="epochs per training run")
    args = parser.parse_args()
    faulthandler.dump_traceback_later(120, exit=True)  # a hang shows where, then ends
    both = not (args.first_frame or args.attached)
    ok = True
    if args.first_frame or both:
        ok &= first_frame(args.repeat) <= FIRST_FRAME_TARGET
    if args.attached or both:
        ok &= attached(args.rounds, args.epochs) <= RATIO_TARGET
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
