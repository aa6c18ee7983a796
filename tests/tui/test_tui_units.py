"""Fast checks of the console's pure parts: decimation, drawing, field parsing, imports."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from lrconsole.core.schedule import ScheduleError
from lrconsole.tui.plot import Trace, render_chart
from lrconsole.tui.series import Series
from lrconsole.tui.validate import parse_epochs, parse_lr


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
