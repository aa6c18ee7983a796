"""End to end in a real terminal (tmux): new session, queue by keystrokes, pause, save, open."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]

COUNTER = re.compile(r"epoch (\d+)  ·")


class Tmux:
    def __init__(self, name: str, cwd: Path) -> None:
        self.name = name
        self.cwd = cwd

    def run(self, *args: str) -> str:
        out = subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=30)
        return out.stdout

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TMUX")}
        subprocess.run(
            [
                "tmux",
                "new-session",
                "-d",
                "-x",
                "120",
                "-y",
                "40",
                "-s",
                self.name,
                "-c",
                str(self.cwd),
                "bash --norc --noprofile",
            ],
            check=True,
            timeout=30,
            env=env,
        )

    def send(self, *keys: str) -> None:
        self.run("send-keys", "-t", self.name, *keys)

    def type(self, text: str) -> None:
        self.run("send-keys", "-t", self.name, "-l", text)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.name)

    def command(self) -> str:
        return self.run("display-message", "-p", "-t", self.name, "#{pane_current_command}").strip()

    def wait(
        self, predicate: Callable[[str], object], timeout: float, what: str, poll: float = 0.2
    ) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if predicate(screen):
                return screen
            time.sleep(poll)
        raise AssertionError(f"timed out waiting for {what}; the screen was:\n{screen}")

    def kill(self) -> None:
        self.run("kill-session", "-t", self.name)


def counter(screen: str) -> int | None:
    found = COUNTER.findall(screen)
    return int(found[-1]) if found else None


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    (tmp_path / "sessions").mkdir()
    term = Tmux(f"lrconsole-test-{os.getpid()}-{time.monotonic_ns()}", tmp_path)
    term.start()
    yield term
    term.kill()
    # Leave no runner behind.
    subprocess.run(
        [sys.executable, "-m", "lrconsole", "stop", "e2e"],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )


def test_new_queue_pause_save_open(tmux: Tmux) -> None:
    python = shlex.quote(sys.executable)
    tmux.type(f"{python} -m lrconsole new e2e")
    tmux.send("Enter")
    tmux.wait(lambda s: "waiting for a segment" in s, 60, "the run screen, waiting")
    assert counter(tmux.screen()) == 0

    # Queue 2000 epochs at the planner's LR (0.03) with keystrokes: the epochs field has
    # the focus, as the lesson's prompt had.
    for attempt in range(3):  # as a person would: look, and retype if a key went astray
        tmux.send("End", "C-u")  # clear the field
        tmux.type("2000")
        try:
            tmux.wait(lambda s: "epochs  2000 " in s, 3, "the typed epochs")
            break
        except AssertionError:
            if attempt == 2:
                raise
    tmux.send("Enter")
    first = tmux.wait(lambda s: (counter(s) or 0) > 0, 30, "the epoch counter to move")
    start = counter(first) or 0
    tmux.wait(lambda s: (counter(s) or 0) > start, 30, "the epoch counter to move on")
    assert "running" in tmux.screen()

    tmux.send("Escape")  # leave the field: in it, space would be typed
    time.sleep(0.3)
    tmux.send("Space")
    paused = tmux.wait(lambda s: "paused: space resumes" in s, 30, "the pause")
    time.sleep(0.8)  # let a last redraw land
    paused = tmux.screen()
    at = counter(paused)
    assert at is not None and at > start
    time.sleep(0.5)
    assert counter(tmux.screen()) == at  # paused means paused
    quit_and_save(tmux)

    tmux.send("clear", "Enter")
    tmux.type(f"{python} -m lrconsole open e2e")
    tmux.send("Enter")
    # The saved counter and history show at once, from the files, while the runner starts.
    reopened = tmux.wait(
        lambda s: "task lesson" in s and (counter(s) or 0) > 0,
        60,
        "the reopened session",
        poll=0.02,
    )
    shown = counter(reopened)
    assert shown == at, reopened
    # Then the runner's snapshot: a reopened session with queued work left waits, paused,
    # for the operator, at the same counter.
    connected = tmux.wait(lambda s: "paused" in s, 60, "the runner, paused")
    assert counter(connected) == at, connected
    time.sleep(0.5)
    assert counter(tmux.screen()) == at and "paused" in tmux.screen()
    assert re.search(rf"│ 1 +{shown}/2000 +0\.03 +{shown} ", reopened), reopened  # history
    quit_and_save(tmux)


def quit_and_save(tmux: Tmux) -> None:
    tmux.send("Escape")
    time.sleep(0.3)
    tmux.send("q")
    tmux.wait(lambda s: "Stop and save" in s, 10, "the quit dialog")
    tmux.send("s")
    deadline = time.monotonic() + 60
    while tmux.command() not in ("bash", "sh") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert tmux.command() in ("bash", "sh"), tmux.screen()


def fill(tmux: Tmux, text: str, shown: str) -> None:
    """Type over the focused field's value; retry as a person would if a key went astray."""
    for attempt in range(3):
        tmux.send("End", "C-u")
        tmux.type(text)
        try:
            tmux.wait(lambda s: shown in s, 3, f"{shown!r} typed")
            return
        except AssertionError:
            if attempt == 2:
                raise


def test_steer_typing_and_divergence(tmux: Tmux) -> None:
    """Issue 11: typing 3e2 exports nothing; set the LR now; end the segment; after a
    divergence, Esc and space do not train."""
    python = shlex.quote(sys.executable)
    tmux.type(f"{python} -m lrconsole new e2e")
    tmux.send("Enter")
    tmux.wait(lambda s: "waiting for a segment" in s, 60, "the run screen, waiting")

    # `3e2` + Enter in the epochs field: every key is typed, the field refuses it.
    fill(tmux, "3e2", "epochs  3e2 ")
    tmux.send("Enter")
    tmux.wait(lambda s: "whole" in s and "3e2" in s, 10, "the refusal at the field")
    time.sleep(0.5)
    screen = tmux.screen()
    assert "export the schedule" not in screen, screen
    cwd = tmux.cwd
    assert not (cwd / "2").exists() and not (cwd / "sessions" / "e2e" / "schedule.yaml").exists()

    # 5000 epochs at 0.01, then LR ÷10 (F3) and "set the LR now" (F2) while it trains.
    fill(tmux, "5000", "epochs  5000 ")
    tmux.send("Tab")
    fill(tmux, "0.01", "LR      0.01 ")
    tmux.send("Enter")
    tmux.wait(lambda s: (counter(s) or 0) > 2 and "running" in s, 60, "training")
    tmux.send("F3")
    tmux.wait(lambda s: "lr 0.001  ·" in s, 30, "LR ÷10 in effect")
    tmux.send("F2")
    tmux.wait(lambda s: "set the LR now" in s, 10, "the set-LR prompt")
    tmux.type("0.002")  # the proposal is selected: typing replaces it
    tmux.send("Enter")
    tmux.wait(lambda s: "lr 0.002  ·" in s, 30, "the LR set now")

    # F6: the segment ends after this epoch; the queue is empty, so the run waits.
    tmux.send("F6")
    ended = tmux.wait(lambda s: "waiting for a segment" in s, 30, "the end of the segment")
    time.sleep(0.8)
    at = counter(tmux.screen())
    assert at is not None and 0 < at < 5000, ended

    # 30 @ 5 diverges; the console offers a rollback. Esc, Esc, space: nothing trains.
    tmux.send("Escape")
    time.sleep(0.3)
    tmux.send("Tab")  # the first field: epochs
    fill(tmux, "30", "epochs  30 ")
    tmux.send("Tab")
    fill(tmux, "5", "LR      5 ")
    tmux.send("Enter")
    tmux.wait(lambda s: "Go back to a kept checkpoint" in s, 60, "the rollback offer")
    tmux.send("Escape")
    tmux.wait(lambda s: "Go back to a kept checkpoint" not in s, 10, "the offer closed")
    time.sleep(0.3)
    tmux.send("Escape")
    time.sleep(0.3)
    tmux.send("Space")
    refused = tmux.wait(lambda s: "roll back (r) or accept (F9)" in s, 20, "the refusal to resume")
    before = counter(refused)
    time.sleep(1.0)
    after = tmux.screen()
    assert counter(after) == before and "running" not in after, after
    quit_and_save(tmux)
