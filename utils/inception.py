"""FID Inception features: basicsr's patched Inception-v3 (``load_patched_inception_v3``, the TF FID network).

An image (float RGB [0, 1]) -> 2x - 1 -> 299 x 299 bilinear -> the 2048-d final average pooling.
Weights: ``pt_inception-2015-12-05-6726825d.pth``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterable, Union

import basicsr.archs.inception as basicsr_inception
import numpy as np
import torch
from basicsr.metrics.fid import load_patched_inception_v3
from torchvision.models import inception_v3

from utils.checkpoint import load_checkpoint
from utils.image_io import img2tensor

FID_FEATURES = 2048
FID_CLASSES = 1008


def inception_layout() -> torch.nn.Module:
    """The network whose state dict the FID weights file holds, with random weights."""
    return inception_v3(weights=None, num_classes=FID_CLASSES, aux_logits=False, init_weights=False)


def check_inception_weights(path: Union[str, os.PathLike]) -> None:
    """CheckpointError (naming the first keys) unless ``path`` loads strictly into :func:`inception_layout`."""
    load_checkpoint(inception_layout(), path, strict=True)


@contextlib.contextmanager
def _local_weights(path: Path):
    """basicsr reads the FID weights from its ``LOCAL_FID_WEIGHTS`` when that file exists (else downloads)."""
    before = basicsr_inception.LOCAL_FID_WEIGHTS
    basicsr_inception.LOCAL_FID_WEIGHTS = str(path)
    try:
        yield
    finally:
        basicsr_inception.LOCAL_FID_WEIGHTS = before


class InceptionFeatures:
    """2048-d FID features of images, from a checked weights file (module docstring)."""

    def __init__(self, weights: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu"):
        weights = Path(weights)
        check_inception_weights(weights)
        self.device = torch.device(device)
        with _local_weights(weights.resolve()):
            self.model = load_patched_inception_v3(self.device, resize_input=True, normalize_input=False)

    @torch.no_grad()
    def __call__(self, images: Iterable[np.ndarray]) -> np.ndarray:
        """(N, 2048) float64 features of HxWx3 [0, 1] images (one at a time: sizes may differ)."""
        rows = [self.model(img2tensor(img).to(self.device))[0].reshape(-1).double().cpu().numpy() for img in images]
        return np.stack(rows) if rows else np.zeros((0, FID_FEATURES))
