"""PSNR of image batches as tensors, without quantisation: the convention of training validation and of
network outputs that are never saved. Kept apart from utils.metrics so that training processes need not
import basicsr (utils.metrics.psnr is the evaluation convention, on the uint8 values of saved images)."""

from __future__ import annotations

import torch


def psnr_tensor(img: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of two (N, C, H, W) batches in [-1, 1]: 10 log10(1 / MSE) on the [0, 1] scale,
    in float64. On images already on the uint8 grid it equals ``utils.metrics.psnr`` (identical images give
    200 dB here, ``inf`` there)."""
    mse = ((img.double() - ref.double()) * 0.5).pow(2).flatten(1).mean(1)
    return -10.0 * torch.log10(mse.clamp_min(1e-20))
