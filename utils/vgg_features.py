"""Offline image features for KID on small sets: VGG16's relu5_3, from the LPIPS backbone (not the paper's FID).

An image (float RGB [0, 1]) -> [-1, 1] -> LPIPS's scaling layer -> VGG16 features -> spatial mean of relu5_3
(512-d). Their KID compares methods here, not with papers' numbers.
"""

from __future__ import annotations

import os
from typing import Iterable, Union

import numpy as np
import torch

from utils.image_io import img2tensor
from utils.metrics import LPIPSMetric

VGG_FEATURES = 512


class VGGFeatures:
    """512-d relu5_3 means of images (module docstring)."""

    def __init__(self, lpips_weights: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu"):
        self.lpips = LPIPSMetric("vgg", lpips_weights, device=device)

    @torch.no_grad()
    def __call__(self, images: Iterable[np.ndarray]) -> np.ndarray:
        """(N, 512) float64 features of HxWx3 [0, 1] images."""
        model = self.lpips.model
        rows = [
            model.net(model.scaling_layer(img2tensor(img).to(self.lpips.device)))
            .relu5_3.mean(dim=(2, 3))[0]
            .double()
            .cpu()
            .numpy()
            for img in images
        ]
        return np.stack(rows) if rows else np.zeros((0, VGG_FEATURES))
