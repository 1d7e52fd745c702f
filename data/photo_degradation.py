"""Fixed-strength degradations of whole photos (docs/whole_photos.md), every size in pixels of the photo.

:data:`SETTINGS` holds the chains ``project`` / ``opencv`` / ``pillow`` at ``mild`` / ``severe`` and the
single degradations (noise, jpeg, blur), whose strength is drawn per photo (uniform).
"""

from __future__ import annotations

from typing import Dict, Tuple

import cv2
import numpy as np

from data.degradation import DegradationConfig, degrade, jpeg
from data.foreign_chains import opencv_ops, pillow_ops

CHAINS = ("project", "opencv", "pillow")
SEVERITIES = ("mild", "severe")
SINGLE = ("noise", "jpeg", "blur")  # single degradations, severity "only"
SETTINGS: Dict[Tuple[str, str], dict] = {
    ("project", "mild"): dict(blur=0.8, down_by=1.5, jpeg=85),
    ("project", "severe"): dict(blur=2.0, down_by=4.0, jpeg=50),
    ("opencv", "mild"): dict(blur=0.8, down_by=1.5, noise_std=2 / 255, jpeg=85),
    ("opencv", "severe"): dict(blur=2.0, down_by=4.0, noise_std=4 / 255, jpeg=60),
    ("pillow", "mild"): dict(motion=2.0, down_by=1.5, jpeg=85),
    ("pillow", "severe"): dict(motion=5.0, down_by=3.0, jpeg=45),
    ("noise", "only"): dict(noise_std=(5 / 255, 20 / 255)),
    ("jpeg", "only"): dict(jpeg=(10, 30)),
    ("blur", "only"): dict(blur=(1.0, 4.0)),
}


def degrade_photo(photo: np.ndarray, chain: str, severity: str, rng: np.random.Generator) -> np.ndarray:
    """``photo`` (HxWx3 [0, 1]) degraded by ``chain`` at ``severity`` (:data:`SETTINGS`), same size, float32.

    ``rng`` draws the noise (opencv, noise), the motion angle (pillow) and the strength of a single
    degradation."""
    if (chain, severity) not in SETTINGS:
        raise ValueError(f"unknown setting {chain}/{severity}: {', '.join('/'.join(k) for k in SETTINGS)}")
    p = SETTINGS[chain, severity]
    photo = np.ascontiguousarray(photo, dtype=np.float32)
    if chain in SINGLE:
        return single_degradation(photo, chain, float(rng.uniform(*next(iter(p.values())))), rng)
    if chain == "project":
        size = max(photo.shape[:2])
        cfg = DegradationConfig(
            reference_resolution=size,
            blur_kernel_size=2 * int(np.ceil(4 * p["blur"])) + 1,
            kernel_list=["iso"],
            kernel_prob=[1.0],
            blur_sigma=[p["blur"]] * 2,
            downsample_range=[p["down_by"]] * 2,
            noise_range=[0.0, 0.0],
            jpeg_range=[p["jpeg"]] * 2,
            gray_prob=0.0,
        )
        return degrade(photo, rng, cfg)[0]
    if chain == "opencv":
        return np.clip(opencv_ops(photo, p["blur"], p["down_by"], p["noise_std"], p["jpeg"], rng), 0.0, 1.0)
    angle = float(rng.uniform(0.0, 180.0))
    return pillow_ops(photo, p["motion"], angle, p["down_by"], p["jpeg"])


def single_degradation(photo: np.ndarray, kind: str, strength: float, rng: np.random.Generator) -> np.ndarray:
    """``photo`` under one degradation: ``noise`` (std ``strength``, drawn from ``rng``), ``jpeg`` (OpenCV,
    quality ``strength`` rounded) or ``blur`` (Gaussian, std ``strength`` px); 8-bit values, float32."""
    if kind == "noise":
        out = photo + rng.normal(0.0, strength, photo.shape).astype(np.float32)
    elif kind == "blur":
        out = cv2.GaussianBlur(photo, (0, 0), strength)
    elif kind == "jpeg":
        return jpeg(photo, int(round(strength)))
    else:
        raise ValueError(f"unknown single degradation {kind!r}: {', '.join(SINGLE)}")
    return np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.float32) / 255.0
