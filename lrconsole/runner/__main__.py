"""python -m lrconsole.runner SESSION_DIR [--schedule FILE | --task SPEC --seed N]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lrconsole.errors import UserError


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m lrconsole.runner")
    parser.add_argument("session_dir", type=Path)
    parser.add_argument("--schedule", type=Path)
    parser.add_argument("--task")
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=600.0,
        help="seconds paused with no client before saving and exiting",
    )
    parser.add_argument(
        "--paused",
        action="store_true",
        help="start paused when queued work is left (a reopened session)",
    )
    args = parser.parse_args()
    from lrconsole.runner.host import main as host_main

    try:
        return host_main(
            args.session_dir, args.schedule, args.task, args.seed, args.idle_timeout, args.paused
        )
    except UserError as exc:
        print(f"lrconsole: error: {exc}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
