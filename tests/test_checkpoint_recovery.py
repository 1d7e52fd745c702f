"""Recovery from a bad checkpoint, in real main.py processes (utils/run_checkpoints.py: resume).

A truncated newest checkpoint: ``--resume auto`` names it in one line, keeps it as ``<name>.corrupt`` and
continues from the newest readable one (two ranks under torchrun).
An explicit ``--resume PATH`` is honoured (and resumes exactly), the later checkpoints kept as
``<name>.superseded``;
``--resume none`` into the folder is still refused.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from proc_helpers import run_checked, run_process
from utils.run_checkpoints import run_checkpoints

CONFIG = "configs/training/tiny/swinir_tiny.yaml"
FAST = ["train.val_freq=100", "train.save_freq=2", "train.log_sample_paths=false"]


def train(save_dir: Path, iterations: int, *options: str, nproc: int = 1, check: bool = True):
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        if nproc > 1
        else [sys.executable]
    )
    cmd = [
        *launcher,
        "main.py",
        "--cfg_path",
        CONFIG,
        "--save_dir",
        str(save_dir),
        *options,
        *FAST,
        f"train.iterations={iterations}",
    ]
    return run_checked(cmd) if check else run_process(cmd)


def model_weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs"


@pytest.mark.usefixtures("faces_hq_dir")
def test_truncated_newest_checkpoint_explicit_resume_and_refusal(tmp_path):
    run = tmp_path / "run"
    series = run_checkpoints(run)
    train(run, 4)
    original_4 = model_weights(series.path(4))
    full = series.path(4).read_bytes()
    series.path(4).write_bytes(full[: len(full) // 2])  # a crash of the disk, not of the writer
    truncated = series.path(4).read_bytes()

    # --resume auto (the default), two ranks: one line, the file kept as .corrupt, resumed from step 2
    proc = train(run, 6, nproc=2)
    lines = [line for line in proc.stdout.splitlines() if "ckpt_0000004.pth" in line]
    assert len(lines) == 1 and "cannot read checkpoint" in lines[0], proc.stdout
    assert "renamed to ckpt_0000004.pth.corrupt" in lines[0]
    assert f"resuming from {series.path(2)} at step 2" in proc.stdout
    assert (run / "ckpt_0000004.pth.corrupt").read_bytes() == truncated
    assert series.steps() == [2, 4, 6]

    # an explicit --resume PATH is honoured; the later steps are kept aside, not mixed with the new ones
    later = {step: series.path(step).read_bytes() for step in (4, 6)}
    proc = train(run, 4, "--resume", str(series.path(2)))
    assert f"resuming from {series.path(2)} at step 2" in proc.stdout
    for step, content in later.items():
        assert (run / f"{series.name(step)}.superseded").read_bytes() == content
    assert series.steps() == [2, 4]
    assert_same_weights(model_weights(series.path(4)), original_4)  # step 2 -> 4 on one rank, as the first run

    # --resume none still refuses the folder: it holds later readable steps and no file was named
    before = sorted(p.name for p in run.iterdir())
    proc = train(run, 2, "--resume", "none", check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "steps [2, 4]" in proc.stderr and "--resume PATH" in proc.stderr
    assert sorted(p.name for p in run.iterdir()) == before


def test_an_explicit_unreadable_checkpoint_is_one_error(tmp_path, faces_hq_dir):
    bad = tmp_path / "ckpt_0000002.pth"
    bad.write_bytes(b"not a checkpoint")
    proc = train(tmp_path / "run", 4, "--resume", str(bad), check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [proc.stderr.strip()], proc.stderr
    assert f"{bad}: cannot read checkpoint" in proc.stderr and bad.read_bytes() == b"not a checkpoint"
