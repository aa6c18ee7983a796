"""One chart redraw at 1,000 points and at 1,000,000 points.

    python benchmarks/bench_chart.py [--repeat 40] [--width 100 --height 30]

A redraw is what the console does on each throttle tick when new epochs arrived: decimate
each series to one min/max bucket per braille dot column, draw the braille text, and turn it
into terminal segments (what Textual writes). It is measured in two ways:

- `render`: the chart text for the loss chart (two series) at the size the loss chart has
  in a WIDTH x HEIGHT terminal, plus Rich's rendering of it into lines;
- `widget`: the LossChart widget filling a headless app of that size (a bigger chart than
  the run screen's), timing `refresh()` + `render_lines()` after new data arrived.

Targets: <= 10 ms per redraw at either size, and 1e6/1e3 ratio <= 1.5. Medians are printed,
since the machine is noisy; the garbage collector is off while timing, as in timeit.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402

from lrconsole.tui.plot import Trace, render_chart  # noqa: E402
from lrconsole.tui.series import Series  # noqa: E402

TARGET_MS = 10.0
TARGET_RATIO = 1.5


def make_series(n: int, scale: float = 1.0) -> Series:
    values = [scale * (0.02 + 5.0 / (1.0 + i * 50.0 / n)) + 0.01 * math.sin(i) for i in range(n)]
    values[n // 3] *= 20  # one spike, which decimation must keep
    return Series(values)


def time_render(n: int, width: int, height: int, repeat: int) -> list[float]:
    train, test = make_series(n), make_series(n, 1.2)
    traces = [Trace(train, "bold cyan", "train"), Trace(test, "bold magenta", "test")]
    console = Console(
        width=width, color_system="truecolor", force_terminal=True, legacy_windows=False
    )
    markers = [n // 3, 2 * n // 3]
    times = []
    gc.collect()
    gc.disable()
    for i in range(repeat + 3):
        t0 = time.perf_counter()
        text = render_chart(traces, width, height, x_first=1, log=bool(i % 2), markers=markers)
        lines = console.render_lines(text, console.options.update(width=width, height=height))
        elapsed = time.perf_counter() - t0
        assert len(lines) == height
        if i >= 3:  # warm-up
            times.append(elapsed * 1000)
    gc.enable()
    return times


async def time_widget(n: int, size: tuple[int, int], repeat: int) -> tuple[list[float], str]:
    """Redraws of the real LossChart widget in a headless app (the run screen's layout)."""
    from textual.app import App, ComposeResult
    from textual.geometry import Region

    from lrconsole.tui.model import RunModel
    from lrconsole.tui.widgets.charts import LossChart

    model = RunModel()
    model.metrics = ["train_mse", "test_mse"]
    model.series = {"train_mse": make_series(n), "test_mse": make_series(n, 1.2)}
    model.lr = Series([0.03] * n)
    model.segment_first_epoch = {0: 1, 1: n // 3, 2: 2 * n // 3}

    class ChartApp(App[None]):
        def compose(self) -> ComposeResult:
            yield LossChart(model, id="chart")

    app = ChartApp()
    times: list[float] = []
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        chart = app.query_one(LossChart)
        box = chart.content_region
        gc.collect()
        gc.disable()  # as timeit does: time the redraw, not a collection that lands in it
        for _ in range(repeat + 3):
            model.version += 1  # new data: the cache is stale
            t0 = time.perf_counter()
            chart.refresh()
            lines = chart.render_lines(Region(0, 0, chart.size.width, chart.size.height))
            times.append((time.perf_counter() - t0) * 1000)
            assert lines
        gc.enable()
        times = times[3:]
        assert chart.redraws >= repeat, "the widget did not redraw"
    return times, f"{box.width}x{box.height}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--width", type=int, default=100, help="terminal width")
    parser.add_argument("--height", type=int, default=30, help="terminal height")
    args = parser.parse_args()

    # The loss chart's drawing area in the run screen at this terminal size (approx.).
    cw, ch = args.width - 38, max(6, args.height - 20)
    print(f"loss chart {cw}x{ch} cells, 2 series, {args.repeat} redraws each, medians:")
    ok = True
    results: dict[str, dict[int, float]] = {"render": {}, "widget": {}}
    for n in (1_000, 1_000_000):
        t0 = time.perf_counter()
        make_series(n)
        build = time.perf_counter() - t0
        render = statistics.median(time_render(n, cw, ch, args.repeat))
        widget_times, box = asyncio.run(time_widget(n, (args.width, args.height), args.repeat))
        widget = statistics.median(widget_times)
        results["render"][n] = render
        results["widget"][n] = widget
        print(
            f"  {n:>9,} points: render {render:6.2f} ms   widget ({box}) {widget:6.2f} ms"
            f"   (building the series once: {build:.2f} s)"
        )
    for kind, by_n in results.items():
        ratio = by_n[1_000_000] / by_n[1_000]
        worst = max(by_n.values())
        verdict = "ok" if worst <= TARGET_MS and ratio <= TARGET_RATIO else "OVER TARGET"
        ok &= verdict == "ok"
        print(
            f"  {kind}: 1e6/1e3 ratio {ratio:.2f} (target <= {TARGET_RATIO}), "
            f"worst median {worst:.2f} ms (target <= {TARGET_MS:g}): {verdict}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
