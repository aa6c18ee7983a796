"""Charts a person can read: one epoch range for both charts, branches inside it, a robust
y range with zoom keys, axis titles and the best epoch, the gradient-norm chart, an
overlaid run, the progress lines, toasts and the 80x24 layout.

The console runs for real (Textual's pilot) against the in-process fake runner, so the
data and therefore the drawings are the same on every machine; the assertions read the
rendered text of each chart's region of the screen.
"""

from __future__ import annotations

import math
from collections import deque
from pathlib import Path
from typing import Any

import pytest
from fake import SPE, FakeClient, fake_factory
from screen_text import screen_text
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import DataTable, OptionList

from lrconsole.core.session.metrics import write_rows
from lrconsole.tui.app import ConsoleApp, make_app
from lrconsole.tui.chartview import ChartView
from lrconsole.tui.model import RunModel
from lrconsole.tui.plot import LABEL_WIDTH, Trace, render_chart, robust_limits
from lrconsole.tui.screens.overlay import OverlayScreen
from lrconsole.tui.series import Series
from lrconsole.tui.widgets.charts import LossChart, LrChart
from lrconsole.tui.widgets.history import SegmentTable
from lrconsole.tui.widgets.progress import RunProgress, timing_parts

PLOT_LEFT = LABEL_WIDTH + 1  # the first plot column inside a chart's content


# -- helpers --------------------------------------------------------------------------------
def app_for(tmp_path: Path, client: FakeClient) -> ConsoleApp:
    sessions = tmp_path / "sessions"
    sessions.mkdir(exist_ok=True)
    return make_app(
        sessions, session_dir=sessions / client.name, connector_factory=fake_factory(client)
    )


async def settle(pilot: Pilot[Any]) -> None:
    await pilot.pause(0.4)  # one throttle tick draws the charts


def content(app: ConsoleApp, widget: Widget) -> list[str]:
    """The rendered rows of a widget's content area (inside its border and padding)."""
    lines = screen_text(app).split("\n")
    region = widget.content_region
    rows = lines[region.y : region.y + region.height]
    return [row.ljust(region.x + region.width)[region.x : region.x + region.width] for row in rows]


def axis_row(rows: list[str]) -> str:
    return next(row for row in reversed(rows) if "└" in row)


def first_label(rows: list[str]) -> str:
    """The x axis' first epoch label (and what follows it)."""
    return axis_row(rows).split("└")[1]


def plot_columns_with_data(rows: list[str]) -> set[int]:
    """Plot columns (from the first plot column) where any braille dot is drawn."""
    return {
        col - PLOT_LEFT
        for row in rows
        for col, ch in enumerate(row)
        if col >= PLOT_LEFT and 0x2800 < ord(ch) <= 0x28FF
    }


def y_labels(rows: list[str]) -> list[float]:
    return [float(row[:LABEL_WIDTH]) for row in rows if "┤" in row and row[:LABEL_WIDTH].strip()]


def with_loss(client: FakeClient, values: list[float], **extra: Any) -> FakeClient:
    """Replace the fake history's losses (train = test = `values`), adding `extra` fields."""
    for row, value in zip(client.snapshot["history"], values, strict=True):
        row["metrics"] = {"train_mse": value, "test_mse": value}
        row.update(extra)
    return client


# -- one x range for both charts --------------------------------------------------------------
async def test_a_segment_boundary_is_at_the_same_column_in_both_charts(tmp_path: Path) -> None:
    # 30 @ 0.03, 30 @ 0.01 trained, 30 @ 0.005 queued: the LR chart shows the queued LR
    # after the history; before, its x range was 90 epochs and the loss chart's 60.
    app = app_for(tmp_path, FakeClient())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        loss = content(app, app.screen.query_one(LossChart))
        lr = content(app, app.screen.query_one(LrChart))
    loss_axis, lr_axis = axis_row(loss), axis_row(lr)
    assert "┴" in lr_axis
    boundary = lr_axis.index("┴")
    # The loss chart's boundary: its dotted line (its axis tick may carry the best mark).
    loss_marks = {row.index("┊") for row in loss[:-1] if "┊" in row}
    assert loss_marks == {boundary}
    assert loss_axis.rstrip().endswith("90") and lr_axis.rstrip().endswith("90")
    assert " epoch " in loss_axis and " epoch " in lr_axis  # the x axis title


async def test_queueing_a_segment_moves_both_charts_x_range(tmp_path: Path) -> None:
    """Seen in tmux: after queueing, the LR chart's range grew and the loss chart kept the
    old one (460 against 468): a plan change must redraw both."""
    client = FakeClient()
    app = app_for(tmp_path, client)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await client.call("queue", segments=[{"epochs": 30, "lr": 0.002}])
        await settle(pilot)
        loss = content(app, app.screen.query_one(LossChart))
        lr = content(app, app.screen.query_one(LrChart))
    # 60 trained, 30 + 30 queued: the queued part takes at most half the width (60).
    assert axis_row(loss).rstrip().endswith("120") and axis_row(lr).rstrip().endswith("120")


def test_a_long_abandoned_branch_does_not_squash_the_current_path() -> None:
    """Rolled back from epoch 6,070 to 60, then 90 epochs: the current path (150 epochs)
    spans the width; the branch is drawn only over that range."""
    model = RunModel()
    history = [
        {
            "global_epoch": e,
            "global_step": e * SPE,
            "segment": int(e > 60),
            "lr": 0.03 if e <= 60 else 0.01,
            "metrics": {"test_mse": 10.0 + 1.0 / e},
        }
        for e in range(1, 151)
    ]
    model.load_snapshot({"session": {"monitor": "test_mse"}, "history": history})
    model.branches = {"path 1": Series([math.nan] * 60 + [12.0 + (e % 7) for e in range(6010)])}
    view = ChartView()
    start, stop = view.window(model)
    assert (start, stop) == (0, 150)
    chart = LossChart(model, view)
    width = 80
    rows = render_chart(
        chart.traces(), width, 16, x_start=start, x_stop=stop, x_title="epoch"
    ).plain.split("\n")
    plot_w = width - PLOT_LEFT
    columns = plot_columns_with_data(rows[:-1])
    assert {0, plot_w - 1} <= columns  # the current path reaches both edges
    assert axis_row(rows).rstrip().endswith("150")
    assert "6070" not in rows[-1]
    # Y labels come from the current path (10..11), never from the branch (12..18).
    assert max(y_labels(rows[:-1])) < 12


# -- a robust y range, zoom keys, log scale ---------------------------------------------------
def long_run() -> FakeClient:
    """2,000 epochs: epoch 1 at 37.34, then 8..10 (the issue's 29k-epoch picture, shorter)."""
    client = FakeClient(segments=[(1000, 0.03), (1000, 0.01)], queued=[])
    values = [37.34] + [8.0 + 2.0 * abs(math.sin(e / 50.0)) for e in range(2, 2001)]
    return with_loss(client, values)


async def test_robust_range_clips_the_first_epochs_and_keys_change_it(tmp_path: Path) -> None:
    app = app_for(tmp_path, long_run())
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        chart = app.screen.query_one(LossChart)
        rows = content(app, chart)
        assert max(y_labels(rows)) < 20  # 8..10 fill the chart, not the bottom rows
        assert "▲" in rows[0]  # epoch 1 clipped at the top edge, marked
        assert "clipped" in str(chart.border_subtitle)
        await pilot.press("escape", "a")  # the full range
        await settle(pilot)
        rows = content(app, chart)
        assert max(y_labels(rows)) == pytest.approx(37.34)
        assert "▲" not in "".join(rows)
        await pilot.press("a", "l")  # robust again, with the log scale
        await settle(pilot)
        rows = content(app, chart)
        assert "(log)" in str(chart.border_title)
        assert "▲" in rows[0] and max(y_labels(rows)) < 20
        # Zoom: the last 1,000 epochs, then 500; both charts; 0 shows all again.
        await pilot.press("plus")
        await settle(pilot)
        assert first_label(content(app, chart)).startswith("1001")
        assert first_label(content(app, app.screen.query_one(LrChart))).startswith("1001")
        assert "last 1000 epochs" in str(chart.border_subtitle)
        await pilot.press("plus")
        await settle(pilot)
        assert first_label(content(app, chart)).startswith("1501")
        await pilot.press("minus")
        await settle(pilot)
        assert first_label(content(app, chart)).startswith("1001")
        await pilot.press("0")
        await settle(pilot)
        assert first_label(content(app, chart)).startswith("1─")
        assert app.screen.view.last is None


async def test_zoom_keys_type_into_a_focused_field(tmp_path: Path) -> None:
    """+, -, 0, a, g and o are one-letter keys: in the epochs field they are typed."""
    app = app_for(tmp_path, FakeClient())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        field = app.screen.query_one("#epochs")
        field.focus()
        field.value = ""  # type: ignore[attr-defined]
        await pilot.press("1", "0", "0", "minus", "plus", "a", "g", "o")
        await settle(pilot)
        assert app.screen.view.last is None and app.screen.view.lower == "lr"
        assert app.screen.view.robust and not isinstance(app.screen, OverlayScreen)


# -- axis titles, labels, the best epoch -------------------------------------------------------
async def test_tall_chart_has_more_y_labels_and_marks_the_best_epoch(tmp_path: Path) -> None:
    values = [10.0 - 0.1 * e if e <= 40 else 6.0 + 0.05 * (e - 40) for e in range(1, 61)]
    app = app_for(tmp_path, with_loss(FakeClient(), values))
    async with app.run_test(size=(200, 60)) as pilot:
        await settle(pilot)
        chart = app.screen.query_one(LossChart)
        rows = content(app, chart)
    assert len(y_labels(rows)) >= 6
    assert "mse" in str(chart.border_title).split("━")[0]  # the y axis title
    axis = axis_row(rows)
    assert axis.count("◆") == 1
    # Epoch 40 (the lowest test_mse) at its column: 90 positions (60 + 30 queued).
    plot_w = len(rows[0]) - PLOT_LEFT
    assert axis.index("◆") - PLOT_LEFT == round(39 * (plot_w * 2 - 1) / 89) // 2
    assert "best test_mse 6 @ 40" in str(chart.border_subtitle)


def test_best_follows_the_monitors_mode() -> None:
    history = [
        {"global_epoch": e, "global_step": e, "segment": 0, "lr": 0.1, "metrics": {"acc": a}}
        for e, a in enumerate([0.5, 0.9, 0.7], start=1)
    ]
    model = RunModel()
    model.load_snapshot({"session": {"monitor": "acc"}, "history": history})
    assert model.best == (1, 0.9)  # accuracy: higher is better
    model = RunModel()
    model.load_snapshot({"session": {"monitor": "acc", "monitor_mode": "min"}, "history": history})
    assert model.best == (0, 0.5)


# -- the gradient-norm chart --------------------------------------------------------------------
async def test_g_switches_the_lower_chart_to_gradient_norms(tmp_path: Path) -> None:
    client = FakeClient()
    for i, row in enumerate(client.snapshot["history"]):
        row["grad_norm"] = 1.0 + i / 10.0
        row["grad_norm_max"] = 2.0 + i / 10.0
    app = app_for(tmp_path, client)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        chart = app.screen.query_one(LrChart)
        assert "lr" in str(chart.border_title)
        await pilot.press("escape", "g")
        await settle(pilot)
        rows = content(app, chart)
        assert "grad norm" in str(chart.border_title)
        assert max(y_labels(rows)) == pytest.approx(7.9)  # the max norm of epoch 60
        assert plot_columns_with_data(rows)
        # The loss chart never draws the norms as a loss metric.
        assert "grad" not in str(app.screen.query_one(LossChart).border_title)
        await pilot.press("g")
        await settle(pilot)
        assert "lr" in str(chart.border_title)


async def test_without_gradient_norms_the_chart_says_so(tmp_path: Path) -> None:
    app = app_for(tmp_path, FakeClient())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("escape", "g")
        await settle(pilot)
        text = "\n".join(content(app, app.screen.query_one(LrChart)))
    assert "no gradient norms recorded" in text


def test_norms_read_from_metrics_csv_are_not_loss_metrics() -> None:
    """From disk the norms are metrics.csv columns: they go to their own series."""
    model = RunModel()
    model.load_snapshot({"session": {"metrics": ["train_loss"], "monitor": "train_loss"}})
    row = {"global_epoch": 1, "global_step": 1, "segment": 0, "lr": 0.1}
    model.add_epoch({**row, "metrics": {"train_loss": 2.0, "grad_norm": 0.5}})
    model.add_epoch({**row, "global_epoch": 2, "metrics": {"train_loss": 1.0}, "grad_norm": 0.0})
    assert model.metrics == ["train_loss"]
    assert model.grad_norm.buckets(10) == [(0.5, 0.5), (0.0, 0.0)]
    assert model.grad_norm_max.buckets(10) == [(math.inf, -math.inf)] * 2
    assert model.has_grad_norm


# -- overlay another run ----------------------------------------------------------------------
async def test_o_overlays_another_session_dimmed_and_toggles_it_off(tmp_path: Path) -> None:
    from conftest import write_fixed_session

    sessions = tmp_path / "sessions"
    sessions.mkdir()
    other = write_fixed_session(sessions, "baseline", epochs=60, segments=[(60, 0.03)], best=1.0)
    columns = ["global_epoch", "global_step", "segment", "lr", "train_mse", "test_mse", "time"]
    rows = [
        {
            "global_epoch": e,
            "global_step": e * SPE,
            "segment": 0,
            "lr": 0.03,
            "train_mse": 12.0,
            "test_mse": 500.0 if e == 1 else 12.0,  # epoch 1: outside the range, not drawn
            "time": 1.0 * e,
        }
        for e in range(1, 61)
    ]
    write_rows(other / "metrics.csv", columns, rows)
    app = app_for(tmp_path, FakeClient())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        chart = app.screen.query_one(LossChart)
        before = content(app, chart)
        await pilot.press("escape", "o")
        await settle(pilot)
        assert isinstance(app.screen, OverlayScreen)
        labels = [str(o.prompt) for o in app.screen.query_one(OptionList).options]
        assert labels == ["session baseline"]  # not this session itself
        await pilot.press("enter")
        await settle(pilot)
        assert "baseline test_mse" in str(chart.border_title)
        after = content(app, chart)
        # Dimmed and inside the range: the y range stays the current path's.
        assert y_labels(after) == y_labels(before)
        assert after != before
        await pilot.press("o")  # toggles it off
        await settle(pilot)
        assert "baseline" not in str(chart.border_title)
        assert content(app, chart) == before
        # The session's abandoned branches are offered too, first.
        chart.model.branches = {"path 1": Series([math.nan] * 10 + [15.0] * 20)}
        await pilot.press("o")
        await settle(pilot)
        labels = [str(o.prompt) for o in app.screen.query_one(OptionList).options]
        assert labels == ["branch path 1", "session baseline"]
        await pilot.press("enter")
        await settle(pilot)
        assert "━ path 1" in str(chart.border_title)


# -- progress, toasts, 80x24 --------------------------------------------------------------------
async def test_progress_line_and_table_agree_on_the_epoch(tmp_path: Path) -> None:
    app = app_for(tmp_path, FakeClient())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = app.screen
        # Five batches into segment #3's first epoch: 60 epochs are finished.
        screen.model.batch = {"global_step": 60 * SPE + 5, "lr": 0.005}
        screen.query_one(RunProgress).update_view()
        await pilot.pause(0.1)
        text = "\n".join(content(app, screen.query_one(RunProgress)))
        table = screen.query_one(SegmentTable)
        last_end = table.get_row_at(table.row_count - 1)[3]
    assert "segment #3  0/30 epochs  batch 5/14" in text
    assert "epoch 60 " in text and last_end == "60"


def test_timing_parts_while_training() -> None:
    model = RunModel()
    model.load_snapshot(
        {
            "session": {"steps_per_epoch": 10},
            "state": {"state": "running"},
            "plan": {"segments": [{"epochs": 2, "lr": 0.1}, {"epochs": 20, "lr": 0.01}]},
        }
    )
    # Segment #1 long ago; segment #2's four epochs, 2 s each, after an idle gap.
    times = {1: 10.0, 2: 12.0, 3: 1006.0, 4: 1008.0, 5: 1010.0, 6: 1012.0}
    for e, at in times.items():
        row = {"global_epoch": e, "global_step": 10 * e, "segment": int(e > 2), "lr": 0.1}
        model.add_epoch({**row, "metrics": {}, "time": at}, live=False)
    model.epoch_times = deque([0.0, 2.0, 4.0])  # 2 s per epoch
    model.state = {"state": "paused"}
    # Paused: no speed, no ETA. The run's 6 epochs of 2 s; the idle gap is left out.
    assert timing_parts(model) == ["elapsed 0:12"]
    model.state = {"state": "running"}
    parts = timing_parts(model)
    assert parts[0] == "2 s/ep"
    assert parts[1].startswith("elapsed ")
    assert parts[2:] == ["ETA segment 0:32", "queue 0:32"]  # 16 epochs left in both


async def test_toasts_never_cover_the_segments_table(tmp_path: Path) -> None:
    app = app_for(tmp_path, FakeClient())
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        for i in range(6):  # more than fit: the rack scrolls, it does not grow down
            app.notify(f"message number {i}", title="runner", timeout=30)
        await pilot.pause(0.5)
        lines = screen_text(app).split("\n")
        table = app.screen.query_one(DataTable).region
        planner = app.screen.query_one("#planner").region
    shown = [y for y, line in enumerate(lines) if "message number" in line]
    assert shown  # the toasts are on screen
    for line in lines[table.y : table.y + table.height]:
        assert "▌" not in line and "message" not in line and "runner" not in line
    # Nor over the planner's fields at the right.
    for line in lines[planner.y : planner.y + planner.height]:
        assert "▌" not in line[planner.x :]


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
async def test_loss_chart_height_and_legend(tmp_path: Path, size: tuple[int, int]) -> None:
    client = FakeClient()
    app = app_for(tmp_path, client)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        chart = app.screen.query_one(LossChart)
        chart.model.branches = {"path 1": Series([math.nan] * 10 + [20.0] * 30)}
        chart.mark_stale()
        await settle(pilot)
        top = screen_text(app).split("\n")[chart.region.y]
        rows = content(app, chart)
        assert chart.content_region.height >= 7  # at least 6 plot rows and the axis
        assert len(rows[0]) > 30
    for name in ("train_mse", "test_mse", "branches"):
        assert f"━ {name} " in top  # whole names in the border legend, none cut
    assert "…" not in top


def test_render_chart_keeps_short_traces_in_place() -> None:
    """A trace shorter than the window keeps its epochs' columns (not stretched)."""
    long, short = Series([1.0] * 1000), Series([2.0] * 500)
    rows = render_chart(
        [Trace(short, "red", "short", scale=False), Trace(long, "blue", "long")], 60, 8
    ).plain.split("\n")
    plot_w = 60 - PLOT_LEFT
    lengths = [len(r[PLOT_LEFT:].rstrip()) for r in rows[:-1] if r[PLOT_LEFT:].strip()]
    assert max(lengths) == plot_w  # the long trace reaches the right edge
    text = render_chart([Trace(short, "red", "s")], 60, 8, x_stop=1000).plain.split("\n")
    drawn = plot_columns_with_data(text[:-1])
    assert max(drawn) == plot_w // 2 - 1 or max(drawn) == plot_w // 2


def test_robust_range_clips_only_the_outlier_side() -> None:
    """Loss (min mode) clips a high start; accuracy (max mode) a low start; a flat line
    after one outlier still gets the chart; a steady curve keeps its whole range."""
    flat = [(37.0, 37.0)] + [(8.0, 8.0)] * 99
    low, high, clipped = robust_limits([flat], "top")
    assert clipped and low == 8.0 and 8.0 < high < 12.0
    accuracy = [(0.05, 0.05)] + [(0.9 + i / 1000, 0.9 + i / 1000) for i in range(99)]
    low, high, clipped = robust_limits([accuracy], "bottom")
    assert clipped and 0.8 < low < 0.9 and high == pytest.approx(0.998)
    assert robust_limits([accuracy], "top")[2] is False  # the other side is never clipped
    steady = [(30.0 - 0.2 * e, 30.0 - 0.2 * e) for e in range(100)]
    assert robust_limits([steady], "top") == (30.0 - 0.2 * 99, 30.0, False)
    # A 1/x fall: its first few epochs dwarf the rest, and are clipped (marked).
    fall = [(30.0 / (1 + e), 30.0 / (1 + e)) for e in range(100)]
    low, high, clipped = robust_limits([fall], "top")
    assert clipped and high < 10.0
