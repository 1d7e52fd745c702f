"""scripts/eval_dblm_levels.py on a real test set with the shipped demo DBLM: its numbers against direct
computations (basicsr's PSNR on the image files, the DBLM forward, the exact blur of the HQ faces)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from data.make_testset import make_testset
from script_modules import load_script
from utils.image_io import read_image
from utils.metrics import psnr as basicsr_psnr
from utils.tensor_psnr import psnr_tensor

REPO = Path(__file__).resolve().parents[1]
levels = load_script("eval_dblm_levels")


def opencv_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Independent reference for G_sigma: OpenCV's Gaussian, radius ceil(4 sigma), reflect-101 border, float64."""
    radius = int(np.ceil(4 * sigma))
    return cv2.GaussianBlur(img, (2 * radius + 1, 2 * radius + 1), sigma, borderType=cv2.BORDER_REFLECT_101)


@pytest.fixture(scope="module")
def testset(tmp_path_factory, faces_hq_dir):
    out = tmp_path_factory.mktemp("levels")
    make_testset(
        faces_hq_dir / "celeba128_val.txt",
        out,
        64,
        seed=3,
        config=REPO / "configs/degradation/demo64.yaml",
        severity_thirds=True,
        limit=6,
    )
    return out


def test_level_table_matches_direct_computation(testset, lpips_weights_dir, capsys):
    assert levels.main(["--testset", str(testset)]) == 0
    text = capsys.readouterr().out
    rows = {
        line.split(" | ")[0].lstrip("| "): [float(v) for v in line.strip(" |").split(" | ")[1:]]
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith("| quantity")
    }
    assert len(rows) == 3 + 6 * 3  # LQ (2), sigma_hat, and 6 quantities for each of the K = 3 levels

    lq, hq, severity = levels.load_testset(testset)
    assert sorted(set(severity)) == ["medium", "mild", "severe"]
    files = sorted((testset / "lq").iterdir())
    direct = np.mean([basicsr_psnr(read_image(f), read_image(testset / "hq" / f.name)) for f in files])
    assert rows["LQ vs x: PSNR"][0] == pytest.approx(direct, abs=0.01)

    from DiffBIR.dblm import DBLM
    from utils.config import load_config

    out = DBLM.from_config(load_config(REPO / "configs/sample/dynfacerestore_demo.yaml").dblm)(lq)
    assert rows["level 1: sigma (px)"][0] == pytest.approx(out.sigma_hat.clamp(min=0.0625).mean().item(), abs=0.01)
    assert rows["level 3: sigma (px)"][0] == pytest.approx(out.sigmas[:, 2].mean().item(), abs=0.01)
    # the exact target G_sigma * x, blurred here with OpenCV, against the HQ face
    targets = []
    for i, s in enumerate(out.sigmas[:, 0].tolist()):
        img = (hq[i].permute(1, 2, 0).double().numpy() + 1) / 2
        targets.append(-10 * np.log10(np.mean((opencv_blur(img, s) - img) ** 2)))
    assert rows["level 1: G x vs x, PSNR"][0] == pytest.approx(np.mean(targets), abs=0.05)
    level3 = psnr_tensor(out.images[2], hq).mean().item()
    assert rows["level 3: y' vs x, PSNR"][0] == pytest.approx(level3, abs=0.01)


def test_exact_levels_keep_the_sigmas_and_blur_the_hq_faces(testset, capsys):
    """scripts/sample_exact_levels.py: the wrapped DBLM keeps SDE's sigmas and returns G_sigma_k * x; the
    script runs both samplers on real faces and prints one row each."""
    exact = load_script("sample_exact_levels")
    from DiffBIR.dblm import DBLM
    from utils.config import load_config

    lq, hq, _ = levels.load_testset(testset)
    real = DBLM.from_config(load_config(REPO / "configs/sample/dynfacerestore_demo.yaml").dblm)
    wrapped = exact.ExactLevels(real)
    wrapped.hq = hq
    got, want = wrapped(lq), real(lq)
    torch.testing.assert_close(got.sigmas, want.sigmas)
    for k, level in enumerate(got.images):
        for i in range(len(hq)):
            img = (hq[i].permute(1, 2, 0).double().numpy() + 1) / 2
            ref = opencv_blur(img, float(got.sigmas[i, k])) * 2 - 1
            np.testing.assert_allclose(level[i].permute(1, 2, 0).double().numpy(), ref, atol=1e-5)

    assert exact.main(["--testset", str(testset), "--limit", "2", "--bs", "2"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    names = [line.split(" | ")[0].lstrip("| ") for line in lines[1:]]
    assert names == ["LQ (input)", "DynFaceRestore", "DynFaceRestore, exact levels"]
