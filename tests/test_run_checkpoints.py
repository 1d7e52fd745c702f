"""utils/run_checkpoints.py: naming, latest complete checkpoint, rotation, atomic write, --resume."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.run_checkpoints import (CheckpointSeries, ResumeError, accelerate_checkpoints,
                                   torchrun_checkpoints)


def make_files(series: CheckpointSeries, steps) -> None:
    for step in steps:
        path = series.path(step)
        if series.directories:
            path.mkdir(parents=True)
            (path / "model.safetensors").write_bytes(b"x")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")


def test_names_are_those_the_launchers_have_always_written(tmp_path):
    assert torchrun_checkpoints(tmp_path).path(2) == tmp_path / "ckpt_0000002.pth"
    assert accelerate_checkpoints(tmp_path).path(4) == tmp_path / "checkpoints" / "step_0000004"
    assert torchrun_checkpoints(tmp_path).name(12_345_678) == "ckpt_12345678.pth"


@given(step=st.integers(min_value=0, max_value=10**12))
def test_name_round_trip(step):
    for series in (torchrun_checkpoints("run"), accelerate_checkpoints("run")):
        assert series.parse_step(series.name(step)) == step


@given(name=st.text(max_size=20) | st.from_regex(r"\Ackpt_[0-9]{0,9}\.pth(\.partial)?\Z"))
def test_parse_accepts_exactly_the_names_it_writes(name):
    series = torchrun_checkpoints("run")
    step = series.parse_step(name)
    assert step is None or series.name(step) == name


@pytest.mark.parametrize("name", ["ckpt_12.pth", "ckpt_0000012.pth.partial", ".ckpt_0000012.pth.ab.tmp",
                                  "ckpt_-000012.pth", "ckpt_00000012.pth", "ckpt_.pth", "ckpt_0000012.pt",
                                  "xckpt_0000012.pth", "ckpt_000001٢.pth", "config.yaml"])
def test_parse_rejects_other_names(name):
    assert torchrun_checkpoints("run").parse_step(name) is None


def test_negative_step_has_no_name():
    with pytest.raises(ValueError, match="must be >= 0"):
        torchrun_checkpoints("run").name(-1)


def test_latest_ignores_temporary_incomplete_and_unrelated_entries(tmp_path):
    files = torchrun_checkpoints(tmp_path)
    assert files.latest() is None and files.steps() == []  # nothing yet (root may not even exist)
    make_files(files, [3, 20, 100])
    (tmp_path / "ckpt_0000900.pth.partial").write_bytes(b"half")
    (tmp_path / ".ckpt_0000800.pth.x1.tmp").write_bytes(b"half")
    (tmp_path / "ckpt_0000700.pth").mkdir()  # a directory is not a complete file checkpoint
    (tmp_path / "ckpt_999.pth").write_bytes(b"unrelated")
    (tmp_path / "config.yaml").write_text("a: 1\n")
    assert files.steps() == [3, 20, 100]
    assert files.latest() == tmp_path / "ckpt_0000100.pth"

    dirs = accelerate_checkpoints(tmp_path)
    make_files(dirs, [2, 10])
    (dirs.root / "step_0000050.partial").mkdir()
    (dirs.root / "step_0000060").write_bytes(b"a file is not a save_state directory")
    (dirs.root / "step_70").mkdir()
    assert dirs.steps() == [2, 10]
    assert dirs.latest() == tmp_path / "checkpoints" / "step_0000010"


@settings(max_examples=40, deadline=None)
@given(steps=st.sets(st.integers(min_value=0, max_value=10**8), max_size=12), keep=st.integers(0, 15),
       directories=st.booleans())
def test_rotation_keeps_exactly_the_newest(steps, keep, directories):
    with tempfile.TemporaryDirectory() as root:
        series = accelerate_checkpoints(root) if directories else torchrun_checkpoints(root)
        make_files(series, steps)
        other = Path(root) / "notes.txt"
        other.write_text("kept")
        removed = series.rotate(keep)
        wanted = sorted(steps) if keep == 0 else sorted(steps)[-keep:]
        assert series.steps() == wanted
        assert sorted(series.parse_step(p.name) for p in removed) == sorted(set(steps) - set(wanted))
        assert not any(p.exists() for p in removed) and other.read_text() == "kept"


@pytest.mark.parametrize("directories", [False, True])
def test_write_is_atomic(tmp_path, directories):
    series = accelerate_checkpoints(tmp_path) if directories else torchrun_checkpoints(tmp_path)

    def content_file(path: Path) -> Path:
        return path / "state.bin" if directories else path

    def writer(content: bytes):
        def write(path: Path) -> None:
            if directories:
                path.mkdir()
            content_file(path).write_bytes(content)
        return write

    def interrupted(path: Path) -> None:
        writer(b"half")(path)
        raise KeyboardInterrupt("killed while writing")

    with pytest.raises(KeyboardInterrupt):
        series.write(5, interrupted)
    assert series.steps() == [] and list(series.root.iterdir()) == []  # no partial entry left

    final = series.write(5, writer(b"one"))
    assert final == series.path(5) and series.steps() == [5]
    with pytest.raises(KeyboardInterrupt):
        series.write(5, interrupted)
    assert content_file(final).read_bytes() == b"one"  # a failed rewrite keeps the complete checkpoint
    assert sorted(p.name for p in series.root.iterdir()) == [series.name(5)]

    writer(b"stale")(series.temporary_path(5))  # left by a crash
    series.write(5, writer(b"two"))  # the stale temporary entry is replaced, the step rewritten
    assert content_file(final).read_bytes() == b"two"
    assert sorted(p.name for p in series.root.iterdir()) == [series.name(5)]


def test_resume_resolution(tmp_path):
    files = torchrun_checkpoints(tmp_path / "run")
    assert files.resolve_resume("auto") is None  # no checkpoint yet: start afresh
    make_files(files, [1, 2])
    assert files.resolve_resume("auto") == files.path(2)
    assert files.resolve_resume("none") is None
    assert files.resolve_resume(str(files.path(1))) == files.path(1)
    for bad in (str(tmp_path / "missing.pth"), str(tmp_path / "run"), ""):
        with pytest.raises(ResumeError) as err:
            files.resolve_resume(bad)
        assert err.value.resume == bad and "checkpoint file" in str(err.value)

    dirs = accelerate_checkpoints(tmp_path / "acc")
    make_files(dirs, [7])
    assert dirs.resolve_resume("auto") == dirs.path(7)
    assert dirs.resolve_resume(str(dirs.path(7))) == dirs.path(7)
    with pytest.raises(ResumeError, match="no checkpoint directory there"):
        dirs.resolve_resume(str(files.path(1)))  # a file where a directory is expected


def test_each_launcher_reports_a_bad_resume_in_its_own_words(tmp_path):
    """DiffBIR/training.py raises TrainingError, trainers/base.py CheckpointError, as before the move."""
    import torch

    from DiffBIR.training import TrainingError, resolve_resume
    from trainers.restorer import TrainerRestorer
    from utils.checkpoint import CheckpointError
    from utils.config import load_config
    from utils.distributed import DistInfo

    missing = tmp_path / "missing"
    with pytest.raises(TrainingError, match=rf"^--resume {missing}: not a checkpoint directory$"):
        resolve_resume(accelerate_checkpoints(tmp_path), str(missing))

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs/training/tiny/swinir_tiny.yaml",
                      TrainerRestorer.config_schema)
    trainer = TrainerRestorer(cfg, tmp_path, resume=str(missing), dist_info=DistInfo(0, 1, 0, torch.device("cpu")))
    with pytest.raises(CheckpointError, match=rf"^--resume: checkpoint not found: {missing}$"):
        trainer._resume_checkpoint()
