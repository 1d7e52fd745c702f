"""Degradation chains written independently of ``data.degradation``, for evaluation only (docs/evaluation.md).

``opencv``: Gaussian blur, INTER_AREA down and INTER_CUBIC up, noise, JPEG; ``pillow``: motion blur, BOX down
and BILINEAR up, JPEG. Parameters per image from ``default_rng([seed, index])``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Callable, Dict, Tuple

import cv2
import numpy as np
from PIL import Image

from data.datasets import load_face, read_file_list
from utils.image_io import to_uint8, write_bytes_atomic, write_image


def _reduced(img: np.ndarray, factor: float) -> Tuple[int, int]:
    """(width, height) of ``img`` downsampled by ``factor`` (floor, at least 1 pixel)."""
    h, w = img.shape[:2]
    return max(1, int(w // factor)), max(1, int(h // factor))


def opencv_ops(
    img: np.ndarray, blur_sigma: float, down_by: float, noise_std: float, quality: int, rng: np.random.Generator
) -> np.ndarray:
    """OpenCV Gaussian blur -> INTER_AREA down by ``down_by`` -> INTER_CUBIC back -> Gaussian noise of std
    ``noise_std`` (drawn from ``rng``) -> OpenCV JPEG at ``quality``, on an HxWx3 [0, 1] image of any size."""
    h, w = img.shape[:2]
    out = cv2.GaussianBlur(img, (0, 0), blur_sigma) if blur_sigma > 0 else img
    out = cv2.resize(
        cv2.resize(out, _reduced(img, down_by), interpolation=cv2.INTER_AREA), (w, h), interpolation=cv2.INTER_CUBIC
    )
    out = out + rng.normal(0.0, noise_std, out.shape).astype(np.float32)
    ok, buf = cv2.imencode(".jpg", to_uint8(out)[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].astype(np.float32) / 255.0


def opencv_chain(hq: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, dict]:
    """Gaussian blur -> area down to size/4 -> cubic up -> noise 4/255 -> JPEG 60 (OpenCV throughout)."""
    size = hq.shape[0]
    sigma = float(rng.uniform(1.0, 3.0)) * size / 64
    out = opencv_ops(hq, sigma, 4, 4.0 / 255.0, 60, rng)
    return out, {"blur_sigma": sigma, "down_to": size // 4, "noise_std": 4.0 / 255.0, "jpeg": 60}


def motion_kernel(length: float, angle_deg: float) -> np.ndarray:
    """A normalised line kernel of ``length`` pixels at ``angle_deg`` (anti-aliased)."""
    k = int(np.ceil(length)) | 1
    kernel = np.zeros((k, k), np.float32)
    c = (k - 1) / 2.0
    dx, dy = np.cos(np.deg2rad(angle_deg)) * (length - 1) / 2, np.sin(np.deg2rad(angle_deg)) * (length - 1) / 2
    cv2.line(
        kernel,
        (round(16 * (c - dx)), round(16 * (c - dy))),
        (round(16 * (c + dx)), round(16 * (c + dy))),
        1.0,
        1,
        cv2.LINE_AA,
        shift=4,
    )
    return kernel / kernel.sum()


def pillow_ops(img: np.ndarray, length: float, angle_deg: float, down_by: float, quality: int) -> np.ndarray:
    """Motion blur (``length`` px at ``angle_deg``; none below 1 px) -> Pillow BOX down by ``down_by`` ->
    BILINEAR back -> Pillow JPEG at ``quality``, on an HxWx3 [0, 1] image of any size."""
    h, w = img.shape[:2]
    out = cv2.filter2D(img, -1, motion_kernel(length, angle_deg), borderType=cv2.BORDER_REFLECT) if length >= 1 else img
    pil = Image.fromarray(to_uint8(out)).resize(_reduced(img, down_by), Image.Resampling.BOX)
    pil = pil.resize((w, h), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.float32) / 255.0


def pillow_chain(hq: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, dict]:
    """Motion blur -> Pillow BOX down by 3 -> BILINEAR up -> Pillow JPEG 35-55."""
    size = hq.shape[0]
    length, angle = float(rng.uniform(3.0, 7.0)) * size / 64, float(rng.uniform(0.0, 180.0))
    quality = int(rng.integers(35, 56))
    out = pillow_ops(hq, length, angle, 3, quality)
    return out, {"motion_length": length, "motion_angle": angle, "down_by": 3, "jpeg": quality}


CHAINS: Dict[str, Callable[[np.ndarray, np.random.Generator], Tuple[np.ndarray, dict]]] = {
    "opencv": opencv_chain,
    "pillow": pillow_chain,
}


def make_chain_testset(source, out, chain: str, resolution: int, seed: int = 0, limit: int | None = None) -> dict:
    """Degrade the faces of ``source`` (a list file or folder) with ``chain``; returns the manifest."""
    if chain not in CHAINS:
        raise ValueError(f"unknown chain '{chain}': {sorted(CHAINS)}")
    out = Path(out)
    paths = read_file_list(source)[:limit]
    manifest = {"chain": chain, "seed": seed, "resolution": resolution, "source": str(source), "images": []}
    for i, path in enumerate(paths):
        hq = load_face(path, resolution)
        lq, params = CHAINS[chain](hq, np.random.default_rng([seed, i]))
        name = Path(path).stem
        write_image(out / "hq" / f"{name}.png", hq)
        write_image(out / "lq" / f"{name}.png", lq)
        manifest["images"].append({"name": name, **params})
    write_bytes_atomic(out / "chain.json", (json.dumps(manifest, indent=1) + "\n").encode())
    return manifest
