"""Bad input at the command line: one line `lrconsole: error: ...`, exit 2, nothing lost."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import EXAMPLES, ROOT, lrconsole, metric_rows, write_schedule


def one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """The exit code is 2 and stderr is exactly one `lrconsole: error:` line holding
    every fragment; returns that line."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("lrconsole: error: "), line
    for fragment in fragments:
        assert fragment in line, line
    return line


def files_in(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sessions folder with `base`: 2 epochs @ 0.03, then 1 @ 0.01."""
    sessions = tmp_path_factory.mktemp("sessions")
    plan = write_schedule(sessions.parent / "plan.yaml", [(2, 0.03), (1, 0.01)])
    result = lrconsole("--sessions-dir", str(sessions), "run", "base", "--schedule", str(plan))
    assert result.returncode == 0, result.stderr
    return sessions


# -- 1. the optimizer -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("optimizer", "fragments"),
    [
        (
            "{name: sgd, momentum: -3}",
            ("bad.yaml: optimizer: sgd rejects momentum=-3: Invalid momentum value: -3",),
        ),
        ("{name: sgd, bogus: 1}", ("bad.yaml: optimizer: sgd has no argument 'bogus'",)),
        ("{name: sgd, nesterov: true}", ("bad.yaml: optimizer: sgd rejects nesterov=true",)),
        ("\n  name: adam\n  betas: 3", ("bad.yaml:5: optimizer.betas: must be",)),
        ('\n  name: sgd\n  momentum: "x"', ("bad.yaml:5: optimizer.momentum: must be a number",)),
        ("{name: sgd, momentum: .nan}", ("bad.yaml:3: optimizer.momentum: must be a finite",)),
    ],
)
def test_an_optimizer_torch_refuses_names_the_file_field_and_argument(
    sessions: Path, tmp_path: Path, optimizer: str, fragments: tuple[str, ...]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        f"version: 1\ntask: lesson\noptimizer: {optimizer}\n"
        "segments:\n  - {epochs: 1, lr: 0.03}\n"
    )
    result = lrconsole("--sessions-dir", str(sessions), "run", "new", "--schedule", str(bad))
    line = one_line_error(result, *fragments)
    assert str(bad) in line
    assert not (sessions / "new").exists()


def test_detach_with_a_refused_optimizer_starts_no_runner(sessions: Path, tmp_path: Path) -> None:
    bad = write_schedule(tmp_path / "bad.yaml", [(1, 0.03)], optimizer="{name: sgd, momentum: -3}")
    result = lrconsole(
        "--sessions-dir", str(sessions), "run", "new", "--schedule", str(bad), "--detach"
    )
    one_line_error(result, f"{bad}: optimizer: sgd rejects momentum=-3")
    assert not (sessions / "new").exists()  # no folder, no .runner-schedule.yaml, no runner


def test_build_optimizer_blames_the_argument_not_its_neighbours() -> None:
    import torch

    from lrconsole.core.plan.segment import OptimizerError, OptimizerSpec
    from lrconsole.core.tasks.optim import build_optimizer, check_optimizer

    params = [torch.zeros(1, requires_grad=True)]
    spec = OptimizerSpec("sgd", {"nesterov": True, "momentum": 0.9, "weight_decay": -1})
    with pytest.raises(OptimizerError, match=r"^optimizer: sgd rejects weight_decay=-1: "):
        build_optimizer(spec, params, 0.1)
    with pytest.raises(OptimizerError, match=r"^plan\.yaml: optimizer: rmsprop rejects alpha=-1"):
        check_optimizer(OptimizerSpec("rmsprop", {"alpha": -1}), "plan.yaml")
    check_optimizer(OptimizerSpec("adamw", {"betas": [0.8, 0.99], "amsgrad": True}))


# -- 2. export ------------------------------------------------------------------------
def test_export_to_places_it_cannot_write_is_one_line_and_overwrites_nothing(
    trained: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "keep.txt").write_text("keep")
    blocker = tmp_path / "my.yaml"
    blocker.write_text("mine\n")
    before = files_in(tmp_path)
    cases = [
        (str(folder), (f"{folder}: is a folder",)),
        (f"{blocker}/x.yaml", (f"{blocker}/x.yaml: cannot write", f"{blocker} is a file")),
        ("/proc/x.yaml", ("/proc/x.yaml: cannot write",)),
        ("", ("-o: the output path is empty",)),
    ]
    for output, fragments in cases:
        result = lrconsole("--sessions-dir", str(trained), "export", "base", "-o", output)
        one_line_error(result, *fragments)
        assert result.stdout == ""
    assert files_in(tmp_path) == before  # nothing overwritten, no temp files left


def test_export_dash_writes_standard_output(trained: Path) -> None:
    dash = lrconsole("--sessions-dir", str(trained), "export", "base", "-o", "-")
    assert dash.returncode == 0, dash.stderr
    assert dash.stderr == ""
    plain = lrconsole("--sessions-dir", str(trained), "export", "base")
    assert dash.stdout == plain.stdout
    assert yaml.safe_load(dash.stdout)["segments"] == [
        {"epochs": 2, "lr": 0.03},
        {"epochs": 1, "lr": 0.01},
    ]
    assert not (ROOT / "-").exists()


def test_exported_files_get_the_umask_mode_and_keep_a_replaced_files_mode(
    trained: Path, tmp_path: Path
) -> None:
    def export(path: Path) -> None:
        result = lrconsole(
            "--sessions-dir",
            str(trained),
            "export",
            "base",
            "-o",
            str(path),
            preexec_fn=lambda: os.umask(0o027),
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr.strip() == f"wrote {path} (2 segments)"

    new = tmp_path / "new.yaml"
    export(new)
    assert stat.S_IMODE(new.stat().st_mode) == 0o640  # 0666 & ~0027
    old = tmp_path / "old.yaml"
    old.write_text("old\n")
    old.chmod(0o604)
    export(old)
    assert stat.S_IMODE(old.stat().st_mode) == 0o604
    assert "segments:" in old.read_text()


def test_atomic_write_modes(tmp_path: Path) -> None:
    from lrconsole.core.atomic import atomic_write_text

    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "a")
        assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
        atomic_write_text(tmp_path / "private.txt", "p", mode=0o600)
        assert stat.S_IMODE((tmp_path / "private.txt").stat().st_mode) == 0o600
        (tmp_path / "a.txt").chmod(0o664)  # wider than the umask allows: kept all the same
        atomic_write_text(tmp_path / "a.txt", "b")
        assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o664
        assert (tmp_path / "a.txt").read_text() == "b"
    finally:
        os.umask(umask)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "private.txt"]


# -- 3. a closed standard output --------------------------------------------------------
@pytest.mark.parametrize("command", [["show", "base"], ["sessions"], ["export", "base"]])
def test_a_closed_stdout_ends_quietly(trained: Path, command: list[str]) -> None:
    read, write = os.pipe()
    os.close(read)  # like `| head -1` once head has gone: every write fails with EPIPE
    try:
        result = subprocess.run(
            [sys.executable, "-m", "lrconsole", "--sessions-dir", str(trained), *command],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write)
    assert result.returncode == 1
    assert result.stderr == ""


def test_preview_into_a_closed_stdout_ends_quietly(tmp_path: Path) -> None:
    plan = write_schedule(tmp_path / "p.yaml", [(2, 0.03), (1, 0.01)])
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "lrconsole", "preview", str(plan)],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write)
    assert (result.returncode, result.stderr) == (1, "")


# -- 4. argument errors -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["run", "s", "--seed", "abc"], ("argument --seed:", "'abc'", "see lrconsole run --help")),
        (["run", "s", "--seed", "-1"], ("argument --seed:", ">= 0")),
        (["run", "s", "--nproc", "0"], ("argument --nproc:", ">= 1", "got '0'")),
        (["run", "s", "--checkpoint-every", "-1"], ("argument --checkpoint-every:", ">= 0")),
        (["run", "s", "--checkpoint-every", "nan"], ("argument --checkpoint-every:",)),
        (["preview", "p.yaml", "--steps-per-epoch", "0"], ("argument --steps-per-epoch:", ">= 1")),
        (["lr-find", "s", "--steps", "1"], ("steps must be", "(see lrconsole lr-find --help)")),
        (["lr-find", "s", "--steps", "x"], ("argument --steps: invalid int value: 'x'",)),
        (["lr-find", "s", "--start-lr", "0"], ("lr_find.start_lr: must be > 0",)),
        (["lr-find", "s", "--end-lr=-inf"], ("lr_find.end_lr", "finite")),
        (["lr-find", "s", "--end-lr", "100"], ("lr_find.end_lr", "the limit is 10")),
        (["lr-find", "s", "--start-lr", "1", "--end-lr", "0.1"], ("end_lr must be above",)),
        (["rollback", "s", "--epoch", "-2"], ("argument --epoch:", ">= 0")),
        (["show"], ("required: session", "(see lrconsole show --help)")),
        (["frobnicate"], ("invalid choice", "(see lrconsole --help)")),
        (["export", "s", "--bogus"], ("unrecognized arguments: --bogus",)),
    ],
)
def test_argument_errors_are_one_line(
    sessions: Path, args: list[str], fragments: tuple[str, ...]
) -> None:
    result = lrconsole("--sessions-dir", str(sessions), *args)
    line = one_line_error(result, *fragments)
    assert line.endswith("--help)"), line
    assert result.stdout == ""


def test_sessions_dir_that_is_a_file(tmp_path: Path) -> None:
    file = tmp_path / "sessions.txt"
    file.write_text("not a folder\n")
    for args in (["sessions"], ["run", "x", "--schedule", "p.yaml"], ["show", "x"]):
        result = lrconsole("--sessions-dir", str(file), *args)
        one_line_error(result, f"--sessions-dir: {file} is a file, not a folder")
    result = lrconsole("sessions", cwd=tmp_path)  # the default ./sessions is fine when absent
    assert result.returncode == 0, result.stderr
    (tmp_path / "sessions").write_text("")
    one_line_error(lrconsole("sessions", cwd=tmp_path), "sessions (the default) is a file")
    assert file.read_text() == "not a folder\n"


def test_lr_find_options_have_help() -> None:
    result = lrconsole("lr-find", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for option, words in [
        ("--start-lr LR", "first LR"),
        ("--end-lr LR", "last LR"),
        ("--steps N", "batches"),
    ]:
        assert option in text and words in text, text


# -- 5. names, numbering and epochs -------------------------------------------------------
def test_sessions_and_show_use_the_folder_name_and_number_segments_from_1(
    trained: Path, tmp_path: Path
) -> None:
    sessions = tmp_path / "sessions"
    shutil.copytree(trained / "base", sessions / "base")
    shutil.copytree(trained / "base", sessions / "copy")
    listing = lrconsole("--sessions-dir", str(sessions), "sessions").stdout.splitlines()
    assert [line.split()[0] for line in listing] == ["NAME", "base", "copy"]
    show = lrconsole("--sessions-dir", str(sessions), "show", "copy")
    assert show.returncode == 0, show.stderr
    lines = show.stdout.splitlines()
    assert lines[0].startswith("session copy ")
    header = next(i for i, line in enumerate(lines) if line.startswith("#  EPOCHS"))
    rows = [row.split()[:2] for row in lines[header + 1 : header + 3]]
    assert rows == [["1", "1-2"], ["2", "3"]]
    checkpoints = sorted((sessions / "copy" / "checkpoints").glob("*.pt"))
    for extra in checkpoints[1:]:
        extra.unlink()
    show = lrconsole("--sessions-dir", str(sessions), "show", "copy").stdout
    disk = next(line for line in show.splitlines() if line.startswith("disk use"))
    assert disk.endswith("(1 checkpoint)"), show


def test_preview_counts_epochs_from_1_like_its_x_axis(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "segments:\n  - {epochs: 2, lr: 0.03}\n  - {steps: 7, lr: 0.02}\n"
        "  - {epochs: 1, lr: 0.01}\n"
    )
    result = lrconsole("preview", str(plan), "--steps-per-epoch", "14")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-4:] == [
        "  1: from epoch 1: 2 epochs @ 0.03",
        "  2: from epoch 3: 7 steps @ 0.02",
        "  3: from epoch 3, batch 8: 1 epoch @ 0.01",
        "3.5 epochs, 49 steps",
    ]
    axis = lines[-5].split()
    assert axis[0] == "1" and axis[1] == "epoch"  # the x axis starts at epoch 1 too
    # The chart's marks sit where the listing says segments 2 and 3 start: the 0.03 dots
    # (top row) lie left of the first, the 0.01 dots (bottom row) from the second on.
    top, bottom = lines[0], lines[13]
    marks = [i for i, c in enumerate(top) if c == "│"]
    assert len(marks) == 2
    assert max(i for i, c in enumerate(top) if c == "•") < marks[0]
    assert min(i for i, c in enumerate(bottom) if c == "•") >= marks[1]


# -- 6. the plain PyTorch example ---------------------------------------------------------
def test_plain_pytorch_example_help_and_default_path(tmp_path: Path) -> None:
    # A copy of the script beside a 1-epoch lesson_15_1.yaml, run from another folder:
    # the default schedule is the one beside the script, not ./examples/...
    beside = tmp_path / "examples"
    beside.mkdir()
    script = shutil.copy(EXAMPLES / "plain_pytorch.py", beside)
    write_schedule(beside / "lesson_15_1.yaml", [(1, 0.03)])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script), *args], capture_output=True, text=True, cwd=elsewhere
        )

    helped = run("--help")
    assert helped.returncode == 0, helped.stderr
    assert "Replay an exported lrconsole schedule" in helped.stdout
    missing = run("nope.yaml")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "nope.yaml: no such file" in missing.stderr
    default = run()
    assert default.returncode == 0, default.stderr
    assert default.stdout.splitlines()[0] == "epoch,lr,train_loss,test_loss"
    assert len(default.stdout.splitlines()) == 2


def test_plain_pytorch_example_builds_the_optimizer_the_schedule_names(tmp_path: Path) -> None:
    sessions = tmp_path / "sessions"
    plan = tmp_path / "adam.yaml"
    plan.write_text(
        "task: lesson\noptimizer: {name: adam, betas: [0.8, 0.99]}\n"
        "segments:\n  - {epochs: 1, lr: 0.01}\n  - {epochs: 1, lr: 0.003}\n"
    )
    ran = lrconsole("--sessions-dir", str(sessions), "run", "adam", "--schedule", str(plan))
    assert ran.returncode == 0, ran.stderr
    out = tmp_path / "path.yaml"
    exported = lrconsole("--sessions-dir", str(sessions), "export", "adam", "-o", str(out))
    assert exported.returncode == 0, exported.stderr
    replay = subprocess.run(
        [sys.executable, str(EXAMPLES / "plain_pytorch.py"), str(out)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()[1:]
    session = metric_rows(sessions / "adam")[1:]
    assert [r.split(",") for r in replay] == [[r[0], r[3], r[4], r[5]] for r in session]
