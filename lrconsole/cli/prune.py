"""`lrconsole prune SESSION`: remove the checkpoints a session no longer needs.

Kept: the checkpoint the session stands at, the `--keep` newest before it (default the
manifest's `keep_checkpoints`), as many of the newest segment boundaries, the pinned
ones (`lrconsole pin`) and, with `--keep-boundaries`, every segment boundary.
Everything else goes, checkpoints past the position (of an abandoned path) too; the
metrics, branches and schedules stay, so any path can still be replayed exactly.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lrconsole.core.plan.plan import Plan
from lrconsole.core.session.discover import resolve_session
from lrconsole.core.session.layout import checkpoint_files, checkpoint_step, kept_checkpoints
from lrconsole.core.session.manifest import Manifest


def doomed(folder: Path, m: Manifest, keep: int, boundaries: bool) -> list[Path]:
    """The checkpoint files that prune removes."""
    files = checkpoint_files(folder)
    behind = [p for p in files if (checkpoint_step(p) or 0) <= m.global_step]
    plan = Plan(m.segments, m.steps_per_epoch)
    edges = set(plan.starts) | {plan.total_steps}
    kept = kept_checkpoints(behind, edges, keep, m.pinned_steps)
    if m.checkpoint:
        kept.add(folder / m.checkpoint)
    if boundaries:
        kept |= {p for p in behind if checkpoint_step(p) in edges}
    return [p for p in files if p not in kept]


def cmd_prune(args: argparse.Namespace) -> int:
    from lrconsole.core.session.store import SessionLock  # torch: after parsing

    folder = resolve_session(args.sessions_dir, args.session)
    m = Manifest.read(folder)
    keep = m.keep_checkpoints if args.keep is None else args.keep
    lock = SessionLock(folder)
    lock.acquire()  # a runner training it holds the lock: refused, with who holds it
    try:
        freed, gone = 0, []
        for path in doomed(folder, m, keep, args.keep_boundaries):
            size = path.stat().st_size
            path.unlink()
            freed += size
            gone.append(path)
    finally:
        lock.release()
    spe = m.steps_per_epoch
    epochs = ", ".join(str((checkpoint_step(p) or 0) // spe) for p in gone) or "none"
    left = [(checkpoint_step(p) or 0) // spe for p in checkpoint_files(folder)]
    print(f"freed {freed / 1e6:.1f} MB: removed {len(gone)} checkpoints (epochs {epochs})")
    print(f"kept epochs: {', '.join(map(str, left)) or 'none'}")
    return 0


def cmd_pin(args: argparse.Namespace) -> int:
    """Pin or unpin through the live runner, or in the manifest under the session's lock."""
    from lrconsole.cli.steering import ask, edit_manifest
    from lrconsole.core.session.pins import kept_epochs, pinned_epochs, set_pin
    from lrconsole.runner.launch import runner_alive

    folder = resolve_session(args.sessions_dir, args.session)
    if args.epoch is None:
        m = Manifest.read(folder)
        kept = ", ".join(map(str, kept_epochs(folder, m))) or "none"
        print(f"kept epochs: {kept}")
        print(f"pinned epochs: {', '.join(map(str, pinned_epochs(m))) or 'none'}")
        return 0
    on = not args.off
    if runner_alive(folder):
        (result,) = ask(folder, [("pin", {"epoch": args.epoch, "on": on})])
        pinned = [int(e) for e in result.get("pinned", [])]
    else:
        pinned = edit_manifest(folder, lambda m: set_pin(folder, m, args.epoch, on))
    done = "pinned" if on else "unpinned"
    print(f"epoch {args.epoch} {done}; pinned epochs: {', '.join(map(str, pinned)) or 'none'}")
    return 0
