"""`lrconsole compare`: the table and chart of real sessions trained by `lrconsole run`."""

from __future__ import annotations

import csv
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from lrconsole.tui.plot import format_value
from tests.conftest import EXAMPLES, ROOT, lrconsole, write_schedule

pytestmark = pytest.mark.slow

# The runs' colours as 24-bit ANSI (#5fd7ff, #ff87d7), when colour is forced.
FIRST_RUN_COLOUR = "38;2;95;215;255"
SECOND_RUN_COLOUR = "38;2;255;135;215"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`fast` (3 @ 0.03), `slow` (3 @ 0.01) and `blobs` (4 @ 0.05, monitors test_acc)."""
    root = tmp_path_factory.mktemp("compare")
    sessions = root / "sessions"
    for name, lr in (("fast", 0.03), ("slow", 0.01)):
        schedule = write_schedule(root / f"{name}.yaml", [(3, lr)])
        done = lrconsole("--sessions-dir", str(sessions), "run", name, "--schedule", str(schedule))
        assert done.returncode == 0, done.stderr
    blobs = root / "blobs.yaml"
    blobs.write_text(
        "version: 1\n"
        f"task: {{spec: '{EXAMPLES / 'classify_task.py'}:make_task', args: {{samples: 300}}}}\n"
        "seed: 1\nsegments:\n  - {epochs: 4, lr: 0.05}\n"
    )
    done = lrconsole("--sessions-dir", str(sessions), "run", "blobs", "--schedule", str(blobs))
    assert done.returncode == 0, done.stderr
    return sessions


def csv_rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def parse_table(text: str) -> dict[str, dict[str, str]]:
    """The table's cells by run and header, cut at the header's column starts."""
    lines = text.splitlines()
    header = lines[0]
    names = [h for h in header.split("  ") if h.strip()]
    starts = [header.index(h.strip()) for h in names]
    table: dict[str, dict[str, str]] = {}
    for line in lines[1:]:
        if not line.strip():
            break
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        table[cells[0]] = dict(zip([n.strip() for n in names], cells, strict=True))
    return table


def compare(sessions: Path, *args: str, colour: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "100", "PYTHONUNBUFFERED": "1"}
    env.pop("NO_COLOR", None)
    if colour:
        env.update(FORCE_COLOR="1", COLORTERM="truecolor")
    return subprocess.run(
        [sys.executable, "-m", "lrconsole", "--sessions-dir", str(sessions), "compare", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_table_numbers_are_the_metrics_csv_values(trained: Path) -> None:
    done = compare(trained, "fast", "slow")
    assert done.returncode == 0, done.stderr
    table = parse_table(done.stdout)
    assert list(table) == ["fast", "slow"]
    for name in ("fast", "slow"):
        rows = csv_rows(trained / name)
        cells = table[name]
        assert cells["EPOCHS"] == str(len(rows)) == "3"
        for metric in ("train_loss", "test_loss"):
            values = [float(r[metric]) for r in rows]
            assert cells[f"{metric} FINAL"] == f"{values[-1]:.6g}"
            low = min(values)  # a loss is minimised
            assert cells[f"{metric} BEST (EPOCH)"] == f"{low:.6g} ({values.index(low) + 1})"
        times = [float(r["time"]) for r in rows]
        steps = [b - a for a, b in zip(times, times[1:], strict=False)]
        wall = times[-1] - times[0] + statistics.median(steps)
        assert cells["WALL TIME"] == f"{wall:.3g} s"
    # The lower LR trains more slowly here: the table says which run is ahead.
    assert float(table["fast"]["test_loss FINAL"]) < float(table["slow"]["test_loss FINAL"])


def test_chart_overlays_the_runs_on_one_scale(trained: Path) -> None:
    done = compare(trained, "fast", "slow", "--metric", "test_loss")
    assert done.returncode == 0, done.stderr
    chart = done.stdout.split("\n\n", 1)[1].splitlines()
    assert chart[0].split() == ["test_loss", "per", "epoch", "━", "fast", "━", "slow"]
    values = [float(r["test_loss"]) for n in ("fast", "slow") for r in csv_rows(trained / n)]
    # One y axis for both runs: from the lowest value of either to the highest.
    assert chart[1].startswith(format_value(max(values)).rjust(8) + "┤")
    assert chart[-2].startswith(format_value(min(values)).rjust(8) + "┤")
    assert chart[-1].strip().startswith("└1") and chart[-1].endswith("3")
    assert sum(ch >= "\u2801" and ch <= "\u28ff" for line in chart for ch in line) > 50
    # With colour on, both runs' colours are drawn (the console's series colours).
    coloured = compare(trained, "fast", "slow", colour=True)
    assert coloured.returncode == 0, coloured.stderr
    body = coloured.stdout.split("per epoch", 1)[1]
    assert FIRST_RUN_COLOUR in body and SECOND_RUN_COLOUR in body


def test_best_follows_the_monitor_mode_and_missing_metrics_show_as_dashes(trained: Path) -> None:
    done = compare(trained, "blobs", "fast", "--metric", "test_acc")
    assert done.returncode == 0, done.stderr
    table = parse_table(done.stdout)
    accs = [float(r["test_acc"]) for r in csv_rows(trained / "blobs")]
    top = max(accs)  # test_acc is maximised (the session's monitor mode)
    assert min(accs) < top
    assert table["blobs"]["test_acc BEST (EPOCH)"] == f"{top:.6g} ({accs.index(top) + 1})"
    assert table["fast"]["test_acc FINAL"] == table["fast"]["test_acc BEST (EPOCH)"] == "-"
    assert table["blobs"]["EPOCHS"] == "4" and table["fast"]["EPOCHS"] == "3"
    # Only the run that has the metric is charted.
    assert done.stdout.split("\n\n", 1)[1].splitlines()[0].split()[3:] == ["━", "blobs"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fast"], "compare: give at least two sessions"),
        (["fast", "nope"], "no session 'nope'"),
        (["fast", "slow", "--metric", "test_acc"], "--metric: no run has 'test_acc'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(trained: Path, args: list[str], message: str) -> None:
    done = compare(trained, *args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("lrconsole: error: ") and message in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_a_damaged_metrics_file_is_named(trained: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "sessions"
    for name in ("fast", "slow"):
        shutil.copytree(trained / name, copy / name, ignore=shutil.ignore_patterns("*.sock"))
    path = copy / "slow" / "metrics.csv"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace(lines[2].split(",")[4], "oops")
    path.write_text("\n".join(lines) + "\n")
    done = compare(copy, "fast", "slow")
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
    assert "metrics.csv: line 3" in done.stderr


def test_compare_never_imports_torch_or_textual(trained: Path) -> None:
    code = (
        "import sys\n"
        "from lrconsole.cli import main\n"
        f"code = main(['--sessions-dir', {str(trained)!r}, 'compare', 'fast', 'slow'])\n"
        "print(code, 'torch' in sys.modules, 'textual' in sys.modules, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.stderr.split() == ["0", "False", "False"], done.stderr
