"""DiffBIR/zero_shot.py (and scripts/calibrate_zero_shot.py): the zero-shot DBLM on real degraded faces with the
committed demo RM0, against sigma* from the spatial reference search and the blur of the restorer's output; the
restorer-blur model against its closed form (Gaussians compose); the sigma_ratio calibration and its command;
config wiring."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from data.blur import gaussian_blur
from data.datasets import load_face
from data.degradation import degrade, load_degradation_config
from data.sigma_star import sigma_star_spatial
from DiffBIR.dblm import DBLM
from DiffBIR.zero_shot import ZeroShotDBLM, calibrate
from sampler import FaceRestoreSampler, load_sample_config
from script_modules import load_script
from utils.config import ConfigError
from utils.model_factory import build_model

PUBLIC = "configs/sample/dynfacerestore_demo_public.yaml"


@pytest.fixture(scope="module")
def lq(celeba_val_faces):
    cfg, rng = load_degradation_config("configs/degradation/demo64.yaml"), np.random.default_rng(11)
    faces = [degrade(load_face(p, 64), rng, cfg)[0] for p in celeba_val_faces[:6]]
    return torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2).float() * 2 - 1


@pytest.fixture(scope="module")
def dblm():
    cfg = load_sample_config(PUBLIC)
    return ZeroShotDBLM.from_config(cfg.dblm, build_model(cfg.restorer))


@pytest.mark.parametrize("ratio", [1.0, 1.31])
def test_levels_are_blurs_of_the_restorer_at_sigma_star(dblm, lq, ratio):
    """sigma_hat = k sigma*(R(y), y) (spatial reference search), d_0 = sqrt(k^2 - 1) sigma*(R(y), y),
    sigma_k = max(rho^(k-1) sigma_hat, floor, d_0), y'_k = G_sqrt(sigma_k^2 - d_0^2) * R(y)."""
    dblm = ZeroShotDBLM(dblm.restorer, sigma_ratio=ratio, fine_step_512=dblm.fine_step_512)
    out = dblm(lq)
    restored = dblm.restorer.restore(lq).clamp(-1, 1)
    step = dblm.fine_step_512 * 64 / 512
    ref = sigma_star_spatial(restored.double(), lq.double(), sigma_max=dblm.sigma_max_512 / 8, fine_step=step)
    assert torch.allclose(out.sigma_hat, ratio * ref, atol=ratio * step + 1e-6), (out.sigma_hat, ref)
    assert out.sigma_hat.min() > 0 and len(out.images) == dblm.num_levels == 3
    floor, own = dblm.sigma_min_512 * 64 / 512, out.sigma_hat / ratio * (ratio**2 - 1) ** 0.5
    want = torch.clamp(out.sigma_hat[:, None] * dblm.rho ** torch.arange(3.0), min=floor)
    assert torch.allclose(out.sigmas, torch.maximum(want, own[:, None]))
    for k, image in enumerate(out.images):
        extra = (out.sigmas[:, k].double() ** 2 - own.double() ** 2).clamp(min=0).sqrt()
        direct = gaussian_blur(restored.double(), extra).clamp(-1, 1)
        assert torch.allclose(image.double(), direct, atol=1e-5)


class LookupRestorer(torch.nn.Module):
    """A restorer that returns a stored output for each stored input (a stand-in with a known blur)."""

    def __init__(self, inputs: torch.Tensor, outputs: torch.Tensor):
        super().__init__()
        self.inputs, self.outputs = inputs, outputs

    def restore(self, y: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.outputs[[torch.equal(row, x) for x in self.inputs].index(True)] for row in y])


@pytest.fixture(scope="module")
def clean(celeba_val_faces):
    return torch.from_numpy(np.stack([load_face(p, 64) for p in celeba_val_faces[:3]])).permute(0, 3, 1, 2) * 2 - 1


@settings(max_examples=12, deadline=None)
@given(blur=st.floats(2.0, 3.5), own_fraction=st.floats(0.4, 0.6))
def test_restorer_blur_model_recovers_the_clean_levels(clean, blur, own_fraction):
    """y = G_s * x and R(y) = G_d0 * x: with k = s / sqrt(s^2 - d0^2) the zero-shot DBLM returns sigma_hat = s
    (SDE's target) and levels G_sigma_k * x (the learned DBLM's), up to the discretisation of sampled kernels
    (checked where each kernel is at least 0.8 px wide, or exactly R(y) where a level reaches d0)."""
    own = own_fraction * blur
    y, restored = gaussian_blur(clean, blur), gaussian_blur(clean, own)
    ratio = blur / (blur**2 - own**2) ** 0.5
    dblm = ZeroShotDBLM(LookupRestorer(y, restored), sigma_ratio=ratio)
    out = dblm(y)
    step = dblm.fine_step_512 * 64 / 512
    assert torch.allclose(dblm.grid_sigma_star(restored, y), torch.full((3,), (blur**2 - own**2) ** 0.5), atol=2 * step)
    assert torch.allclose(out.sigma_hat, torch.full((3,), blur), atol=2 * ratio * step)
    for k, image in enumerate(out.images):
        extra = (out.sigmas[:, k] ** 2 - own**2).clamp(min=0).sqrt()
        if torch.all(extra == 0):
            assert torch.allclose(image, restored.clamp(-1, 1))
        elif torch.all(extra >= 0.8):
            assert (image - gaussian_blur(clean, out.sigmas[:, k]).clamp(-1, 1)).abs().max() < 0.01


def test_calibration_recovers_the_ratio(clean):
    """Pairs blurred by s with a restorer leaving d0: every ratio is s / sqrt(s^2 - d0^2)."""
    blurs, owns = torch.tensor([2.0, 2.5, 3.0]), torch.tensor([1.2, 1.5, 1.8])  # d0 = 0.6 s
    y = torch.cat([gaussian_blur(clean[i : i + 1], float(b)) for i, b in enumerate(blurs)])
    restored = torch.cat([gaussian_blur(clean[i : i + 1], float(d)) for i, d in enumerate(owns)])
    ratios = calibrate(ZeroShotDBLM(LookupRestorer(y, restored)), clean, y, batch=2)
    assert torch.allclose(ratios, torch.full((3,), 1.25), atol=0.02), ratios  # 1 / sqrt(1 - 0.6^2)


def test_calibration_command(celeba_val_faces, tmp_path, capsys):
    """The command on real degraded faces (files written as the test set maker writes them) prints a ratio
    > 1 (the demo RM0 leaves a blur of its own); a folder without hq/ is one line and exit status 2."""
    cfg, rng = load_degradation_config("configs/degradation/demo64.yaml"), np.random.default_rng(5)
    for sub in ("hq", "lq"):
        (tmp_path / "pairs" / sub).mkdir(parents=True)
    for i, path in enumerate(celeba_val_faces[:8]):
        hq = load_face(path, 64)
        lq = degrade(hq, rng, cfg)[0]
        for sub, img in (("hq", hq), ("lq", lq)):
            cv2.imwrite(str(tmp_path / "pairs" / sub / f"{i}.png"), np.round(img[..., ::-1] * 255).astype(np.uint8))
    main = load_script("calibrate_zero_shot").main
    assert main(["--config", PUBLIC, "--pairs", str(tmp_path / "pairs")]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("sigma_ratio ") and float(line.split()[1]) > 1.0, line
    (tmp_path / "bad" / "lq").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "bad" / "lq" / "0.png"), np.zeros((64, 64, 3), np.uint8))
    assert main(["--config", PUBLIC, "--pairs", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err, err


def test_batch_independence(dblm, lq):
    together = dblm(lq[:3])
    for i in range(3):
        alone = dblm(lq[i : i + 1])
        assert torch.equal(alone.sigma_hat, together.sigma_hat[i : i + 1])
        assert torch.allclose(alone.images[0], together.images[0][i : i + 1], atol=1e-6)


def test_sampler_runs_the_public_demo_recipe(lq):
    sampler = FaceRestoreSampler.from_config(PUBLIC, overrides=["diffusion.params.timestep_respacing=ddim10"])
    assert isinstance(sampler.dblm, ZeroShotDBLM) and sampler.dgsa is None and sampler.restorer is not None
    out = sampler.restore(lq[:2], seeds=[0, 1])
    assert out.images.shape == (2, 3, 64, 64) and torch.isfinite(out.images).all()
    assert torch.all(out.nfe >= 1) and out.guidance_map is not None


def test_config_errors():
    cfg = load_sample_config(PUBLIC)
    with pytest.raises(ConfigError, match="kind 'zero_shot'"):
        DBLM.from_config(cfg.dblm)
    with pytest.raises(ConfigError, match="needs a 'restorer'"):
        FaceRestoreSampler(OmegaConf.merge(cfg, {"restorer": None}))
    with pytest.raises(ConfigError, match="fine_step_512"):
        ZeroShotDBLM.from_config(OmegaConf.merge(cfg.dblm, {"fine_step_512": 0.0}), torch.nn.Identity())
    with pytest.raises(ConfigError, match="rho"):
        ZeroShotDBLM.from_config(OmegaConf.merge(cfg.dblm, {"rho": 1.5}), torch.nn.Identity())
    with pytest.raises(ConfigError, match="sigma_ratio"):
        ZeroShotDBLM.from_config(OmegaConf.merge(cfg.dblm, {"sigma_ratio": 0.9}), torch.nn.Identity())
