"""Face alignment for whole photos: 5 landmarks -> a similarity onto the FFHQ template -> an aligned crop.

The similarity is the least-squares fit of Umeyama (TPAMI 1991); a face larger than the crop is low-passed
before warping (:func:`warp_to_face`). Coordinates are pixel indices (pixel centre = integer), as in OpenCV.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Tuple

import cv2
import numpy as np

# FFHQ 5-point template at 512x512 (left eye, right eye, nose tip, left mouth corner, right mouth corner),
# the one facexlib / GFPGAN / DifFace align with; it scales linearly with the face size.
FFHQ_TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.19360],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ],
    dtype=np.float64,
)
TEMPLATE_SIZE = 512
PAD_VALUE = (135 / 255.0, 133 / 255.0, 132 / 255.0)  # facexlib's gray outside the image when aligning


def face_template(face_size: int = TEMPLATE_SIZE) -> np.ndarray:
    """The FFHQ 5-point template (5x2, x then y) for a ``face_size`` x ``face_size`` aligned face."""
    return FFHQ_TEMPLATE_512 * (face_size / TEMPLATE_SIZE)


def estimate_similarity(src_pts: np.ndarray, dst_pts: np.ndarray) -> np.ndarray:
    """Least-squares similarity ``dst ~ c R src + t`` as a 2x3 affine (Umeyama 1991, closed form).

    With centred points X (src) and Y (dst), variance v = mean ||X||^2 and covariance C = Y^T X / N =
    U D V^T: R = U S V^T with S = diag(1, sign(det U det V)) (no reflection), c = tr(D S) / v,
    t = mean(dst) - c R mean(src). Deterministic, exact for noise-free points."""
    src = np.asarray(src_pts, dtype=np.float64)
    dst = np.asarray(dst_pts, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"need two equally long (N>=2, 2) point arrays, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    var_s = np.mean(np.sum(xs**2, axis=1))
    if var_s <= 1e-12:
        raise ValueError("source points coincide: similarity transform undefined")
    u, d, vt = np.linalg.svd(xd.T @ xs / len(src))
    s = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ s @ vt
    scale = np.trace(np.diag(d) @ s) / var_s
    return np.hstack([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]])


def pixels_per_face_pixel(affine: np.ndarray) -> float:
    """Image pixels per aligned-face pixel of a 2x3 similarity ``affine`` (image -> face): 1 / sqrt|det|."""
    return float(1.0 / np.sqrt(abs(np.linalg.det(np.asarray(affine, dtype=np.float64)[:, :2]))))


def antialias_sigma(affine: np.ndarray) -> float:
    """Gaussian pre-filter (image pixels) before sampling an image into a face by ``affine``.

        sigma = sqrt(k^2 - 1) / 2,   k = pixels_per_face_pixel(affine),   0 when k <= 1

    (a pixel as a Gaussian spot of std 1/2: a crop pixel is one of std k/2)."""
    k = pixels_per_face_pixel(affine)
    return float(np.sqrt(k * k - 1.0) / 2.0) if k > 1.0 else 0.0


def warp_to_face(img: np.ndarray, affine: np.ndarray, face_size: int) -> np.ndarray:
    """``img`` (HxWx3 [0, 1]) sampled into the ``face_size`` crop by ``affine`` (image -> face).

    The image is low-passed by :func:`antialias_sigma` (reflected borders) around the face's footprint
    only, then warped bilinearly; outside the image the crop is :data:`PAD_VALUE`."""
    img = np.asarray(img, dtype=np.float32)
    affine = np.asarray(affine, dtype=np.float64)
    sigma = antialias_sigma(affine)
    if sigma > 0:
        x0, y0, x1, y1 = _footprint_box(affine, face_size, img.shape[:2], margin=int(np.ceil(4 * sigma)) + 2)
        if x1 > x0 and y1 > y0:
            region = cv2.GaussianBlur(img[y0:y1, x0:x1], (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
            shifted = affine.copy()
            shifted[:, 2] += affine[:, :2] @ np.array([x0, y0], dtype=np.float64)
            img, affine = region, shifted
    return cv2.warpAffine(
        img,
        affine,
        (face_size, face_size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=PAD_VALUE,
    )


def _footprint_box(
    affine: np.ndarray, face_size: int, image_hw: Tuple[int, int], margin: int
) -> Tuple[int, int, int, int]:
    """Integer box x0, y0, x1, y1 (exclusive) of the image pixels the crop samples, grown by ``margin``
    and clipped to the image."""
    inverse = cv2.invertAffineTransform(affine)
    corners = (
        np.array([[0, 0], [face_size - 1, 0], [0, face_size - 1], [face_size - 1, face_size - 1]], dtype=np.float64)
        @ inverse[:, :2].T
        + inverse[:, 2]
    )
    h, w = image_hw
    x0, y0 = np.floor(corners.min(0)).astype(int) - margin
    x1, y1 = np.ceil(corners.max(0)).astype(int) + margin + 1
    return max(0, x0), max(0, y0), min(w, x1), min(h, y1)


def align_face(
    img: np.ndarray, landmarks5: np.ndarray, face_size: int = TEMPLATE_SIZE
) -> Tuple[np.ndarray, np.ndarray]:
    """Warp ``img`` (HxWx3 [0, 1]) so ``landmarks5`` land on the template -> (face, 2x3 affine img->face).

    Anti-aliased bilinear sampling (:func:`warp_to_face`); outside the image the face is :data:`PAD_VALUE`."""
    landmarks5 = np.asarray(landmarks5, dtype=np.float64).reshape(-1, 2)
    if landmarks5.shape != (5, 2):
        raise ValueError(f"need 5 landmarks (x, y), got shape {landmarks5.shape}")
    affine = estimate_similarity(landmarks5, face_template(face_size))
    return warp_to_face(img, affine, face_size), affine


@dataclass
class AlignedFaces:
    """The faces of one image: detector boxes (N, 5), landmarks (N, 5, 2), aligned crops, 2x3 affines."""

    boxes: np.ndarray
    landmarks: np.ndarray
    crops: List[np.ndarray] = field(default_factory=list)
    affines: List[np.ndarray] = field(default_factory=list)


def detect_and_align(img: np.ndarray, detector, face_size: int) -> AlignedFaces:
    """Every face ``detector.detect(img) -> (boxes, landmarks (N, 5, 2))`` finds, aligned to ``face_size``."""
    boxes, landmarks = detector.detect(img)
    faces = AlignedFaces(np.asarray(boxes).reshape(-1, 5), np.asarray(landmarks).reshape(-1, 5, 2))
    for lm in faces.landmarks:
        crop, affine = align_face(img, lm, face_size)
        faces.crops.append(crop)
        faces.affines.append(affine)
    return faces
