"""Asynchronous checkpoints: a quick copy of the state into host memory on the training
thread, then `torch.save` + fsync on a background thread.

As PyTorch Distributed Checkpoint's `async_save` does: the training thread pays only the
copy (into pinned buffers with `non_blocking` on CUDA), never the serialization or the
disk. At most one write is in flight; the copy buffers are reused, so a new snapshot
first waits for the write of the last one. A thread, not a process: torch.save spends its
time in C++ zip writing and file I/O that release the GIL (bench_scale.py measures what
the training thread loses to it), and a process would need the state copied once more.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

T = TypeVar("T")


class StepGate:
    """Holds optimizer steps while a snapshot's deferred copies are in flight.

    The tensors only `optimizer.step()` writes (parameters, the optimizer's state) need
    not be copied on the training thread: the next step's data loading, forward and
    backward run while the writer copies them, and a hook before every optimizer step (of
    any optimizer: torch's global step pre-hook) waits for the copy, time it counts.
    """

    def __init__(self) -> None:
        self._open = threading.Event()
        self._open.set()
        self._hooked = False
        self.waited_s = 0.0  # the training thread's time held at the gate, in all

    def close(self) -> None:
        if not self._hooked:
            register_optimizer_step_pre_hook(lambda *_: self.wait())
            self._hooked = True
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    def wait(self) -> None:
        if self._open.is_set():
            return
        began = time.perf_counter()
        self._open.wait()
        self.waited_s += time.perf_counter() - began


STEP_GATE = StepGate()  # one per process, as torch's global hook is


class Snapshot:
    """Copies of a state's tensors in reused host buffers: one buffer per tensor, in the
    order the state's structure lists them (the same from one checkpoint to the next)."""

    def __init__(self) -> None:
        self._buffers: list[torch.Tensor] = []
        self._index = 0
        self._deferrable: set[int] = set()
        self._later: list[tuple[torch.Tensor, torch.Tensor]] = []  # (buffer, source)

    def fits(self, state: Any) -> bool:
        """Whether a buffer of the right shape is there for every tensor of `state`."""
        specs = self.specs(state)
        return len(specs) == len(self._buffers) and all(
            b.shape == shape and b.dtype == dtype
            for b, (shape, dtype, _) in zip(self._buffers, specs, strict=True)
        )

    def specs(self, state: Any) -> list[tuple[torch.Size, torch.dtype, bool]]:
        return [(t.shape, t.dtype, t.device.type == "cuda") for t in _tensors(state)]

    def allocate(self, specs: list[tuple[torch.Size, torch.dtype, bool]]) -> None:
        """Make (and touch: the page faults are the slow part) the buffers for `specs`.
        Gigabytes take seconds, so the checkpointer runs this on the writer's thread."""
        self._buffers = [torch.zeros(s, dtype=d, pin_memory=pin) for s, d, pin in specs]

    def take(self, state: Any, step_only: set[int] | None = None) -> Any:
        """A copy of `state` whose tensors live in host memory and share nothing with it.

        `step_only`: the data_ptrs of CPU tensors only an optimizer step writes; their
        copies are left to `copy_deferred()`, with STEP_GATE closed until it has run.
        """
        self._index, self._deferrable, self._later = 0, step_only or set(), []
        copied = self._copy(state)
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()  # the non_blocking copies must land before the write
        if self._later:
            STEP_GATE.close()
        return copied

    def copy_deferred(self) -> None:
        """The copies `take` left (on the writer's thread); then the optimizer may step."""
        later, self._later = self._later, []
        try:
            for buffer, source in later:
                buffer.copy_(source)
        finally:
            if later:
                STEP_GATE.open()

    def _copy(self, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return self._tensor(value)
        if isinstance(value, dict):
            return {key: self._copy(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._copy(item) for item in value]
        if isinstance(value, tuple):
            return tuple(self._copy(item) for item in value)
        return value  # numbers, strings, None: immutable

    def _tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.detach()
        i = self._index
        self._index += 1
        buffer = self._buffers[i] if i < len(self._buffers) else None
        if buffer is None or buffer.shape != tensor.shape or buffer.dtype != tensor.dtype:
            pin = tensor.device.type == "cuda"
            buffer = torch.empty(tensor.shape, dtype=tensor.dtype, device="cpu", pin_memory=pin)
            if i < len(self._buffers):
                self._buffers[i] = buffer
            else:
                self._buffers.append(buffer)
        if not tensor.is_contiguous():
            tensor = tensor.contiguous()
        if tensor.device.type == "cpu" and tensor.data_ptr() in self._deferrable:
            self._later.append((buffer, tensor))
            return buffer
        buffer.copy_(tensor, non_blocking=tensor.device.type == "cuda")
        return buffer


def state_bytes(state: Any) -> int:
    """The bytes of the tensors in `state`."""
    return sum(t.numel() * t.element_size() for t in _tensors(state))


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    """The tensors of `value` in the order Snapshot._copy meets them."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


class BackgroundWriter:
    """Runs one write at a time on a daemon thread; `wait()` joins the one in flight.

    An exception in a write is kept and raised by the next `wait()` (or `start()`), on
    the training thread, where the engine reports it as it reported a failed save.
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, write: Callable[[], object]) -> float:
        """Wait for the write in flight, then start `write`; the seconds spent waiting."""
        began = time.perf_counter()
        self.wait()
        waited = time.perf_counter() - began

        def run() -> None:
            try:
                write()
            except BaseException as exc:  # noqa: BLE001 - handed to the training thread
                self._error = exc

        self._thread = threading.Thread(target=run, name="lrconsole-checkpoint", daemon=True)
        self._thread.start()
        return waited

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None:
            raise error


WRITER_NICE = 10  # the writer's niceness: training's threads come first for the cores


def run_lowered(fn: Callable[[], T]) -> T:
    """`fn()` on a thread of its own at a lower priority; its result or its exception.

    For work that leaves the GIL free (torch.save's zip writing and file I/O): Python code
    run at a low priority would hold the GIL while the scheduler keeps it off the cores,
    and the training thread would wait for it (the manifest's YAML stays on the writer's
    own thread, at the usual priority, for that reason).
    """
    out: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        lower_priority()
        try:
            out.append(fn())
        except BaseException as exc:  # noqa: BLE001 - raised again on the caller's thread
            error.append(exc)

    thread = threading.Thread(target=run, name="lrconsole-checkpoint-io", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return out[0]


def lower_priority(nice: int | None = None) -> None:
    """Lower the calling thread's CPU (and, with it, disk) priority, on Linux.

    On a machine whose cores training keeps busy, a write at the same priority takes a
    core from it for as long as it runs (seconds at 100M parameters); at niceness 10 the
    scheduler gives it about a tenth of a contended core and all of an idle one: the
    write's cost is spread thinner over more epochs, with no epoch twice as long. Linux
    applies setpriority to one thread when given its thread id; elsewhere it would
    reach the whole process, so nothing is done there. Priority is never raised back:
    an unprivileged process may not.
    """
    nice = WRITER_NICE if nice is None else nice
    if sys.platform != "linux" or nice <= 0:
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), nice))
    except (OSError, AttributeError):
        pass  # not permitted or not supported: the write runs at the usual priority
