"""The shipped 64 px demo models (weights/demo/) end to end, and the README demo script.

Every checkpoint of configs/sample/dynfacerestore_demo.yaml is loaded (prior, RM0, SDE, TM, RM, DGSA,
DSST table); real held-out faces degraded with the project's own degradation are restored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from data.datasets import load_face
from data.degradation import degrade, load_degradation_config, severity_config
from inference.report import record_path, write_json
from sampler import FaceRestoreSampler
from script_modules import load_script
from utils.image_io import img2tensor, read_image, tensor2img, write_image
from utils.metrics import psnr

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "configs/sample/dynfacerestore_demo.yaml"


@pytest.fixture(scope="module")
def severe_pairs(celeba_val_faces):
    """Four held-out faces at 64 px and their severe-third degradations (fixed seeds)."""
    cfg = severity_config(load_degradation_config(ROOT / "configs/degradation/demo64.yaml"), 64, 2)
    hq = [load_face(p, 64) for p in celeba_val_faces[-4:]]
    lq = [degrade(h, np.random.default_rng([7, i]), cfg)[0] for i, h in enumerate(hq)]
    return hq, lq


@pytest.mark.parametrize("method", ["dynfacerestore", "difface"])
def test_shipped_models_restore_real_faces(severe_pairs, method):
    hq, lq = severe_pairs
    sampler = FaceRestoreSampler.from_config(DEMO_CONFIG, [f"sampler.method={method}"])
    out = sampler.restore(img2tensor(lq), seeds=[0, 1, 2, 3])
    assert out.images.shape == (4, 3, 64, 64)
    assert torch.isfinite(out.images).all() and out.images.abs().max() <= 1.0
    if method == "dynfacerestore":  # the demo's method; DifFace is the baseline (docs/evaluation.md)
        restored = tensor2img(out.images)
        gain = np.mean([psnr(r, h) - psnr(low, h) for r, low, h in zip(restored, lq, hq)])
        assert gain > 0.0, f"restored faces are not closer to the HQ than the LQ (mean PSNR gain {gain:.2f} dB)"
        assert (out.sigmas[:, 1:] <= out.sigmas[:, :-1]).all()
        assert out.guidance_map.min() >= 0.0 and out.guidance_map.max() <= 1.0


def test_readme_demo_writes_restorations_and_grid(tmp_path):
    demo = load_script("demo")
    stale = tmp_path / "astronaut" / "difface"  # an earlier run's result in the same folder: restored again
    write_image(stale / "restored" / "astronaut_mild.png", np.zeros((64, 64, 3), np.uint8))
    write_json(record_path(stale, "astronaut_mild"), {"key": "astronaut_mild", "metrics": {}})
    assert demo.main(["--out", str(tmp_path)]) == 0
    assert read_image(stale / "restored" / "astronaut_mild.png").mean() > 0.1
    grid = read_image(tmp_path / "grid_astronaut.png")
    assert grid.shape[0] >= 3 * 128  # three severities, one row each
    for method in ("dynfacerestore", "difface"):
        restored = sorted((tmp_path / "astronaut" / method / "restored").glob("*.png"))
        assert [p.stem for p in restored] == ["astronaut_medium", "astronaut_mild", "astronaut_severe"]
    rows = sorted(restored, key=demo._severity_rank)  # the grid's row order: by severity, then other images
    assert [p.stem for p in rows] == ["astronaut_mild", "astronaut_medium", "astronaut_severe"]
    assert demo._severity_rank(Path("user_face.png")) > demo._severity_rank(Path("astronaut_severe.png"))


def test_prior_sample_grid_from_pure_noise(tmp_path):
    """scripts/sample_prior.py: one titled block per checkpoint, same noise for each, deterministic."""
    sample_prior = load_script("sample_prior")
    weights = str(ROOT / "weights/demo/unet_demo64.pth")
    args = ["--num", "3", "--respacing", "ddim8", "--ckpt", weights, "a", weights, "b"]
    assert sample_prior.main([*args, "--out", str(tmp_path / "one.png")]) == 0
    assert sample_prior.main([*args, "--out", str(tmp_path / "two.png")]) == 0
    grid = read_image(tmp_path / "one.png")
    np.testing.assert_array_equal(grid, read_image(tmp_path / "two.png"))
    assert grid.shape[1] == 3 * 128 + 2 * 4  # three 128 px tiles, 4 px apart
    assert grid.std() > 0.05  # samples, not a blank page
    half = (grid.shape[0] - 12) // 2  # two equal blocks 12 px apart: same weights and noise -> same samples
    np.testing.assert_array_equal(grid[32:half], grid[half + 12 + 32 :])  # below the 32 px titles "a", "b"


def test_prior_samples_with_a_plain_step_count(tmp_path):
    """``--respacing 4`` becomes the YAML int 4 in the override, which the respacing must accept."""
    sample_prior = load_script("sample_prior")
    out = tmp_path / "grid.png"
    assert sample_prior.main(["--num", "1", "--respacing", "4", "--out", str(out)]) == 0
    assert read_image(out).std() > 0.05


def test_prior_samples_with_ddim(tmp_path):
    """``--eta``: DDIM from the same noise; eta 0 is deterministic and differs from ancestral sampling."""
    sample_prior = load_script("sample_prior")
    args = ["--num", "2", "--respacing", "ddim8"]
    grids = {}
    for name, extra in (("ancestral", []), ("ddim0", ["--eta", "0"]), ("ddim0_again", ["--eta", "0"])):
        assert sample_prior.main([*args, *extra, "--out", str(tmp_path / f"{name}.png")]) == 0
        grids[name] = read_image(tmp_path / f"{name}.png")
    np.testing.assert_array_equal(grids["ddim0"], grids["ddim0_again"])
    assert np.abs(grids["ddim0"] - grids["ancestral"]).mean() > 0.05  # images in [0, 1]
