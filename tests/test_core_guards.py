"""The divergence guard across restarts, rollback guards, damaged checkpoints and manifests."""

from __future__ import annotations

import io
import math
import os
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from lrconsole.core.plan.schedule import Schedule
from lrconsole.core.plan.segment import OptimizerSpec, Segment, TaskSpec
from lrconsole.core.session.discover import list_sessions
from lrconsole.core.session.layout import checkpoint_name
from lrconsole.core.session.manifest import Manifest, SessionError
from lrconsole.core.session.store import brief, load_checkpoint
from lrconsole.core.train import events as ev
from lrconsole.core.train.trainer import Trainer
from tests.conftest import lrconsole, metric_rows, write_schedule

SPE = 14  # the lesson task's batches per epoch
# The lesson at LR 5 after 5 epochs at 0.03: a batch loss spikes early in epoch 6.
HOT = [Segment(0.03, epochs=5), Segment(5.0, epochs=3)]


def open_trainer(folder: Path, segments: list[Segment], **kw: object) -> Trainer:
    return Trainer.open(folder, schedule=Schedule(segments), tensorboard=False, **kw)  # type: ignore[arg-type]


def one_line_error(result: object, *fragments: str) -> str:
    rc, err = result.returncode, result.stderr  # type: ignore[attr-defined]
    assert rc == 2, (rc, err)
    line = err.strip()
    assert "Traceback" not in err and "\n" not in line, err
    assert line.startswith("lrconsole: error: "), line
    for fragment in fragments:
        assert fragment in line, line
    return line


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def diverged_step(stderr: str) -> int:
    found = re.search(r"diverged at .*\(step (\d+)\)|diverged at step (\d+)", stderr)
    assert found, stderr
    return int(found.group(1) or found.group(2))


@pytest.fixture
def four_epochs(tmp_path: Path) -> Path:
    """A stopped session of 2 + 2 epochs: checkpoints at epochs 2 and 4."""
    trainer = open_trainer(tmp_path / "s", [Segment(0.03, epochs=2), Segment(0.01, epochs=2)])
    assert trainer.engine.run() == "done"
    trainer.close()
    return tmp_path / "s"


# -- 1. the divergence guard is part of the resumable state ------------------------------
def test_a_restart_and_a_rollback_meet_the_guard_at_the_same_step(
    sessions: Path, tmp_path: Path
) -> None:
    plan = write_schedule(tmp_path / "div.yaml", [(5, 0.03), (3, 5.0)])
    args = ("--sessions-dir", str(sessions), "run", "div", "--schedule", str(plan))
    first = lrconsole(*args)
    assert first.returncode == 1, first.stderr
    step = diverged_step(first.stderr)
    assert 5 * SPE < step < 6 * SPE  # mid-epoch 6: the spike check, not the NaN one
    folder = sessions / "div"
    assert Manifest.read(folder).diverged == {"step": step, "epoch": 6, "lr": 5.0}
    # Resumed from the epoch-5 checkpoint: the guard remembers the loss level.
    again = lrconsole(*args)
    assert again.returncode == 1, again.stderr
    assert diverged_step(again.stderr) == step
    assert [row[0] for row in metric_rows(folder)[1:]] == ["1", "2", "3", "4", "5"]
    # Rolled back to the last good checkpoint: the same decision again.
    back = lrconsole("--sessions-dir", str(sessions), "rollback", "div", "--epoch", "5")
    assert back.returncode == 0, back.stderr
    assert "epochs 6-6" in back.stdout
    branch = Schedule.load(folder / "branches" / "path-0.yaml")
    assert branch.segments[-1].lr == 5.0  # the branch records the LR that diverged
    assert Manifest.read(folder).diverged is None
    third = lrconsole(*args)
    assert third.returncode == 1, third.stderr
    assert diverged_step(third.stderr) == step


def test_the_guard_memory_survives_a_mid_epoch_stop_exactly(tmp_path: Path) -> None:
    def guard_at_epoch_5(trainer: Trainer) -> list[dict[str, object]]:
        seen: list[dict[str, object]] = []

        def keep(event: ev.EpochEnd) -> None:
            if event.global_epoch == 5:
                seen.append(trainer.engine.guard.state_dict())

        trainer.engine.on(ev.EpochEnd, keep)
        return seen

    whole = open_trainer(tmp_path / "whole", HOT)
    errors: list[ev.Error] = []
    whole.engine.on(ev.Error, errors.append)
    reference = guard_at_epoch_5(whole)
    assert whole.engine.run() == "diverged"
    at = whole.engine.diverged_at
    whole.close()
    assert at is not None and 5 * SPE < at[0] < 6 * SPE and at[1] == 6
    assert f"at step {at[0]} (epoch 6, lr 5)" in errors[0].message

    # Stopped mid-epoch 5 (as Ctrl-C does): the checkpoint holds the epoch's running sum.
    cut = open_trainer(tmp_path / "cut", HOT)
    stop_at = 4 * SPE + 9

    def stop(event: ev.BatchEnd) -> None:
        if event.global_step == stop_at:
            cut.engine.request_exit("interrupted")

    cut.engine.on(ev.BatchEnd, stop)
    assert cut.engine.run() == "interrupted"
    cut.close()
    assert Manifest.read(tmp_path / "cut").global_step == stop_at
    state = load_checkpoint(tmp_path / "cut" / checkpoint_name(stop_at))
    assert state["guard"]["epoch_count"] == 9 and len(state["guard"]["recent_means"]) == 3

    resumed = open_trainer(tmp_path / "cut", HOT)
    seen = guard_at_epoch_5(resumed)
    assert resumed.engine.run() == "diverged"
    assert resumed.engine.diverged_at == at
    resumed.close()
    assert seen == reference  # bit for bit: the same floats


def test_a_checkpoint_without_guard_memory_still_loads(four_epochs: Path) -> None:
    path = four_epochs / checkpoint_name(4 * SPE)
    state = torch.load(path, weights_only=True)
    assert state["guard"]["recent_means"]
    del state["guard"]  # as lrconsole wrote checkpoints before the guard was kept
    torch.save(state, path)
    trainer = Trainer.open(four_epochs, tensorboard=False)
    try:
        assert trainer.engine.guard.state_dict() == {
            "recent_means": [],
            "epoch_sum": 0.0,
            "epoch_count": 0,
        }
        assert trainer.engine.guard.limit == math.inf  # relearns the loss level
    finally:
        trainer.close()


def test_nan_evaluation_metrics_count_as_divergence(tmp_path: Path) -> None:
    folder = tmp_path / "n"
    trainer = open_trainer(folder, [Segment(0.03, epochs=5)], checkpoint_interval=0)
    engine = trainer.engine
    honest = engine.evaluate

    def blows_up_in_epoch_3() -> dict[str, float]:
        metrics = honest()
        return {**metrics, "test_loss": math.inf} if engine.global_epoch == 2 else metrics

    engine.evaluate = blows_up_in_epoch_3  # type: ignore[method-assign]
    errors: list[ev.Error] = []
    engine.on(ev.Error, errors.append)
    assert engine.run() == "diverged"
    trainer.close()
    assert len(errors) == 1 and not errors[0].fatal
    assert "test_loss inf" in errors[0].message and "(epoch 3," in errors[0].message
    m = Manifest.read(folder)
    assert (m.global_epoch, m.checkpoint) == (2, checkpoint_name(2 * SPE))  # the last good one
    assert m.diverged == {"step": 3 * SPE, "epoch": 3, "lr": 0.03}
    assert [row[0] for row in metric_rows(folder)[1:]] == ["1", "2"]  # no row for epoch 3
    # Trained on, the next good checkpoint clears the mark.
    trainer = Trainer.open(folder, tensorboard=False)
    assert trainer.engine.run() == "done"
    trainer.close()
    m = Manifest.read(folder)
    assert m.diverged is None and m.global_epoch == 5
    assert [row[0] for row in metric_rows(folder)[1:]] == ["1", "2", "3", "4", "5"]


# -- 2. a rollback to where the session stands is refused ----------------------------------
def test_rollback_to_the_current_epoch_is_refused_and_writes_nothing(
    four_epochs: Path,
) -> None:
    before = snapshot(four_epochs)
    with pytest.raises(SessionError, match="already at epoch 4: nothing to roll back"):
        Trainer.rollback_to(four_epochs, 4)
    after = snapshot(four_epochs)
    assert after.keys() == before.keys()
    assert {k: v for k, v in after.items() if not k.endswith("lock")} == {
        k: v for k, v in before.items() if not k.endswith("lock")
    }
    # Through the CLI (it opens the session, then rolls back): refused the same way.
    result = lrconsole("--sessions-dir", str(four_epochs.parent), "rollback", "s", "--epoch", "4")
    one_line_error(result, "already at epoch 4: nothing to roll back")
    assert not (four_epochs / "branches").exists()
    assert not (four_epochs / "tb" / "path-1").exists()
    m = Manifest.read(four_epochs)
    assert (m.path, m.branches, m.global_epoch) == (0, [], 4)
    # Nor is it offered: not by the CLI's list, not by the runner's (the console's picker).
    listed = lrconsole("--sessions-dir", str(four_epochs.parent), "rollback", "s")
    assert listed.stdout.strip().endswith("epochs: 2"), listed.stdout
    trainer = Trainer.open(four_epochs, tensorboard=False)
    assert trainer.rollback_points() == [2]
    trainer.close()


# -- 3. a corrupt newest checkpoint does not block going back to an older one -------------
def test_rollback_past_a_corrupt_newest_checkpoint(four_epochs: Path, tmp_path: Path) -> None:
    newest = four_epochs / checkpoint_name(4 * SPE)
    garbage = os.urandom(4096)
    newest.write_bytes(garbage)
    # Training from it is still refused, and nothing is written.
    before = snapshot(four_epochs)
    one_line_error(
        lrconsole("--sessions-dir", str(four_epochs.parent), "run", "s"),
        "step-000000056.pt: corrupt or truncated checkpoint",
    )
    assert snapshot(four_epochs) == before
    event = Trainer.rollback_to(four_epochs, 2, tensorboard=False)
    assert (event.global_epoch, event.branch["epochs"]) == (2, 4)
    # It was on the abandoned path: it goes with that path's other checkpoints (the
    # branch's schedule replays them); the rollback never had to read it.
    assert not newest.exists()
    m = Manifest.read(four_epochs)
    assert (m.global_epoch, m.checkpoint, m.path) == (2, checkpoint_name(2 * SPE), 1)
    assert [row[0] for row in metric_rows(four_epochs)[1:]] == ["1", "2"]
    # Training on from epoch 2 gives the numbers of an uninterrupted run.
    trainer = Trainer.open(four_epochs, tensorboard=False)
    trainer.engine.queue([Segment(0.01, epochs=2)])
    assert trainer.engine.run() == "done"
    trainer.close()
    ref = open_trainer(tmp_path / "ref", [Segment(0.03, epochs=2), Segment(0.01, epochs=2)])
    ref.engine.run()
    ref.close()
    assert metric_rows(four_epochs) == metric_rows(tmp_path / "ref")


def test_a_rollback_removes_the_abandoned_paths_checkpoints(tmp_path: Path) -> None:
    folder = tmp_path / "paths"
    trainer = open_trainer(folder, [Segment(0.03, epochs=4)], checkpoint_interval=0.0)
    trainer.engine.run()
    trainer.close()
    epochs = sorted(int(p.stem[5:]) // SPE for p in (folder / "checkpoints").glob("step-*.pt"))
    assert epochs == [2, 3, 4]  # the 3 newest (and the plan's end)
    Trainer.rollback_to(folder, 2, tensorboard=False)
    left = sorted(int(p.stem[5:]) for p in (folder / "checkpoints").glob("step-*.pt"))
    assert left and max(left) == 2 * SPE  # nothing of the old path past the fork
    # The new path trains on with rare checkpoints: the old epoch 3 is never offered.
    trainer = Trainer.open(folder, tensorboard=False, checkpoint_interval=3600.0)
    trainer.engine.queue([Segment(0.001, epochs=2)])
    trainer.engine.run()
    assert 3 not in trainer.rollback_points()
    trainer.close()


# -- 4. damaged checkpoints say what is wrong, in one whole line ---------------------------
def test_checkpoint_damage_is_classified(four_epochs: Path) -> None:
    path = four_epochs / checkpoint_name(4 * SPE)
    good = path.read_bytes()

    def error_for(data: bytes) -> str:
        path.write_bytes(data)
        with pytest.raises(SessionError) as caught:
            load_checkpoint(path)
        message = str(caught.value)
        assert "\n" not in message and message.startswith(str(path))
        return message

    random_bytes = error_for(os.urandom(5000).replace(b"PK", b"pk"))
    assert "corrupt or truncated checkpoint (not a torch zip archive)" in random_bytes
    assert "pickled" not in random_bytes and "PyTorch 2.6" not in random_bytes
    assert "corrupt or truncated checkpoint (the file is empty)" in error_for(b"")
    for cut in (len(good) // 2, len(good) - 10):
        assert "corrupt or truncated checkpoint (the zip archive is damaged" in error_for(
            good[:cut]
        )
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF  # inside the tensor data: torch alone would load it
    assert "Bad CRC-32" in error_for(bytes(flipped))
    # An intact archive whose pickle is garbage: corrupt, not "carries pickled objects".
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, b"\xca" * len(data) if info.filename.endswith("data.pkl") else data)
    garbled = error_for(out.getvalue())
    assert "corrupt or truncated checkpoint" in garbled and "pickled" not in garbled
    # A real archive with a refused global names it.
    state = torch.load(io.BytesIO(good), weights_only=True)
    state["extra"] = Evil()
    payload = io.BytesIO()
    torch.save(state, payload)
    refused = error_for(payload.getvalue())
    assert "refused: the checkpoint carries pickled objects" in refused
    assert re.search(r"\((posix|os|nt)\.system\)$", refused), refused
    # Through the CLI: one line, exit 2.
    path.write_bytes(os.urandom(5000).replace(b"PK", b"pk"))
    line = one_line_error(
        lrconsole("--sessions-dir", str(four_epochs.parent), "run", "s"),
        "corrupt or truncated checkpoint (not a torch zip archive)",
    )
    assert line.endswith(")")


class Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("true",))


def test_brief_never_cuts_a_word() -> None:
    text = "Weights only load failed. In PyTorch 2.6, we changed the default value " * 4
    short = brief(text + "\nsecond line", limit=60)
    assert len(short) <= 60 and short.endswith("...") and "\n" not in short
    assert text.startswith(short[:-3]) and text[len(short) - 3] == " "
    assert brief("short\nsecond") == "short"


# -- 5. a manifest cut at a line boundary is refused ---------------------------------------
def test_a_truncated_manifest_is_refused(four_epochs: Path) -> None:
    manifest = four_epochs / "manifest.yaml"
    text = manifest.read_text()
    cut = text[: text.index("- epochs: 2\n  lr: 0.01")]  # only the first segment is left
    manifest.write_text(cut)
    expected = (
        f"{manifest}: position epoch 4 lies past the segments listed (2 epochs): "
        "truncated or edited by hand?"
    )
    with pytest.raises(SessionError) as caught:
        Manifest.read(four_epochs)
    assert str(caught.value) == expected
    sessions = str(four_epochs.parent)
    for command in (["show", "s"], ["export", "s"], ["run", "s"]):
        one_line_error(lrconsole("--sessions-dir", sessions, *command), "lies past the segments")
    assert [s.state for s in list_sessions(four_epochs.parent)] == ["broken"]
    # Cut right after `segments:`: a null list, refused too.
    manifest.write_text(text[: text.index("segments:\n") + len("segments:\n")])
    with pytest.raises(SessionError, match=r"lies past the segments listed \(0 epochs\)"):
        Manifest.read(four_epochs)
    # The checkpoint named must be the one of the position.
    manifest.write_text(text.replace("step-000000056.pt", "step-000000028.pt"))
    with pytest.raises(SessionError, match="does not match position step 56"):
        Manifest.read(four_epochs)
    manifest.write_text(text + "diverged: {step: soon}\n")
    with pytest.raises(SessionError, match="malformed manifest"):
        Manifest.read(four_epochs)
    manifest.write_text(text)
    assert Manifest.read(four_epochs).global_epoch == 4


def test_manifests_without_segments_stay_valid(tmp_path: Path) -> None:
    # A session that has not trained yet (as the console's tests write one).
    (tmp_path / "fresh").mkdir()
    Manifest(
        name="fresh",
        task=TaskSpec("lesson"),
        seed=0,
        optimizer=OptimizerSpec(),
        steps_per_epoch=SPE,
        metrics=["train_loss", "test_loss"],
        monitor="test_loss",
    ).write(tmp_path / "fresh")
    assert Manifest.read(tmp_path / "fresh").segments == []
    # A hand-written manifest that records no plan at all: `segments: []`.
    (tmp_path / "hand").mkdir()
    (tmp_path / "hand" / "manifest.yaml").write_text(
        "format: 1\nname: p\ntask: {spec: lesson, args: {}}\nsteps_per_epoch: 2\n"
        "metrics: [test_loss]\nposition: {global_epoch: 2, global_step: 4}\nsegments: []\n"
    )
    assert Manifest.read(tmp_path / "hand").global_epoch == 2


# -- 6. sessions are listed under their folder's name -------------------------------------
def test_a_copied_session_is_listed_under_its_folder_name(four_epochs: Path) -> None:
    shutil.copytree(four_epochs, four_epochs.parent / "copy", ignore=shutil.ignore_patterns("lock"))
    listed = list_sessions(four_epochs.parent)
    assert [(s.name, s.dir.name) for s in listed] == [("copy", "copy"), ("s", "s")]
    assert Manifest.read(four_epochs.parent / "copy").name == "s"  # the manifest is untouched


def test_a_best_epoch_past_the_checkpoint_is_recomputed_on_open(four_epochs: Path) -> None:
    # A run killed between an epoch end and its checkpoint can leave the manifest's best
    # ahead of the position: those epochs are trained again, so the best comes from the rest.
    m = Manifest.read(four_epochs)
    kept = m.best
    assert kept is not None and kept["epoch"] <= 4
    m.best = {"metric": m.monitor, "value": -1.0, "epoch": 7}
    m.write(four_epochs)
    trainer = Trainer.open(four_epochs, tensorboard=False)
    trainer.close()
    assert Manifest.read(four_epochs).best == kept
