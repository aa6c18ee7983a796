"""`metrics.csv`: one row per epoch of the current path; the one reader of such files and
the one rule for "better" under a monitor mode. No torch here."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from lrconsole.core.atomic import atomic_write_text
from lrconsole.core.session.layout import METRICS
from lrconsole.core.session.manifest import SessionError

INT_COLUMNS = ("global_epoch", "global_step", "segment")
# With gradient diagnostics on (core.train.gradnorm): the epoch's mean and max total norm.
GRAD_COLUMNS = ("grad_norm", "grad_norm_max")


class MetricsLog:
    """One row per epoch: global_epoch, global_step, segment, lr, the metrics, with
    diagnostics on `grad_norm` and `grad_norm_max`, and time."""

    def __init__(self, folder: Path, metrics: list[str]) -> None:
        self.path = folder / METRICS
        self.columns = ["global_epoch", "global_step", "segment", "lr", *metrics, "time"]
        self._handle: IO[str] | None = None
        self._writer: Any = None
        self._pending: list[dict[str, Any]] = []

    def add_columns(self, names: tuple[str, ...]) -> None:
        """More columns (the gradient norms), before `time`, the field written last; call
        before `open`. Older rows without them read as blank, so as NaN."""
        self.columns[-1:-1] = [n for n in names if n not in self.columns]

    def open(self, keep_epochs: int) -> list[dict[str, Any]]:
        """Open for appending, dropping rows past `keep_epochs` (work to be redone).

        Rows up to `keep_epochs` were synced before the checkpoint was written: one that
        is missing or cut short is damage, refused naming the line, never dropped.
        """
        rows: list[dict[str, str]] = []
        torn_line = None
        if self.path.exists():
            for line, row, torn in scan_rows(self.path):
                if torn or not row.get("time"):
                    torn_line = line
                    break  # a write the crash cut short: nothing after it was synced
                epoch = int(row["global_epoch"])
                if epoch > keep_epochs:
                    break
                if epoch != len(rows) + 1:
                    raise SessionError(
                        f"{self.path}: line {line}: epoch {epoch} where epoch "
                        f"{len(rows) + 1} belongs; the file was edited or damaged"
                    )
                rows.append(row)
            if len(rows) < keep_epochs:
                where = f"line {torn_line}: cut short" if torn_line else "ends early"
                raise SessionError(
                    f"{self.path}: {where}: the row of epoch {len(rows) + 1} is missing, "
                    f"and the checkpoint at epoch {keep_epochs} needs every row up to it "
                    "(restore the row, e.g. from a backup)"
                )
        if rows:  # a run with diagnostics off keeps the columns earlier epochs filled
            self.add_columns(tuple(c for c in GRAD_COLUMNS if c in rows[0]))
        write_rows(self.path, self.columns, rows)
        self._handle = open(self.path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self._writer = csv.DictWriter(
            self._handle, self.columns, lineterminator="\n", extrasaction="ignore"
        )
        return [_typed(row) for row in rows]

    def truncate(self, keep_epochs: int) -> list[dict[str, str]]:
        """Drop rows past `keep_epochs` (a rollback); returns the dropped rows."""
        self.sync()
        rows = read_rows(self.path)
        self.close()
        self.open(keep_epochs)
        return [r for r in rows if int(r["global_epoch"]) > keep_epochs]

    def append(self, row: dict[str, Any]) -> None:
        # Buffered until `sync` (every checkpoint): rows past a checkpoint are redone anyway.
        self._pending.append(row)

    def sync(self) -> None:
        self.write_pending()
        self.fsync()

    def write_pending(self) -> None:
        """The buffered rows into the file (the OS's cache), without waiting for the disk."""
        if self._handle is not None:
            self._writer.writerows(self._pending)
            self._pending.clear()
            self._handle.flush()

    def fsync(self) -> None:
        """What was written, onto the disk (any thread: the checkpoint writer calls it)."""
        if self._handle is not None:
            os.fsync(self._handle.fileno())

    def discard_pending(self) -> list[dict[str, Any]]:
        """Drop the rows not yet synced (epochs past the last checkpoint); returns them."""
        pending, self._pending = self._pending, []
        return pending

    def close(self) -> None:
        if self._handle is not None:
            self.sync()
            self._handle.close()
            self._handle = None


def read_rows(path: Path, *, stop_at_torn: bool = False) -> list[dict[str, str]]:
    """The rows of a metrics file (metrics.csv or a branch's path-N.csv), as text.

    A row with fewer fields than the header is a line torn by a crash: it is left out.
    With `stop_at_torn` reading ends there instead, and also at a row without its time,
    the field written last. Values are not judged (the console skips what it cannot
    draw); `check_file` refuses a file with garbage rows. Raises OSError
    (FileNotFoundError for a missing file).
    """
    rows: list[dict[str, str]] = []
    for _, row, torn in scan_rows(path, check=False):
        if stop_at_torn and (torn or not row.get("time")):
            break
        if not torn:
            rows.append(row)
    return rows


def check_file(path: Path) -> None:
    """Raise SessionError naming the line of the first whole row of `path` that is not
    numbers; a missing file is fine (no epochs yet)."""
    if path.exists():
        for _ in scan_rows(path, check=True):
            pass


def scan_rows(path: Path, check: bool = True) -> Iterator[tuple[int, dict[str, str], bool]]:
    """(line number, row, torn) for each row of a metrics file; `check`: whole rows must
    be numbers (SessionError naming the line)."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            torn = None in row.values()
            if check and not torn:
                check_row(path, reader.line_num, row)
            yield reader.line_num, row, torn


def check_row(path: Path, line: int, row: dict[str, str]) -> None:
    """A whole row holds integers for the counters and numbers (or nothing) elsewhere."""
    for key, value in row.items():
        try:
            if key is None:
                raise ValueError
            if key in INT_COLUMNS:
                int(value)
            elif value != "":
                float(value)
        except (TypeError, ValueError):
            shown = f"{key} = {value!r}" if key is not None else "more fields than the header"
            raise SessionError(f"{path}: line {line}: not a metrics row ({shown})") from None


def write_rows(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    text = io.StringIO()
    # A row's keys outside `columns` are left out (a branch's rows keep the log's columns).
    writer = csv.DictWriter(text, columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, text.getvalue())


def _typed(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in INT_COLUMNS:
            out[key] = int(value)
        else:
            out[key] = float(value) if value != "" else float("nan")
    return out


def better(value: float, best: float, mode: str) -> bool:
    """Whether `value` beats `best` under `mode` ("min": lower is better, "max": higher).
    Strict: a tie keeps the earlier epoch; NaN never beats anything."""
    return value < best if mode == "min" else value > best


def best_of(history: list[dict[str, Any]], metric: str, mode: str) -> dict[str, Any] | None:
    """The best value of `metric` over history rows (EpochEnd.to_dict() shape), as the
    manifest stores it: {"metric", "value", "epoch"}; the first of equal values wins."""
    best: dict[str, Any] | None = None
    for row in history:
        value = row["metrics"].get(metric)
        if value is not None and (best is None or better(value, best["metrics"][metric], mode)):
            best = row
    if best is None:
        return None
    return {"metric": metric, "value": best["metrics"][metric], "epoch": best["global_epoch"]}
