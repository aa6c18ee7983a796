"""`lrconsole export`, `sessions` and `show`: reading sessions, no torch needed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lrconsole.core.manifest import (
    Manifest,
    list_sessions,
    read_metrics,
    resolve_session,
)
from lrconsole.core.plan import Plan


def cmd_export(args: argparse.Namespace) -> int:
    folder = resolve_session(args.sessions_dir, args.session)
    schedule = Manifest.read(folder).schedule(done_only=True)
    if not schedule.segments:
        print(
            f"lrconsole: session {folder.name!r} has not trained yet; nothing to export",
            file=sys.stderr,
        )
        return 2
    if args.output is None:
        sys.stdout.write(schedule.dumps())
    else:
        schedule.dump(args.output)
        print(f"wrote {args.output} ({len(schedule.segments)} segments)", file=sys.stderr)
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
            if k not in ("global_epoch", "global_step", "segment", "time")
        )
        rows.append([s.name, s.task, str(s.epochs), last or "-", s.state])
    print(table(rows))
    return 0


def disk_use(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def cmd_show(args: argparse.Namespace) -> int:
    folder = resolve_session(args.sessions_dir, args.session)
    m = Manifest.read(folder)
    rows = read_metrics(folder)
    plan = Plan(m.segments, m.steps_per_epoch)
    print(
        f"session {m.name}  task {m.task.spec}  seed {m.seed}  optimizer {m.optimizer.name}  "
        f"state {m.state}"
    )
    print(f"epoch {m.global_epoch}  step {m.global_step}  ({m.steps_per_epoch} steps per epoch)")
    if m.best:
        print(f"best {m.best['metric']} {m.best['value']:.6g} at epoch {m.best['epoch']}")
    out = [["#", "EPOCHS", "SEGMENT", f"{m.monitor} START", f"{m.monitor} END", "CHANGE", "STATUS"]]
    for i, seg in enumerate(plan.segments):
        start, end = plan.starts[i], plan.end_of(i)
        seg_rows = [r for r in rows if start < int(r["global_step"]) <= end]
        first_epoch = start // m.steps_per_epoch + 1
        last_epoch = end // m.steps_per_epoch
        status = (
            "done" if end <= m.global_step else "running" if start < m.global_step else "queued"
        )
        a = float(seg_rows[0][m.monitor]) if seg_rows else None
        b = float(seg_rows[-1][m.monitor]) if seg_rows else None
        change = f"{b - a:+.4g}" if a is not None and b is not None else "-"
        out.append(
            [
                str(i),
                f"{first_epoch}-{last_epoch}",
                seg.describe(),
                f"{a:.4g}" if a is not None else "-",
                f"{b:.4g}" if b is not None else "-",
                change,
                status,
            ]
        )
    print(table(out))
    kept = len(list((folder / "checkpoints").glob("*.pt")))
    print(f"disk use {disk_use(folder) / 1e6:.1f} MB  ({kept} checkpoints)")
    return 0
