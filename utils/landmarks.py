"""Landmark distance (LMD) between a restored face and its HQ reference.

LMD = mean over the K landmarks of ||p_k(restored) - p_k(HQ)||_2, in pixels of the HQ image. ``lmd_dlib``:
dlib's 68 points in the HQ face box (as ``faces.identity``); ``lmd_awing``: facexlib's AWing 98 points on the
whole aligned face, as GFPGAN / VQFR.
"""

from __future__ import annotations

import os
from typing import Dict, Optional, Union

import cv2
import numpy as np
import torch
from facexlib.alignment.awing_arch import FAN

from faces.detection import dlib_model
from faces.identity import MIN_SIDE, upscale_to
from utils.checkpoint import load_checkpoint
from utils.image_io import img2tensor

AWING_POINTS = 98
AWING_INPUT = 256
LANDMARK_CONVENTIONS = {
    "lmd_dlib": f"lmd_dlib[68pt,hq_box,min_side{MIN_SIDE},hq_pixels]",
    "lmd_awing": f"lmd_awing[wflw98,{AWING_INPUT}px,hq_pixels]",
}


def landmark_distance(points: np.ndarray, reference: np.ndarray) -> float:
    """Mean Euclidean distance between corresponding (K, 2) points."""
    return float(np.linalg.norm(np.asarray(points, np.float64) - np.asarray(reference, np.float64), axis=1).mean())


class DlibLandmarks:
    """dlib's HOG detector and 68-point shape predictor; ``metrics`` gives ``lmd_dlib``."""

    conventions = {"lmd_dlib": LANDMARK_CONVENTIONS["lmd_dlib"]}

    def __init__(self):
        import dlib

        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(dlib_model("shape_predictor_68_face_landmarks.dat"))

    def points(self, img: np.ndarray, reference: np.ndarray) -> Optional[np.ndarray]:
        """(68, 2) points of ``img`` in the box found on ``reference`` (same size), HQ pixels; None without a face."""
        ref8 = upscale_to(reference)
        found = self.detector(ref8, 1)
        if not len(found):
            return None
        box = max(found, key=lambda r: r.area())
        shape = self.predictor(upscale_to(img), box)
        scale = ref8.shape[0] / reference.shape[0]
        return np.array([[shape.part(k).x, shape.part(k).y] for k in range(68)], np.float64) / scale

    def metrics(self, restored: np.ndarray, reference: np.ndarray) -> Dict[str, float]:
        if restored.shape != reference.shape:
            raise ValueError(f"restored and reference sizes differ: {restored.shape} vs {reference.shape}")
        ref_points = self.points(reference, reference)
        if ref_points is None:
            return {}
        return {"lmd_dlib": landmark_distance(self.points(restored, reference), ref_points)}


def awing_layout() -> torch.nn.Module:
    """facexlib's AWing FAN (4 modules, 98 points), random weights, eval mode, on the CPU."""
    return FAN(num_modules=4, num_landmarks=AWING_POINTS, device="cpu").eval()


def heatmap_points(heatmaps: np.ndarray) -> np.ndarray:
    """(K, H, W) heatmaps -> (K, 2) (x, y) in heatmap pixels: arg-max + 0.5, a quarter pixel towards the
    larger neighbour along x and along y (none at the border)."""
    k, h, w = heatmaps.shape
    flat = heatmaps.reshape(k, -1).argmax(axis=1)
    rows, cols = flat // w, flat % w
    points = np.stack([cols, rows], axis=1).astype(np.float64) + 0.5
    for i in range(k):
        r, c, hm = rows[i], cols[i], heatmaps[i]
        if 0 < c < w - 1:
            points[i, 0] += 0.25 * np.sign(hm[r, c + 1] - hm[r, c - 1])
        if 0 < r < h - 1:
            points[i, 1] += 0.25 * np.sign(hm[r + 1, c] - hm[r - 1, c])
    return points


class AWingLandmarks:
    """facexlib's AWing FAN on the whole aligned face; ``metrics`` gives ``lmd_awing``."""

    conventions = {"lmd_awing": LANDMARK_CONVENTIONS["lmd_awing"]}

    def __init__(self, weights: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu"):
        self.device = torch.device(device)
        self.model = load_checkpoint(awing_layout(), weights, strict=True).to(self.device).requires_grad_(False)

    @torch.no_grad()
    def points(self, img: np.ndarray) -> np.ndarray:
        """(98, 2) points of an HxWx3 [0, 1] face, in its pixels."""
        h, w = img.shape[:2]
        x = cv2.resize(np.asarray(img, np.float32), (AWING_INPUT, AWING_INPUT), interpolation=cv2.INTER_LINEAR)
        outputs, _ = self.model(((img2tensor(x) + 1.0) / 2.0).to(self.device))
        heatmaps = outputs[-1][0, :AWING_POINTS].float().cpu().numpy()
        return heatmap_points(heatmaps) * np.array([w / heatmaps.shape[2], h / heatmaps.shape[1]])

    def metrics(self, restored: np.ndarray, reference: np.ndarray) -> Dict[str, float]:
        if restored.shape != reference.shape:
            raise ValueError(f"restored and reference sizes differ: {restored.shape} vs {reference.shape}")
        return {"lmd_awing": landmark_distance(self.points(restored), self.points(reference))}
