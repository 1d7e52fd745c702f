"""The paper's training commands as its README gives them, run from inside DiffBIR/, and config paths
relative to the repository from any working directory (real processes; trainers/cli.py).

A config that leaves a data path ``???`` or names one that does not exist gets one line naming the
``key=value`` argument that gives it.
"""

from __future__ import annotations

import sys

import pytest
import torch

from proc_helpers import REPO_ROOT, run_checked, run_process

DIFFBIR = REPO_ROOT / "DiffBIR"
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch"]  # what the `accelerate launch` command runs
TINY = "configs/train/tiny"


def one_error_line(proc, script: str) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith(f"{script}: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.usefixtures("faces_hq_dir")
def test_dblm_training_from_inside_diffbir(tmp_path):
    """``cd DiffBIR && accelerate launch train_SDE.py --config configs/train/...``: the config, its data
    lists, its degradation and (TM) its warm-start weights are all given relative to the repository."""
    sde = tmp_path / "sde"
    run_checked(
        [
            *ACCELERATE,
            "train_SDE.py",
            "--config",
            f"{TINY}/train_SDE_tiny.yaml",
            "--save_dir",
            str(sde),
            "train.iterations=1",
        ],
        cwd=DIFFBIR,
    )
    assert sorted(p.name for p in (sde / "checkpoints").iterdir()) == ["ckpt_0000001.pth"]
    assert torch.load(sde / "ema_final.pth", weights_only=True)
    tm = tmp_path / "tm"
    run_checked(
        [
            sys.executable,
            "train_DBLM.py",
            "--config",
            f"{TINY}/train_DBLM_TM_tiny.yaml",
            "--save_dir",
            str(tm),
            "train.iterations=1",
        ],
        cwd=DIFFBIR,
    )
    assert (tm / "ema_final.pth").is_file()


def test_the_papers_config_names_the_missing_data_path():
    """The paper's command verbatim: its config leaves data.train.source to the user."""
    proc = run_process([*ACCELERATE, "train_SDE.py", "--config", "configs/train/train_SDE.yaml"], cwd=DIFFBIR)
    assert proc.returncode != 0
    line = one_error_line(proc, "train_SDE.py")
    assert line.endswith(
        "train_SDE.yaml: missing data.train.source: give it as data.train.source=FOLDER "
        "(a key=value argument of the command)"
    ), line
    proc = run_process(
        [
            sys.executable,
            "train_DBLM.py",
            "--config",
            "configs/train/train_DBLM_TM.yaml",
            "data.train.source=no/such/folder",
        ],
        cwd=DIFFBIR,
    )
    assert proc.returncode == 2
    assert one_error_line(proc, "train_DBLM.py") == (
        "train_DBLM.py: error: data.train.source: file list or image folder not found: no/such/folder; "
        "give it as data.train.source=FOLDER (a key=value argument of the command)"
    )


@pytest.mark.usefixtures("faces_hq_dir")
def test_main_finds_a_repository_config_from_another_folder(tmp_path):
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    proc = run_checked(
        [
            sys.executable,
            str(REPO_ROOT / "main.py"),
            "--cfg_path",
            "configs/training/tiny/swinir_tiny.yaml",
            "--save_dir",
            "run",
            "train.iterations=2",
            "train.val_freq=1",
        ],
        cwd=cwd,
    )
    assert (cwd / "run" / "ckpt_0000002.pth").is_file()
    # a captured log holds the printed lines only: no progress bar, no blank line around them
    assert "[val] step 1:" in proc.stdout and "train:" not in proc.stderr
    assert all(line.strip() for line in (proc.stdout + proc.stderr).splitlines())


def test_main_names_the_override_of_a_missing_key(tmp_path):
    config = (REPO_ROOT / "configs/training/tiny/swinir_tiny.yaml").read_text()
    source = "source: ../shared/data/faces_hq/celeba128_val.txt, resolution: 16, flip: true"
    assert source in config
    missing = tmp_path / "missing.yaml"
    missing.write_text(config.replace(source, "source: '???', resolution: 16, flip: true"))
    proc = run_process([sys.executable, "main.py", "--cfg_path", str(missing), "--save_dir", str(tmp_path / "run")])
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [one_error_line(proc, "main.py")]
    assert proc.stderr.strip() == (
        f"main.py: error: {missing}: missing data.train.source: give it as "
        "data.train.source=FOLDER (a key=value argument of the command)"
    )
    assert not (tmp_path / "run").exists()
