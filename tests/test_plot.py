"""`lrconsole plot`: report figures of real sessions, and the clean error without matplotlib."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, lrconsole, write_schedule

pytestmark = pytest.mark.slow

MISSING = "lrconsole: error: lrconsole plot needs matplotlib: pip install 'lrconsole[plot]'\n"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`two` (3 @ 0.03 then 3 @ 0.01, with a plateau mark) and `one` (4 @ 0.02)."""
    root = tmp_path_factory.mktemp("plot")
    sessions = root / "sessions"
    for name, segments in (("two", [(3, 0.03), (3, 0.01)]), ("one", [(4, 0.02)])):
        schedule = write_schedule(root / f"{name}.yaml", segments)
        done = lrconsole("--sessions-dir", str(sessions), "run", name, "--schedule", str(schedule))
        assert done.returncode == 0, done.stderr
    # A plateau policy acting takes a long run; its mark in the manifest is what plot reads.
    manifest = sessions / "two" / "manifest.yaml"
    data = yaml.safe_load(manifest.read_text())
    data["policy_marks"] = [{"epoch": 5, "policy": "plateau", "lr": 0.005}]
    manifest.write_text(yaml.safe_dump(data, sort_keys=False))
    return sessions


def test_png_and_svg_are_written(trained: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png, svg = tmp_path / "runs.png", tmp_path / "runs.svg"
    for out in (png, svg):
        done = lrconsole("--sessions-dir", str(trained), "plot", "two", "one", "-o", str(out))
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"wrote {out}\n"
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and png.stat().st_size > 10_000
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "</svg>" in text
    for words in ("two vs one", "two train_loss", "one test_loss", "plateau", "epoch", "lr"):
        assert words in text, words


def test_without_matplotlib_one_line_and_exit_2(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs.png"
    block = (  # a None in sys.modules makes `import matplotlib` raise ImportError
        "import sys; sys.modules['matplotlib'] = None; from lrconsole.cli import main; "
        f"sys.exit(main(['--sessions-dir', {str(trained)!r}, 'plot', 'two', '-o', {str(out)!r}]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", block], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stderr) == (2, MISSING)
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["two", "-o", "runs.pdf"], "give a .png or .svg file name"),
        (["two", "-o", "nowhere/runs.png"], "no folder"),
        (["nosuch", "-o", "runs.png"], "no session 'nosuch'"),
    ],
)
def test_bad_arguments_are_one_line(
    trained: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    pytest.importorskip("matplotlib")
    done = lrconsole("--sessions-dir", str(trained), "plot", *args, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
