"""ArcFace identity distance: facexlib's IR-SE50 (``recognition_arcface_ir_se50.pth``), the papers' identity metric.

A face (float RGB [0, 1], FFHQ-aligned) -> 256 x 256 -> rows 35:223, columns 32:220 -> 112 x 112 -> [-1, 1]
(as pSp / e4e). ``arcface_cos`` = 1 - e(restored) . e(HQ), ``arcface_deg`` = arccos(e(restored) . e(HQ)) in
degrees.
"""

from __future__ import annotations

import math
import os
from typing import Dict, Union

import numpy as np
import torch
import torch.nn.functional as F
from facexlib.recognition.arcface_arch import Backbone

from utils.checkpoint import load_checkpoint
from utils.image_io import img2tensor

RESIZE = 256
CROP = (35, 223, 32, 220)  # rows, columns of the face in a 256 px FFHQ-aligned image
INPUT = 112
ARCFACE_CONVENTIONS = {
    "arcface_cos": f"arcface_cos[ir_se50,ffhq_crop{CROP},{INPUT}px,1-cos]",
    "arcface_deg": f"arcface_deg[ir_se50,ffhq_crop{CROP},{INPUT}px,degrees]",
}


def arcface_layout() -> torch.nn.Module:
    """facexlib's IR-SE50 (50 layers, SE blocks), random weights, eval mode."""
    return Backbone(num_layers=50, drop_ratio=0.6, mode="ir_se").eval()


class ArcFaceIdentity:
    """IR-SE50 embeddings and the two distances of the module docstring."""

    conventions = ARCFACE_CONVENTIONS

    def __init__(self, weights: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu"):
        self.device = torch.device(device)
        self.model = load_checkpoint(arcface_layout(), weights, strict=True).to(self.device).requires_grad_(False)

    @torch.no_grad()
    def embed(self, img: np.ndarray) -> np.ndarray:
        """512-d unit embedding of one HxWx3 [0, 1] face."""
        x = F.interpolate(img2tensor(img), size=(RESIZE, RESIZE), mode="bilinear", align_corners=False, antialias=True)
        top, bottom, left, right = CROP
        x = F.adaptive_avg_pool2d(x[:, :, top:bottom, left:right], INPUT)
        return self.model(x.to(self.device))[0].double().cpu().numpy()

    def metrics(self, restored: np.ndarray, reference: np.ndarray) -> Dict[str, float]:
        cos = float(np.clip(self.embed(restored) @ self.embed(reference), -1.0, 1.0))
        return {"arcface_cos": 1.0 - cos, "arcface_deg": math.degrees(math.acos(cos))}
