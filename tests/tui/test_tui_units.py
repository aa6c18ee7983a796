"""Fast checks of the console's pure parts: decimation, drawing, field parsing, imports."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from lrconsole.core.plan.segment import ScheduleError
from lrconsole.tui.model import RunModel
from lrconsole.tui.plot import LABEL_WIDTH, Trace, render_chart
from lrconsole.tui.series import Series
from lrconsole.tui.validate import parse_epochs, parse_lr
from lrconsole.tui.widgets.charts import LossChart


def test_console_never_imports_torch() -> None:
    code = (
        "import sys\n"
        "import lrconsole.tui\n"
        "from lrconsole.tui.app import make_app\n"
        "import lrconsole.tui.screens.run, lrconsole.tui.export, lrconsole.tui.controller\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'numpy' not in sys.modules, 'numpy was imported'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_buckets_keep_spikes_and_cover_everything() -> None:
    values = [1.0] * 100_003
    values[54_321] = 50.0
    values[-1] = -3.0  # in the tail that no full pyramid entry covers
    series = Series(values)
    buckets = series.buckets(200)
    assert len(buckets) == 200
    assert max(hi for _, hi in buckets) == 50.0
    assert min(lo for lo, _ in buckets) == -3.0
    assert series.range() == (-3.0, 50.0)


def test_buckets_short_series_are_the_points() -> None:
    series = Series([3.0, math.nan, 1.0])
    assert series.buckets(10) == [(3.0, 3.0), (math.inf, -math.inf), (1.0, 1.0)]
    assert series.range() == (1.0, 3.0)


def test_buckets_are_exact_min_max_when_aligned() -> None:
    values = [float(i % 7) for i in range(4096)]
    buckets = Series(values).buckets(16)
    for c, (lo, hi) in enumerate(buckets):
        chunk = values[c * 256 : (c + 1) * 256]
        assert (lo, hi) == (min(chunk), max(chunk))


@pytest.mark.parametrize("log", [False, True])
def test_render_fills_the_box(log: bool) -> None:
    train = Series([1.0 / (1 + i) for i in range(500)])
    test = Series([1.2 / (1 + i) for i in range(500)])
    text = render_chart(
        [Trace(train, "red", "train"), Trace(test, "blue", "test")],
        60,
        10,
        log=log,
        markers=[100, 300],
    )
    lines = text.plain.split("\n")
    assert len(lines) == 10
    assert all(len(line) <= 60 for line in lines)
    assert "┊" in text.plain  # segment boundaries
    assert lines[-1].strip().startswith("└1") and lines[-1].endswith("500")


def test_policy_flags_are_dashed_lines_in_their_style_under_the_data() -> None:
    flat = Series([1.0] * 100)
    text = render_chart(
        [Trace(flat, "red", "x")], 60, 10, markers=[50], flags=[(20, "bold yellow")]
    )
    rows = text.plain.split("\n")[:-1]
    plot_left = LABEL_WIDTH + 1
    columns = {row.index("╎") for row in rows if "╎" in row}
    assert len(columns) == 1  # one dashed line, in one column
    column = columns.pop()
    assert column - plot_left == round(20 * (51 * 2 - 1) / 99) // 2  # where epoch 21 is
    flagged = [row for row in rows if "╎" in row]
    assert len(flagged) == len(rows) - 1  # every row but the one the flat line is drawn on
    styles = {str(span.style) for span in text.spans if text.plain[span.start] == "╎"}
    assert styles == {"bold yellow"}
    assert "┊" in text.plain  # the segment boundary keeps its own marker


def test_model_keeps_policy_marks_from_snapshot_and_events() -> None:
    model = RunModel()
    model.load_snapshot(
        {"session": {"policy_marks": [{"epoch": 3, "policy": "plateau", "lr": 0.02}]}}
    )
    assert model.policy_marks == [(3, "plateau")]
    version = model.version
    model.add_policy_mark(3, "plateau")  # the live event after a snapshot that had it
    assert model.policy_marks == [(3, "plateau")] and model.version == version
    model.add_policy_mark(7, "early_stop")
    assert model.policy_marks == [(3, "plateau"), (7, "early_stop")]
    assert model.version > version  # the charts redraw
    # A plateau is flagged where its lower LR starts (the next epoch), early stopping at the
    # epoch it restored; indices count from the first epoch shown.
    flags = LossChart(model).flags()
    assert [index for index, _ in flags] == [3, 6]


def test_render_survives_nan_inf_and_flat_lines() -> None:
    series = Series([math.nan, math.inf, 2.0, 2.0, -math.inf])
    text = render_chart([Trace(series, "red", "x")], 40, 6, log=True)
    assert len(text.plain.split("\n")) == 6
    assert "no data" in render_chart([Trace(Series(), "red", "x")], 40, 6).plain


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "enter"),
        ("   ", "enter"),
        ("abc", "not a number"),
        ("2.5", "whole number"),
        ("1e3", "whole number"),
        ("0", "at least 1"),
        ("-4", "at least 1"),
        ("100001", "too many"),
        ("nan", "whole number"),
        ("inf", "whole number"),
    ],
)
def test_bad_epochs(text: str, needle: str) -> None:
    with pytest.raises(ScheduleError, match=needle):
        parse_epochs(text)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "enter"),
        ("abc", "not a number"),
        ("0", "> 0"),
        ("-0.1", "> 0"),
        ("nan", "finite"),
        ("inf", "finite"),
        ("-inf", "finite"),
        ("10.5", "absurdly large"),
    ],
)
def test_bad_lr(text: str, needle: str) -> None:
    with pytest.raises(ScheduleError, match=needle):
        parse_lr(text)


def test_good_fields() -> None:
    assert parse_epochs(" 30 ") == 30
    assert parse_epochs("100000") == 100_000
    assert parse_lr("3e-2") == 0.03
    assert parse_lr("10") == 10.0


def test_a_thinned_snapshot_history_keeps_each_epoch_at_its_place() -> None:
    """The runner thins a long run's history; the console still spans every epoch."""
    from lrconsole.core.session.history import EpochHistory

    history = EpochHistory()
    for epoch in range(1, 20_001):
        lr = 0.03 if epoch <= 10_000 else 0.01
        row = {"global_epoch": epoch, "global_step": 14 * epoch, "segment": int(lr < 0.02)}
        history.append({**row, "lr": lr, "metrics": {"train_loss": float(epoch)}})
    rows = history.rows()
    assert len(rows) < 20_000  # thinned
    model = RunModel()
    model.load_snapshot({"history": rows, "state": {"global_epoch": 20_000}})
    assert model.first_epoch == 1 and model.global_epoch == 20_000
    assert len(model.lr) == len(model.series["train_loss"]) == 20_000
    points = model.series["train_loss"].buckets(20_000)  # one per epoch
    kept = {int(r["global_epoch"]) for r in rows}
    for epoch, (lo, hi) in enumerate(points, start=1):
        assert (lo, hi) == ((epoch, epoch) if epoch in kept else (math.inf, -math.inf))
    assert model.series["train_loss"].buckets(10)[-1][1] == 20_000  # the whole range drawn
    lrs = model.lr.buckets(20_000)
    assert lrs[9_999] == (0.03, 0.03) and lrs[10_000] == (0.01, 0.01)  # held across gaps
