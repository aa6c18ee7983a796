"""The `hello` snapshot (docs/protocol.md), built in one place. No torch here.

The runner answers `hello` with it; the console builds the same shape from the session's
files while the runner starts, and the tests' fake runner builds it from made-up data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lrconsole.core.session.manifest import Manifest

# docs/protocol.md's version. The core sits below lrconsole.protocol, so it keeps its own
# copy; tests/test_session_files.py holds the two equal.
PROTOCOL_VERSION = 1


def build_snapshot(
    manifest: Manifest,
    *,
    folder: Path,
    plan: dict[str, Any],
    state: dict[str, Any],
    history: list[dict[str, Any]] | None = None,
    runner: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """protocol, runner (when given: {"pid", "version"}), session, state, plan, and history
    (when given: rows in the `epoch` event's shape).

    `plan` is `Plan.to_dict(step)`, `state` the engine's state; `folder` is the session's
    folder, sent resolved so a client in another working directory can use it.
    """
    snapshot: dict[str, Any] = {"protocol": PROTOCOL_VERSION}
    if runner is not None:
        snapshot["runner"] = runner
    snapshot["session"] = {
        "name": manifest.name,
        "dir": str(folder.resolve()),
        "task": manifest.task.spec,
        "seed": manifest.seed,
        "optimizer": manifest.optimizer.to_dict(),
        "steps_per_epoch": manifest.steps_per_epoch,
        "metrics": manifest.metrics,
        "monitor": manifest.monitor,
        "policy_marks": list(manifest.policy_marks),
    }
    snapshot["state"] = state
    snapshot["plan"] = plan
    if history is not None:
        snapshot["history"] = history
    return snapshot
