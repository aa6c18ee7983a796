"""`lrconsole plot SESSION... -o FILE.png|.svg`: a report figure, read from the folders.

Loss per set above (one colour per run, one line style per set), the LR below, segment
boundaries as dotted lines, plateau and early-stopping marks on the LR. matplotlib is an
optional extra (`pip install 'lrconsole[plot]'`), imported only here, on the Agg backend.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrconsole.errors import UserError

if TYPE_CHECKING:  # the readers load only when the command runs: --help stays instant
    from lrconsole.cli.compare import Run

FORMATS = (".png", ".svg")
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
STYLES = ("-", "--", ":", "-.")
MISSING = "lrconsole plot needs matplotlib: pip install 'lrconsole[plot]'"


def add_command(add: Any) -> None:
    p = add("plot", "a report figure of one or more runs: loss per set, LR, segments")
    p.add_argument("sessions", nargs="+", metavar="SESSION", help="one or more sessions")
    p.add_argument(
        "-o", "--output", type=Path, required=True, metavar="FILE", help="a .png or .svg file"
    )
    p.add_argument("--log", action="store_true", help="log scale for the loss")


def boundaries(run: Run) -> list[int]:
    """Epochs at which a later segment of the path taken starts."""
    spe = run.manifest.steps_per_epoch
    if not spe:
        return []
    last = len(run.rows)
    starts = run.manifest.schedule(done_only=True).starts(spe)[1:]
    return [s // spe for s in starts if 0 < s // spe < last]


def losses(runs: list[Run]) -> list[str]:
    """The sets to draw above: the loss metrics, else every metric."""
    from lrconsole.cli.compare import metric_names

    names = metric_names(runs)
    return [n for n in names if "loss" in n] or names


def cmd_plot(args: argparse.Namespace) -> int:
    output: Path = args.output
    if output.suffix.lower() not in FORMATS:
        raise UserError(f"-o: {output}: give a .png or .svg file name")
    if not output.parent.is_dir():
        raise UserError(f"-o: {output}: no folder {output.parent}")
    try:
        import matplotlib
    except ImportError:
        raise UserError(MISSING) from None
    from lrconsole.cli.compare import load_run

    runs = [load_run(args.sessions_dir, name) for name in args.sessions]
    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    matplotlib.rcParams["svg.fonttype"] = "none"  # an SVG's words stay text (searchable)
    from matplotlib import pyplot

    figure, (top, bottom) = pyplot.subplots(
        2, 1, sharex=True, figsize=(9, 6.5), height_ratios=(3, 1.3), layout="constrained"
    )
    sets = losses(runs)
    for i, run in enumerate(runs):
        colour = COLOURS[i % len(COLOURS)]
        epochs = [int(row["global_epoch"]) for row in run.rows]
        for j, metric in enumerate(sets):
            if metric in run.manifest.metrics:
                label = f"{run.name} {metric}" if len(runs) > 1 else metric
                style = STYLES[j % len(STYLES)]
                top.plot(epochs, run.values(metric), style, color=colour, label=label)
        bottom.step(epochs, run.values("lr"), where="pre", color=colour, label=run.name)
        for epoch in boundaries(run):
            for axes in (top, bottom):
                axes.axvline(epoch, color=colour, linestyle=":", linewidth=0.8, alpha=0.6)
        for mark in run.manifest.policy_marks:
            lr = mark.get("lr")
            if mark.get("epoch") is None or lr is None or not math.isfinite(float(lr)):
                continue
            bottom.plot(mark["epoch"], lr, "v", color=colour, markersize=7)
            bottom.annotate(
                str(mark.get("policy", "")),
                (mark["epoch"], lr),
                textcoords="offset points",
                xytext=(3, 5),
                fontsize=7,
                color=colour,
            )
    top.set_ylabel(", ".join(sets))
    if args.log:
        top.set_yscale("log")
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    top.set_title(" vs ".join(run.name for run in runs))
    bottom.set_ylabel("lr")
    bottom.set_xlabel("epoch")
    bottom.grid(alpha=0.3)
    figure.savefig(output)
    pyplot.close(figure)
    print(f"wrote {output}")
    return 0
