"""main.py trainers as real processes: torchrun with 2 CPU ranks (gloo), checkpoints, exact resume,
rank-disjoint data, and the one-line exit-2 error for a bad configuration key.

Tiny configs (configs/training/tiny/) on 16 real 16-px faces of celeba128_val, a few steps each.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import main
from proc_helpers import evaluate_process, logged_scalars, paths_by_step, run_checked, torchrun_main
from trainers import cli
from utils.distributed import ShardedInfiniteSampler

REPO_ROOT = Path(__file__).resolve().parents[1]
DIFFUSION_TINY = "configs/training/tiny/diffusion_tiny.yaml"
SWINIR_TINY = "configs/training/tiny/swinir_tiny.yaml"
N_FACES = 16  # data.train.length of the tiny configs
PER_RANK = 2  # train.batch[0] = 4 over 2 ranks


def _data_overrides(faces_hq_dir: Path) -> list[str]:
    val_list = faces_hq_dir / "celeba128_val.txt"
    return [f"data.train.source={val_list}", f"data.val.source={val_list}"]


def _torchrun(cfg: str, save_dir: Path, overrides: list[str]):
    return torchrun_main(cfg, save_dir, *overrides)


def _ckpt(save_dir: Path, step: int) -> dict:
    return torch.load(save_dir / f"ckpt_{step:07d}.pth", map_location="cpu", weights_only=True)


def _assert_first_epoch_disjoint(save_dir: Path, world: int, steps: range) -> None:
    """Within one epoch the ranks' samples are disjoint and together cover each face at most once."""
    seen = [p for r in range(world) for s in steps for p in paths_by_step(save_dir, r)[s]]
    per_rank = [set(p for s in steps for p in paths_by_step(save_dir, r)[s]) for r in range(world)]
    assert all(len(paths_by_step(save_dir, r)[s]) == PER_RANK for r in range(world) for s in steps)
    assert len(seen) == len(set(seen)), "a face was drawn twice within the first epoch"
    assert not per_rank[0] & per_rank[1], "ranks saw the same faces"


@pytest.mark.slow
def test_diffusion_torchrun_checkpoints_resume_and_disjoint_ranks(tmp_path, faces_hq_dir):
    save = tmp_path / "diffusion"
    data = _data_overrides(faces_hq_dir)
    first = _torchrun(DIFFUSION_TINY, save, data + ["train.iterations=3"])
    assert "resuming" not in first.stdout
    assert sorted(p.name for p in save.glob("ckpt_*.pth")) == ["ckpt_0000002.pth", "ckpt_0000003.pth"]
    ckpt = _ckpt(save, 3)
    assert ckpt["step"] == 3 and len(ckpt["rng"]) == 2
    assert set(ckpt) >= {"model", "ema", "optimizer", "scaler", "config"}
    # the two ranks drew different noise: their saved torch RNG states differ
    assert not torch.equal(ckpt["rng"][0]["torch"], ckpt["rng"][1]["torch"])
    # one process scores the EMA weights as the 2-rank run's validation did (same faces, same noise)
    logged = logged_scalars(first.stdout, "val_ema", 3)
    scored = evaluate_process(DIFFUSION_TINY, save / "ckpt_0000003.pth", *data)
    assert scored == pytest.approx(logged, rel=1e-4, abs=1e-6)

    second = _torchrun(DIFFUSION_TINY, save, data + ["train.iterations=4"])
    assert f"resuming from {save / 'ckpt_0000003.pth'} at step 3" in second.stdout
    assert "training finished at step 4" in second.stdout
    assert _ckpt(save, 4)["step"] == 4
    for rank in range(2):
        assert sorted(paths_by_step(save, rank)) == [1, 2, 3, 4]  # step counter continued at 4
    # 16 faces / 2 ranks / 2 per step = 4 steps per epoch: the resumed step 4 completes the epoch
    # exactly where the interrupted data stream stopped, so steps 1-4 cover all 16 faces once
    _assert_first_epoch_disjoint(save, 2, range(1, 5))
    seen = {p for r in range(2) for s in range(1, 5) for p in paths_by_step(save, r)[s]}
    assert len(seen) == N_FACES


@pytest.mark.slow
def test_restorer_torchrun_then_resume_on_one_process(tmp_path, faces_hq_dir):
    save = tmp_path / "swinir"
    data = _data_overrides(faces_hq_dir)
    first = _torchrun(SWINIR_TINY, save, data + ["train.iterations=2"])
    assert "[val] step 2:" in first.stdout and "psnr=" in first.stdout
    assert _ckpt(save, 2)["step"] == 2
    _assert_first_epoch_disjoint(save, 2, range(1, 3))
    # resume with another world size (plain python, 1 process): same step counter, reseeded RNG
    second = run_checked(
        [sys.executable, "main.py", "--cfg_path", SWINIR_TINY, "--save_dir", str(save), *data, "train.iterations=3"]
    )
    assert "at step 2" in second.stdout and "training finished at step 3" in second.stdout
    assert _ckpt(save, 3)["step"] == 3


def test_resume_is_exact_in_process(tmp_path, faces_hq_dir, monkeypatch):
    """Run 0->4 == run 0->2, resume 2->4 (weights, EMA): RNG, data stream and optimiser all restored."""
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    args = _data_overrides(faces_hq_dir) + ["train.log_sample_paths=false", "train.val_freq=100"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main.main(["--cfg_path", DIFFUSION_TINY, "--save_dir", str(straight), *args, "train.iterations=4"]) == 0
    assert main.main(["--cfg_path", DIFFUSION_TINY, "--save_dir", str(split), *args, "train.iterations=2"]) == 0
    assert main.main(["--cfg_path", DIFFUSION_TINY, "--save_dir", str(split), *args, "train.iterations=4"]) == 0
    a, b = _ckpt(straight, 4), _ckpt(split, 4)
    for part in ("model", "ema"):
        for name, value in a[part].items():
            assert torch.equal(value, b[part][name]), f"{part}.{name} differs after resume"
    # and training moved the weights
    assert any(not torch.equal(v, _ckpt(split, 2)["model"][k]) for k, v in a["model"].items())


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.bach=3", "train.bach"),
        ("model.params.model_chanels=8", "model_chanels"),
        ("validation.timestep=[1]", "validation.timestep"),
    ],
)
def test_bad_config_key_exit_2_one_line(tmp_path, capsys, override, key):
    code = main.main(["--cfg_path", DIFFUSION_TINY, "--save_dir", str(tmp_path), override])
    err = capsys.readouterr().err.strip()
    assert code == cli.EXIT_CONFIG_ERROR == 2
    assert len(err.splitlines()) == 1 and key in err and "Traceback" not in err


def test_bad_config_key_real_process(tmp_path):
    proc = subprocess.run(
        [sys.executable, "main.py", "--cfg_path", SWINIR_TINY, "--save_dir", str(tmp_path), "train.microbach=2"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "train.microbach" in lines[0], proc.stderr


@pytest.mark.parametrize("n, world, per_step", [(16, 2, 2), (17, 2, 3), (10, 3, 1)])
def test_sharded_sampler_resume_and_disjoint(n, world, per_step):
    """Brute force: a sampler started at offset s*b continues the stream of one started at 0; shards of
    one epoch are disjoint and of equal size."""

    def take(sampler, k):
        it = iter(sampler)
        return [next(it) for _ in range(k)]

    for rank in range(world):
        full = take(ShardedInfiniteSampler(n, rank, world, seed=3), 5 * per_step)
        resumed = take(ShardedInfiniteSampler(n, rank, world, seed=3, start=2 * per_step), 3 * per_step)
        assert resumed == full[2 * per_step :]
    epoch0 = [take(ShardedInfiniteSampler(n, r, world, seed=3), n // world) for r in range(world)]
    flat = [i for shard in epoch0 for i in shard]
    assert len(flat) == len(set(flat)) == (n // world) * world
