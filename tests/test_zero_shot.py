"""DiffBIR/zero_shot.py: the zero-shot DBLM on real degraded faces with the committed demo RM0, against
sigma* from the spatial reference search and the blur of the restorer's output; its config wiring."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from DiffBIR.dblm import DBLM
from DiffBIR.zero_shot import ZeroShotDBLM
from data.blur import gaussian_blur
from data.datasets import load_face
from data.degradation import degrade, load_degradation_config
from data.sigma_star import sigma_star_spatial
from sampler import FaceRestoreSampler, load_sample_config
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


def test_levels_are_blurs_of_the_restorer_at_sigma_star(dblm, lq):
    out = dblm(lq)
    restored = dblm.restorer.restore(lq).clamp(-1, 1)
    step = dblm.fine_step_512 * 64 / 512
    ref = sigma_star_spatial(restored.double(), lq.double(), sigma_max=dblm.sigma_max_512 / 8, fine_step=step)
    assert torch.allclose(out.sigma_hat, ref, atol=step + 1e-6), (out.sigma_hat, ref)
    assert out.sigma_hat.min() > 0 and len(out.images) == dblm.num_levels == 3
    floor = dblm.sigma_min_512 * 64 / 512
    want = torch.clamp(out.sigma_hat[:, None] * dblm.rho ** torch.arange(3.0), min=floor)
    assert torch.allclose(out.sigmas, want)
    for k, image in enumerate(out.images):
        direct = gaussian_blur(restored.double(), out.sigmas[:, k].double()).clamp(-1, 1)
        assert torch.allclose(image.double(), direct, atol=1e-5)


def test_batch_independence(dblm, lq):
    together = dblm(lq[:3])
    for i in range(3):
        alone = dblm(lq[i:i + 1])
        assert torch.equal(alone.sigma_hat, together.sigma_hat[i:i + 1])
        assert torch.allclose(alone.images[0], together.images[0][i:i + 1], atol=1e-6)


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
