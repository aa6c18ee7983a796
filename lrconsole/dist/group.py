"""The process groups of a distributed run, and which process is global rank 0.

torchrun's c10d rendezvous numbers the nodes in the order it sorts them (host name, then
pid), not by `--node-rank`; the session lives on node 0, so every worker is renumbered
here by (node rank, local rank), through the store torchrun hands the workers. On one
node this is torchrun's own order.

Two groups: training collectives (DDP's all-reduce, the metric mean) use the backend's
group (NCCL on GPU) with an ordinary timeout; rank 0's messages, which the other ranks
wait on for as long as a pause lasts, travel on a gloo (CPU) group with no practical
timeout, so a long pause never sits inside an NCCL collective.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import math
import os
import signal
import sys

import torch.distributed as dist

from lrconsole.errors import UserError

TIMEOUT_ENV = "LRCONSOLE_DIST_TIMEOUT"  # seconds; the training group's collective timeout
TRAINING_TIMEOUT = dt.timedelta(minutes=30)  # torch's own default
CONTROL_TIMEOUT = dt.timedelta(days=365)  # a pause may last as long as the operator likes


def training_timeout() -> dt.timedelta:
    text = os.environ.get(TIMEOUT_ENV, "")
    if not text:
        return TRAINING_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise UserError(f"{TIMEOUT_ENV}: must be a number of seconds > 0, got {text!r}")
    return dt.timedelta(seconds=value)


def join(node_rank: int, backend: str) -> dist.ProcessGroup:
    """Start the default group with ranks in (node rank, local rank) order; returns the
    control group (gloo) for rank 0's messages."""
    timeout = training_timeout()
    store, rank, world = next(dist.rendezvous("env://", timeout=timeout))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    store.set(f"lrconsole/place/{rank}", f"{node_rank} {local}")
    keys = [f"lrconsole/place/{r}" for r in range(world)]
    store.wait(keys)
    places = [tuple(int(x) for x in store.get(k).decode().split()) for k in keys]
    if len(set(places)) < world:
        taken = sorted(p[0] for p in places if places.count(p) > 1)[0]
        raise UserError(f"--node-rank {taken}: given to more than one node; number them 0..N-1")
    order = sorted(range(world), key=lambda r: places[r])
    mine = order.index(rank)
    os.environ["RANK"] = str(mine)  # for anything that reads it later
    dist.init_process_group(backend, store=store, rank=mine, world_size=world, timeout=timeout)
    group = dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)
    assert group is not None  # every rank is a member
    return group


def die_with_parent() -> None:
    """Linux: end this worker when its torchrun agent dies (torchrun starts workers in a
    session of their own, so a killed node would leave them training, rank 0 writing)."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # no prctl: the agent's own teardown has to do
        return
    if os.getppid() != parent:  # the agent died before the call
        os._exit(1)
