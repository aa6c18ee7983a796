"""`lrconsole compare A B [C...]`: runs side by side, read from their folders. No torch.

One table (epochs, wall time, final and best of each metric) and one chart with the
runs overlaid, drawn by the console's own renderer (`lrconsole.tui.plot`, Rich only).
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path

from lrconsole.core.session.discover import resolve_session
from lrconsole.core.session.layout import METRICS
from lrconsole.core.session.manifest import Manifest
from lrconsole.core.session.metrics import better, check_file, read_rows
from lrconsole.errors import UserError

# The console's series colours (lrconsole/tui/widgets/charts.py, which imports Textual).
RUN_STYLES = ("bold #5fd7ff", "bold #ff87d7", "bold #d7ff5f", "bold #ffaf5f")
CHART_HEIGHT = 16


@dataclass
class Run:
    name: str
    manifest: Manifest
    rows: list[dict[str, str]]

    def values(self, metric: str) -> list[float]:
        """Per epoch; NaN where the row has no value (a gap on the chart)."""
        return [_number(row.get(metric)) for row in self.rows]

    def mode(self, metric: str) -> str:
        """The mode, "max" or "min": the session's own for its monitor, else the name rule
        the engine picks one by (core/train/build.py: `acc`/`accuracy` is maximised)."""
        if metric == self.manifest.monitor:
            return self.manifest.monitor_mode
        return "max" if metric.endswith(("acc", "accuracy")) else "min"

    def wall_time(self) -> float | None:
        """Seconds of training: the `time` column from the first epoch end to the last,
        plus one median epoch for the first (the file has no start time)."""
        times = [_number(row.get("time")) for row in self.rows]
        times = [t for t in times if math.isfinite(t)]
        if len(times) < 2:
            return None
        steps = [b - a for a, b in zip(times, times[1:], strict=False)]
        return times[-1] - times[0] + statistics.median(steps)


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except (TypeError, ValueError):
        return math.nan


def load_run(sessions_dir: Path, name: str) -> Run:
    folder = resolve_session(sessions_dir, name)  # unknown: SessionError, one line
    manifest = Manifest.read(folder)
    check_file(folder / METRICS)  # a garbage row: one line naming it
    try:
        rows = read_rows(folder / METRICS)
    except FileNotFoundError:
        rows = []
    return Run(folder.name, manifest, rows)


def best(values: list[float], mode: str) -> tuple[float, int] | None:
    """(value, epoch from 1) of the best finite value; the first of equal ones wins."""
    found: tuple[float, int] | None = None
    for i, value in enumerate(values):
        if math.isfinite(value) and (found is None or better(value, found[0], mode)):
            found = (value, i + 1)
    return found


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.3g} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def metric_names(runs: list[Run]) -> list[str]:
    names: list[str] = []
    for run in runs:
        names += [m for m in run.manifest.metrics if m not in names]
    return names


def table(runs: list[Run], metrics: list[str]) -> str:
    from lrconsole.cli.info import table as layout

    head = ["RUN", "EPOCHS", "WALL TIME"]
    for metric in metrics:
        head += [f"{metric} FINAL", f"{metric} BEST (EPOCH)"]
    out = [head]
    for run in runs:
        cells = [run.name, str(len(run.rows)), duration(run.wall_time())]
        for metric in metrics:
            values = run.values(metric)
            final = values[-1] if values else math.nan
            top = best(values, run.mode(metric))
            cells.append(f"{final:.6g}" if math.isfinite(final) else "-")
            cells.append(f"{top[0]:.6g} ({top[1]})" if top else "-")
        out.append(cells)
    return layout(out)


def chart_width() -> int:
    return max(40, min(shutil.get_terminal_size((100, 24)).columns, 120))


def cmd_compare(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.text import Text

    from lrconsole.tui.plot import Trace, render_chart
    from lrconsole.tui.series import Series

    if len(args.sessions) < 2:
        raise UserError("compare: give at least two sessions")
    runs = [load_run(args.sessions_dir, name) for name in args.sessions]
    metrics = metric_names(runs)
    metric = args.metric or runs[0].manifest.monitor
    if not any(metric in run.manifest.metrics for run in runs):
        raise UserError(f"--metric: no run has {metric!r} (they have: {', '.join(metrics)})")
    console = Console(highlight=False, soft_wrap=True)
    console.print(table(runs, metrics), markup=False)
    # Shorter runs are padded with gaps so that epoch N is at the same column in every run.
    size = max(len(run.rows) for run in runs)
    traces = []
    legend = Text(f"{metric} per epoch")
    for i, run in enumerate(runs):
        if metric not in run.manifest.metrics:
            continue
        values = run.values(metric)
        style = RUN_STYLES[i % len(RUN_STYLES)]
        traces.append(Trace(Series(values + [math.nan] * (size - len(values))), style, run.name))
        legend.append("  ")
        legend.append(f"━ {run.name}", style=style)
    console.print()
    console.print(legend)
    console.print(render_chart(traces, chart_width(), CHART_HEIGHT, log=args.log))
    return 0
