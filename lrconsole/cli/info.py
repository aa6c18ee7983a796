"""`lrconsole export`, `sessions` and `show`: reading sessions, no torch needed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lrconsole.core.plan.plan import Plan
from lrconsole.core.plan.schema import GRAD_GUARD_FIELDS
from lrconsole.core.session.discover import list_sessions, read_metrics, resolve_session
from lrconsole.core.session.layout import METRICS, checkpoint_files
from lrconsole.core.session.manifest import Manifest
from lrconsole.core.session.metrics import GRAD_COLUMNS, check_file
from lrconsole.errors import UserError


def cmd_export(args: argparse.Namespace) -> int:
    folder = resolve_session(args.sessions_dir, args.session)
    schedule = Manifest.read(folder).schedule(done_only=True)
    if not schedule.segments:
        raise UserError(f"session {folder.name!r} has not trained yet; nothing to export")
    if args.output in (None, "-"):
        sys.stdout.write(schedule.dumps())
        return 0
    if not args.output:
        raise UserError("-o: the output path is empty (give a file, or - for standard output)")
    schedule.dump(args.output)  # a folder or an unwritable path: ScheduleError, one line
    print(f"wrote {args.output} ({plural(len(schedule.segments), 'segment')})", file=sys.stderr)
    return 0


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
    return "\n".join(line.rstrip() for line in lines)


def cmd_sessions(args: argparse.Namespace) -> int:
    sessions = list_sessions(args.sessions_dir)
    if not sessions:
        print(
            f"no sessions in {args.sessions_dir}; start one with `lrconsole new` "
            "or `lrconsole run NAME --schedule examples/lesson_15_1.yaml`"
        )
        return 0
    rows = [["NAME", "TASK", "EPOCHS", "LAST METRICS", "STATE"]]
    for s in sessions:
        last = "  ".join(
            f"{k} {v:.4g}"
            for k, v in s.last.items()
            if k not in ("global_epoch", "global_step", "segment", "time", *GRAD_COLUMNS)
        )
        # The folder's name is the one to type; a copied folder keeps its manifest's name.
        rows.append([s.dir.name, s.task, str(s.epochs), last or "-", s.state])
    print(table(rows))
    for s in sessions:  # the others are listed; each broken one says why, in one line
        if s.error:
            print(f"{s.dir.name} is broken: {s.error}")
    return 0


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def disk_use(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def guards_line(m: Manifest) -> str:
    """The divergence guards' settings (schedule fields spike_factor and grad_*)."""
    g = {**GRAD_GUARD_FIELDS, **m.grad_guard}

    def spike(factor: float | None) -> str:
        return f"spike > {factor:g}x the recent mean" if factor else "off"

    vanish = (
        f"mean below {g['grad_vanish']:g} for {g['grad_vanish_patience']} epochs"
        if g["grad_vanish"] is not None
        else "off"
    )
    return (
        f"guards: loss {spike(m.spike_factor)}; gradient norm "
        f"{spike(g['grad_spike_factor'])}, vanishing {vanish}"
    )


def cmd_show(args: argparse.Namespace) -> int:
    folder = resolve_session(args.sessions_dir, args.session)
    m = Manifest.read(folder)
    check_file(folder / METRICS)  # a garbage row: one line naming it, not a traceback
    rows = read_metrics(folder)
    plan = Plan(m.segments, m.steps_per_epoch)
    print(
        f"session {folder.name}  task {m.task.spec}  seed {m.seed}  optimizer {m.optimizer.name}  "
        f"state {m.state}"
    )
    print(f"epoch {m.global_epoch}  step {m.global_step}  ({m.steps_per_epoch} steps per epoch)")
    if m.best:
        print(f"best {m.best['metric']} {m.best['value']:.6g} at epoch {m.best['epoch']}")
    print(guards_line(m))
    bad = m.diverged if m.diverged and int(m.diverged.get("step", 0)) > m.global_step else None
    out = [["#", "EPOCHS", "SEGMENT", f"{m.monitor} START", f"{m.monitor} END", "CHANGE", "STATUS"]]
    for i, seg in enumerate(plan.segments):  # numbered from 1, as in the console
        start, end = plan.starts[i], plan.end_of(i)
        seg_rows = [r for r in rows if start < int(r["global_step"]) <= end]
        first_epoch = start // m.steps_per_epoch + 1
        last_epoch = (end - 1) // m.steps_per_epoch + 1  # the epoch of its last step
        status = (
            "done" if end <= m.global_step else "running" if start < m.global_step else "queued"
        )
        if bad is not None and start < bad["step"] <= end:  # never plainly "queued"
            status = f"diverged in epoch {bad['epoch']}: roll back or accept"
        a = float(seg_rows[0][m.monitor]) if seg_rows else None
        b = float(seg_rows[-1][m.monitor]) if seg_rows else None
        change = f"{b - a:+.4g}" if a is not None and b is not None else "-"
        out.append(
            [
                str(i + 1),
                f"{first_epoch}-{last_epoch}" if last_epoch > first_epoch else str(last_epoch),
                seg.describe(),
                f"{a:.4g}" if a is not None else "-",
                f"{b:.4g}" if b is not None else "-",
                change,
                status,
            ]
        )
    print(table(out))
    for i, seg in enumerate(plan.segments):  # `lrconsole note` edits them
        if seg.note:
            print(f"note {i + 1}: {seg.note}")
    if bad is not None:
        print(
            f"the run diverged in epoch {bad['epoch']} at lr {float(bad.get('lr', 0)):g}: roll "
            f"back (`lrconsole rollback {folder.name} --epoch N`), or accept and go on as "
            f"planned (`lrconsole resume {folder.name} --accept-divergence` on its runner)"
        )
    kept = len(checkpoint_files(folder))
    print(f"disk use {disk_use(folder) / 1e6:.1f} MB  ({plural(kept, 'checkpoint')})")
    if m.checkpointing:  # written by core.train.handlers.Checkpointer
        c = {k: v for k, v in m.checkpointing.items() if isinstance(v, (int, float))}
        size = c.get("bytes", 0)
        shown = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} KB"
        print(
            f"checkpoint {shown}: training waited {c.get('blocking_s', 0) * 1e3:.0f} ms, "
            f"written in the background in {c.get('write_s', 0):.3g} s; every "
            f"{c.get('interval_s', 0):.3g} s or more; {c.get('share', 0) * 100:.1f}% of "
            "training time spent waiting on checkpoints"
        )
    return 0
