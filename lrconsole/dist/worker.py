"""One rank of a distributed run (started by torchrun; see lrconsole.dist).

Rank 0 runs the ordinary engine with hooks that speak the rank protocol (lrconsole.dist.wire);
the other ranks only follow its messages, so they train exactly the steps rank 0 trains, at
its LR and optimizer settings (momentum, betas, weight_decay, clip_grad_norm, a fresh
optimizer), with the same training step (core.train.step). Each rank's data is a
DistributedSampler shard, and at every epoch start each rank reseeds its RNG from
(seed, epoch, rank): with checkpoints at epoch ends only, a resumed run is exact.

Only rank 0 reads or writes the session folder; it sends the plan to the others, so the
other nodes of a multi-node run need the task's code and data but no session folder.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.session.layout import MANIFEST
from lrconsole.core.session.manifest import Manifest
from lrconsole.core.tasks.optim import build_optimizer
from lrconsole.core.tasks.task import Task, load_task
from lrconsole.core.train.hooks import Hooks
from lrconsole.core.train.rng import seed_everything
from lrconsole.core.train.step import evaluate, train_step
from lrconsole.dist.group import die_with_parent, join
from lrconsole.dist.wire import EVAL, EXIT, Wire, mean_over_ranks
from lrconsole.errors import UserError


class Rank:
    def __init__(self, task: Task, seed: int, control: dist.ProcessGroup) -> None:
        self.rank = dist.get_rank()
        self.world = dist.get_world_size()
        self.task = task
        self.seed = seed
        self.device = task.device
        self.control = control  # gloo: what the other ranks wait on, pauses included
        self.wire = Wire(self.device, control)
        loader = task.train_loader
        if not isinstance(loader, DataLoader):
            raise UserError("--nproc needs the task's train_loader to be a torch DataLoader")
        self.sampler: DistributedSampler[Any] = DistributedSampler(
            loader.dataset,
            num_replicas=self.world,
            rank=self.rank,
            shuffle=isinstance(loader.sampler, RandomSampler),
            seed=seed,
        )
        task.train_loader = DataLoader(
            loader.dataset,
            batch_size=loader.batch_size,
            sampler=self.sampler,
            collate_fn=loader.collate_fn,
            drop_last=loader.drop_last,
        )

    def epoch_start(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)
        seed_everything((self.seed * 1_000_003 + epoch * 1_009 + self.rank) % 2**31)

    def reduce_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        # The same order on every rank: evaluate() builds it so.
        return mean_over_ranks(list(metrics), metrics, group=self.control)

    def announce_eval(self, metrics: dict[str, float]) -> dict[str, float]:
        self.wire.send(EVAL)
        return self.reduce_metrics(metrics)


def lead(rank: Rank, folder: Path, schedule: Schedule | None, every: float) -> int:
    """Rank 0: the session, the control socket, and the decisions."""
    from lrconsole.core.train.trainer import Trainer
    from lrconsole.runner.host import Runner, run_in_foreground

    trainer = Trainer.open(folder, schedule=schedule, task=rank.task, checkpoint_interval=every)
    engine = trainer.engine
    engine.mid_epoch_checkpoints = False
    state = {"optimizer": engine.optimizer_spec.to_dict(), "state": engine.optimizer.state_dict()}
    dist.broadcast_object_list([state], src=0, group=rank.control)
    dist.barrier(group=rank.control)  # DDP's setup collectives start together
    model = DistributedDataParallel(rank.task.model)
    engine.hooks = Hooks(
        step_begin=rank.wire.announcer(engine),
        epoch_start=rank.epoch_start,
        reduce_metrics=rank.announce_eval,
        train_model=model,
    )
    code = run_in_foreground(Runner(trainer), folder.name)
    rank.wire.send(EXIT)
    dist.barrier(group=rank.control)  # an orderly teardown: nobody leaves while another talks
    dump(rank)
    return code


def follow(rank: Rank) -> int:
    """Ranks 1..N-1: train exactly the steps rank 0 announces, at its LR and settings."""
    from lrconsole.core.plan.segment import OptimizerSpec

    box: list[Any] = [None]
    dist.broadcast_object_list(box, src=0, group=rank.control)
    spec = OptimizerSpec.from_dict(box[0]["optimizer"])
    task = rank.task
    optimizer = build_optimizer(spec, task.model.parameters(), 1e-3)
    optimizer.load_state_dict(box[0]["state"])
    dist.barrier(group=rank.control)
    model = DistributedDataParallel(task.model)
    spe = len(task.train_loader)  # type: ignore[arg-type]
    batches = None
    while True:
        said = rank.wire.receive()
        if said.kind == EXIT:
            dist.barrier(group=rank.control)
            break
        if said.kind == EVAL:
            rank.reduce_metrics(evaluate(task.model, task))
            continue
        step = said.step
        if step % spe == 0 or batches is None:
            rank.epoch_start(step // spe)
            batches = iter(task.train_loader)
            task.model.train()
        if said.fresh:  # as rank 0's engine builds it (core.train.engine)
            optimizer = build_optimizer(spec, task.model.parameters(), said.lr)
        said.apply(optimizer)  # rank 0's values, written as rank 0 writes them
        train_step(model, optimizer, task.loss, next(batches), rank.device, said.clip)
    dump(rank)
    return 0


def dump(rank: Rank) -> None:
    """For tests: each rank's final parameters, to prove they stayed identical.

    Parameters only: DDP broadcasts rank 0's BatchNorm statistics before each forward,
    then each rank updates them from its own batch, so buffers differ by design.
    """
    target = os.environ.get("LRCONSOLE_DIST_DUMP")
    if target:
        params = {k: v.detach().cpu() for k, v in rank.task.model.named_parameters()}
        torch.save(params, Path(target) / f"rank{rank.rank}.pt")


def plan(folder: Path, given: Path | None) -> list[Any]:
    """Rank 0: [the schedule the ranks build the task from, or why there is none; the
    schedule given with --schedule]."""
    try:
        schedule = Schedule.load(given) if given else None
        if (folder / MANIFEST).is_file():
            return [Manifest.read(folder).schedule(done_only=False), schedule]
    except UserError as exc:
        return [str(exc), None]
    if schedule is None:
        return [f"no session at {folder}: give --schedule", None]
    return [schedule, schedule]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m lrconsole.dist.worker")
    parser.add_argument("session_dir", type=Path)
    parser.add_argument("--schedule", type=Path)
    parser.add_argument("--checkpoint-every", type=float, default=2.0)
    parser.add_argument("--node-rank", type=int, default=0)
    args = parser.parse_args()
    die_with_parent()
    cuda = torch.cuda.is_available()
    try:
        control = join(args.node_rank, "nccl" if cuda else "gloo")
        folder: Path = args.session_dir
        box: list[Any] = [None, None]  # rank 0: [the plan's source, or why not; --schedule]
        if dist.get_rank() == 0:
            box = plan(folder, args.schedule)
        dist.broadcast_object_list(box, src=0, group=control)
        source, schedule = box
        if isinstance(source, str):  # rank 0 says why (its node prints it)
            if dist.get_rank() == 0:
                raise UserError(source)
            return 2
        seed_everything(source.seed)
        task = load_task(source.task)
        seed_everything(source.seed)
        torch.set_num_threads(source.threads or task.threads or 1)
        if cuda:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            task.device = f"cuda:{local}"
            task.model.to(task.device)
        rank = Rank(task, source.seed, control)
        random.seed(source.seed)
        if rank.rank == 0:
            return lead(rank, folder, schedule, args.checkpoint_every)
        return follow(rank)
    except UserError as exc:
        print(f"lrconsole: error: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: gloo's C++ threads can abort a clean exit ("terminate
    # called without an active exception") once the group is gone; all files are written.
    os._exit(code)
