"""What other threads ask of the training loop: pause, resume, exit, and jobs to run on it.

Every request sets `attention`, so the loop takes its slow path (`Engine.at_boundary`) at
the next batch boundary and nowhere else; a request never touches the model itself.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class Controls:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.wake = threading.Condition(self.lock)
        self.attention = False  # set by any request; cleared by the loop's slow path
        self.pause_reason: str | None = None  # requested pause
        self.pause_at: int | None = None  # pause when the global step reaches this
        self.exit: str | None = None  # stop | shutdown | interrupted ...
        self.paused: str | None = None  # why the loop waits now; None while it trains
        self.running = False  # a loop is training: jobs wait for its next boundary
        self.jobs: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self.keyed: dict[str, Future[Any]] = {}  # waiting jobs by key

    def decide(self, step: int, total_steps: int, wait: bool) -> tuple[str | None, bool]:
        """At a boundary, with `lock` held: (why to leave the loop, or None; whether the
        pause state just changed). Afterwards `paused` says whether to wait.

        With `wait`, the end of the plan pauses (`queue_empty`) instead of leaving, and
        so does a divergence (`error`) instead of leaving as `diverged`.
        """
        self.attention = bool(self.jobs)  # jobs that came while others ran: next boundary
        if self.exit is not None:
            return self.exit, False
        if self.pause_at is not None and step >= self.pause_at:
            self.pause_reason, self.pause_at = "stop", None
        reason = self.pause_reason
        if reason == "error" and not wait:
            return "diverged", False
        if reason is None and step >= total_steps:
            if not wait:
                return "done", False
            reason = "queue_empty"
        changed = reason != self.paused
        self.paused = reason
        return None, changed

    def poke(self) -> None:
        """Call with `lock` held."""
        self.attention = True
        self.wake.notify_all()

    def request_pause(self, reason: str) -> None:
        with self.lock:
            self.pause_reason = reason
            self.poke()

    def clear_pause(self) -> None:
        with self.lock:
            self.pause_reason = None
            self.pause_at = None
            self.poke()

    def request_exit(self, reason: str) -> None:
        with self.lock:
            self.exit = reason
            self.poke()

    def submit(self, job: Callable[[], Any], key: str | None = None) -> Future[Any]:
        """Run `job` on the training thread at its next boundary (now if nothing trains).

        With `key`, a job of that key still waiting stands for this one too: a job that
        reads the state when it runs (announcing the plan) need not run once per request,
        and a flood of requests cannot keep the loop from training.
        """
        future: Future[Any] = Future()
        with self.lock:
            if key is not None and key in self.keyed:
                return self.keyed[key]
            if self.running:
                if key is not None:
                    self.keyed[key] = future
                self.jobs.append((job, future))
                self.poke()
                return future
        run_job(job, future)
        return future

    def run_jobs(self) -> None:
        """Run the jobs waiting now; later ones wait for the next boundary, so the loop
        trains between them."""
        with self.lock:
            jobs = list(self.jobs)
            self.jobs.clear()
            self.keyed.clear()
        for job, future in jobs:
            run_job(job, future)

    def stop_running(self) -> None:
        """The loop is leaving: jobs still queued run now, on this thread."""
        with self.lock:
            self.running = False
            jobs = list(self.jobs)
            self.jobs.clear()
            self.keyed.clear()
        for job, future in jobs:
            run_job(job, future)

    def idle_wait(self, timeout: float = 0.5) -> None:
        with self.lock:
            if not self.attention and not self.jobs:
                self.wake.wait(timeout=timeout)


def run_job(job: Callable[[], Any], future: Future[Any]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(job())
    except BaseException as exc:  # handed to whoever waits on the future
        future.set_exception(exc)
