"""utils/run_checkpoints.py: naming, latest complete checkpoint, rotation, atomic write, --resume, content."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.run_checkpoints import CheckpointSeries, ResumeError, run_checkpoints


def dblm_checkpoints(save_dir) -> CheckpointSeries:
    """The checkpoints of a train_SDE.py / train_DBLM.py run, in its checkpoints/ subfolder."""
    return run_checkpoints(Path(save_dir) / "checkpoints")


def make_files(series: CheckpointSeries, steps) -> None:
    for step in steps:
        path = series.path(step)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def test_names(tmp_path):
    assert run_checkpoints(tmp_path).path(2) == tmp_path / "ckpt_0000002.pth"
    assert dblm_checkpoints(tmp_path).path(4) == tmp_path / "checkpoints" / "ckpt_0000004.pth"
    assert run_checkpoints(tmp_path).name(12_345_678) == "ckpt_12345678.pth"


@given(step=st.integers(min_value=0, max_value=10**12))
def test_name_round_trip(step):
    series = run_checkpoints("run")
    assert series.parse_step(series.name(step)) == step


@given(name=st.text(max_size=20) | st.from_regex(r"\Ackpt_[0-9]{0,9}\.pth(\.partial)?\Z"))
def test_parse_accepts_exactly_the_names_it_writes(name):
    series = run_checkpoints("run")
    step = series.parse_step(name)
    assert step is None or series.name(step) == name


@pytest.mark.parametrize(
    "name",
    [
        "ckpt_12.pth",
        "ckpt_0000012.pth.partial",
        ".ckpt_0000012.pth.ab.tmp",
        "ckpt_-000012.pth",
        "ckpt_00000012.pth",
        "ckpt_.pth",
        "ckpt_0000012.pt",
        "xckpt_0000012.pth",
        "ckpt_000001٢.pth",
        "config.yaml",
    ],
)
def test_parse_rejects_other_names(name):
    assert run_checkpoints("run").parse_step(name) is None


def test_negative_step_has_no_name():
    with pytest.raises(ValueError, match="must be >= 0"):
        run_checkpoints("run").name(-1)


def test_latest_ignores_temporary_incomplete_and_unrelated_entries(tmp_path):
    files = run_checkpoints(tmp_path)
    assert files.latest() is None and files.steps() == []  # nothing yet (root may not even exist)
    make_files(files, [3, 20, 100])
    (tmp_path / "ckpt_0000900.pth.partial").write_bytes(b"half")
    (tmp_path / ".ckpt_0000800.pth.x1.tmp").write_bytes(b"half")
    (tmp_path / "ckpt_0000700.pth").mkdir()  # a directory is not a complete file checkpoint
    (tmp_path / "ckpt_999.pth").write_bytes(b"unrelated")
    (tmp_path / "config.yaml").write_text("a: 1\n")
    assert files.steps() == [3, 20, 100]
    assert files.latest() == tmp_path / "ckpt_0000100.pth"


@settings(max_examples=40, deadline=None)
@given(steps=st.sets(st.integers(min_value=0, max_value=10**8), max_size=12), keep=st.integers(0, 15))
def test_rotation_keeps_exactly_the_newest(steps, keep):
    with tempfile.TemporaryDirectory() as root:
        series = run_checkpoints(root)
        make_files(series, steps)
        other = Path(root) / "notes.txt"
        other.write_text("kept")
        removed = series.rotate(keep)
        wanted = sorted(steps) if keep == 0 else sorted(steps)[-keep:]
        assert series.steps() == wanted
        assert sorted(series.parse_step(p.name) for p in removed) == sorted(set(steps) - set(wanted))
        assert not any(p.exists() for p in removed) and other.read_text() == "kept"


def test_write_is_atomic(tmp_path):
    series = run_checkpoints(tmp_path)

    def writer(content: bytes):
        def write(path: Path) -> None:
            path.write_bytes(content)

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
    assert final.read_bytes() == b"one"  # a failed rewrite keeps the complete checkpoint
    assert sorted(p.name for p in series.root.iterdir()) == [series.name(5)]

    writer(b"stale")(series.temporary_path(5))  # left by a crash
    series.write(5, writer(b"two"))  # the stale temporary entry is replaced, the step rewritten
    assert final.read_bytes() == b"two"
    assert sorted(p.name for p in series.root.iterdir()) == [series.name(5)]


def test_resume_resolution(tmp_path):
    files = run_checkpoints(tmp_path / "run")
    make_files(files, [1, 2])
    assert files.resolve_resume("none") is None
    assert files.resolve_resume(str(files.path(1))) == files.path(1)
    for bad in (str(tmp_path / "missing.pth"), str(tmp_path / "run"), ""):
        with pytest.raises(ResumeError) as err:
            files.resolve_resume(bad)
        assert err.value.resume == bad and "checkpoint file" in str(err.value)
    with pytest.raises(ValueError, match="newest_readable"):
        files.resolve_resume("auto")


def test_a_bad_resume_is_one_checkpoint_error(tmp_path):
    import torch

    from trainers.restorer import TrainerRestorer
    from utils.checkpoint import CheckpointError
    from utils.config import load_config
    from utils.distributed import DistInfo

    missing = tmp_path / "missing"
    cfg = load_config(
        Path(__file__).resolve().parents[1] / "configs/training/tiny/swinir_tiny.yaml", TrainerRestorer.config_schema
    )
    trainer = TrainerRestorer(cfg, tmp_path, resume=str(missing), dist_info=DistInfo(0, 1, 0, torch.device("cpu")))
    with pytest.raises(CheckpointError, match=rf"^--resume {missing}: no checkpoint file there$"):
        trainer.train()


def test_content_round_trip_restores_weights_optimiser_and_random_streams(tmp_path):
    """What save_training_state writes, restore_training_state puts back: the next draws of every RNG
    (torch, numpy, python) after the restore equal those right after the save."""
    import random

    import numpy as np
    import torch

    from utils.distributed import DistInfo
    from utils.ema import EMA
    from utils.run_checkpoints import read_training_state, restore_training_state, save_training_state

    def parts(seed):
        torch.manual_seed(seed)
        model = torch.nn.Linear(3, 2)
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
        model(torch.randn(4, 3)).square().mean().backward()
        optimizer.step()
        return dict(
            model=model, ema=EMA(model, 0.5), optimizer=optimizer, scaler=torch.amp.GradScaler("cpu", enabled=False)
        )

    def draws():
        return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]

    dist = DistInfo(0, 1, 0, torch.device("cpu"))
    series = run_checkpoints(tmp_path)
    saved = parts(0)
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    save_training_state(series, 3, keep=0, dist=dist, config={"a": 1}, **saved)
    expected = draws()
    fresh = parts(1)
    ckpt = read_training_state(series.path(3))
    assert ckpt["step"] == 3 and ckpt["config"] == {"a": 1}
    assert restore_training_state(ckpt, dist, **fresh)
    assert draws() == expected
    for name in ("model", "ema"):
        for k, v in saved[name].state_dict().items():
            assert torch.equal(fresh[name].state_dict()[k], v)
    assert torch.equal(
        fresh["optimizer"].state_dict()["state"][0]["exp_avg"], saved["optimizer"].state_dict()["state"][0]["exp_avg"]
    )
    # another number of processes: the weights load, the RNG streams are left to the loop's reseeding
    ckpt["rng"] = ckpt["rng"] * 2
    assert not restore_training_state(ckpt, dist, **parts(2))


def test_newest_readable_sets_unreadable_ones_aside_and_supersede_keeps_later_ones(tmp_path):
    """--resume auto passes over unreadable checkpoints (renamed .corrupt, never overwriting an earlier
    .corrupt); --resume PATH renames the later steps .superseded; nothing is deleted."""
    from utils.checkpoint import CheckpointError

    series = run_checkpoints(tmp_path)
    make_files(series, [2, 4, 6, 8])
    for step in (6, 8):
        series.path(step).write_bytes(b"bad")
    (tmp_path / "ckpt_0000008.pth.corrupt").write_bytes(b"earlier")

    def read(path: Path) -> Path:
        if path.read_bytes() == b"bad":
            raise CheckpointError(f"{path}: cannot read checkpoint")
        return path

    notes = []
    assert series.newest_readable(read, notes.append) == series.path(4)
    assert [n.split(";")[0] for n in notes] == [f"{series.path(s)}: cannot read checkpoint" for s in (8, 6)]
    assert "renamed to ckpt_0000008.pth.corrupt.1" in notes[0]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.suffix != ".pth"} == {
        "ckpt_0000008.pth.corrupt": b"earlier",
        "ckpt_0000008.pth.corrupt.1": b"bad",
        "ckpt_0000006.pth.corrupt": b"bad",
    }
    series.supersede_after(2, notes.append)
    assert series.steps() == [2] and (tmp_path / "ckpt_0000004.pth.superseded").read_bytes() == b"x"
    assert "step 4 is after the resumed step 2" in notes[-1]
    assert series.newest_readable(read, notes.append) == series.path(2)
    series.path(2).write_bytes(b"bad")
    assert series.newest_readable(read, notes.append) is None and series.steps() == []
