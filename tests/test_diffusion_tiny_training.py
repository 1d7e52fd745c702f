"""A tiny UNet trained on a few real faces (16x16) with the hybrid loss lowers its loss (CPU, seconds)."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from models.script_util import create_gaussian_diffusion
from models.unet import UNetModel
from utils.image_io import img2tensor, read_image

RES, N_FACES, BATCH, STEPS, WINDOW = 16, 32, 8, 160, 50


def test_tiny_unet_training_lowers_loss(celeba_faces):
    faces = [cv2.resize(read_image(p), (RES, RES), interpolation=cv2.INTER_AREA) for p in celeba_faces[:N_FACES]]
    data = img2tensor(np.stack(faces))
    assert data.shape == (N_FACES, 3, RES, RES) and data.min() >= -1 and data.max() <= 1
    diffusion = create_gaussian_diffusion(steps=1000, learn_sigma=True, rescale_learned_sigmas=True)
    torch.manual_seed(0)
    model = UNetModel(
        image_size=RES,
        in_channels=3,
        model_channels=32,
        out_channels=6,
        num_res_blocks=1,
        attention_resolutions=[8],
        channel_mult=(1, 2),
        num_head_channels=32,
        use_scale_shift_norm=True,
    )
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(1)  # fixed image / t / noise sampling
    losses = []
    for _ in range(STEPS):
        idx = torch.randint(0, N_FACES, (BATCH,), generator=gen)
        t = torch.randint(0, diffusion.num_timesteps, (BATCH,), generator=gen)
        noise = torch.randn(BATCH, 3, RES, RES, generator=gen)
        terms = diffusion.training_losses(model, data[idx], t, noise=noise)
        loss = terms["loss"].mean()
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = np.mean(losses[:WINDOW]), np.mean(losses[-WINDOW:])
    assert last < 0.6 * first, (first, last)
