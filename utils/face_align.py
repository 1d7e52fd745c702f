"""Whole-image face restoration: detect -> align (FFHQ 5 points) -> restore -> paste back (docs/method.md section 10).

The pipeline of DifFace / GFPGAN for unaligned inputs ("--aligned" not given), written here from its
description:

1. A detector of ``utils.face_detection`` (offline MTCNN / dlib, or facexlib's RetinaFace when its weights
   are given) gives a box and 5 landmarks per face (left eye, right eye, nose, left and right mouth
   corner, as seen in the image).
2. A similarity transform (rotation, uniform scale, translation) maps the 5 landmarks onto the FFHQ
   template, fitted in closed form by least squares (Umeyama, IEEE TPAMI 1991); the face is warped to
   ``face_size`` x ``face_size``.
3. The restorer runs on the aligned faces.
4. Each restored face is warped back by the inverse transform onto the upsampled background (bicubic by
   default) and blended with a soft mask: the face footprint eroded and then Gaussian-blurred, so the seam
   is smooth and never reaches the warp's invalid border.

Coordinates are pixel indices (pixel centre = integer), as in OpenCV's ``warpAffine``. A background
upsampled by ``s`` with half-pixel-centred resizing (cv2.resize) maps index ``x`` to ``s*x + (s-1)/2``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

# FFHQ 5-point template at 512x512 (left eye, right eye, nose tip, left mouth corner, right mouth corner),
# the one facexlib / GFPGAN / DifFace align with; it scales linearly with the face size.
FFHQ_TEMPLATE_512 = np.array([[192.98138, 239.94708], [318.90277, 240.19360], [256.63416, 314.01935],
                              [201.26117, 371.41043], [313.08905, 371.15118]], dtype=np.float64)
TEMPLATE_SIZE = 512
PAD_VALUE = (135 / 255.0, 133 / 255.0, 132 / 255.0)  # facexlib's gray outside the image when aligning
MASK_EDGE_FRACTION = 1.0 / 20.0  # soft-mask edge width relative to sqrt(face footprint area), as facexlib


def face_template(face_size: int = TEMPLATE_SIZE) -> np.ndarray:
    """The FFHQ 5-point template (5x2, x then y) for a ``face_size`` x ``face_size`` aligned face."""
    return FFHQ_TEMPLATE_512 * (face_size / TEMPLATE_SIZE)


def _homogeneous(affine: np.ndarray) -> np.ndarray:
    return np.vstack([np.asarray(affine, dtype=np.float64), [0.0, 0.0, 1.0]])


def estimate_similarity(src_pts: np.ndarray, dst_pts: np.ndarray) -> np.ndarray:
    """Least-squares similarity ``dst ~ c R src + t`` as a 2x3 affine (Umeyama 1991, closed form).

    With centred points X (src) and Y (dst), variance v = mean ||X||^2 and covariance C = Y^T X / N =
    U D V^T: R = U S V^T with S = diag(1, sign(det U det V)) (no reflection), c = tr(D S) / v,
    t = mean(dst) - c R mean(src). Deterministic, exact for noise-free points.
    """
    src = np.asarray(src_pts, dtype=np.float64)
    dst = np.asarray(dst_pts, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"need two equally long (N>=2, 2) point arrays, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    var_s = np.mean(np.sum(xs ** 2, axis=1))
    if var_s <= 1e-12:
        raise ValueError("source points coincide: similarity transform undefined")
    u, d, vt = np.linalg.svd(xd.T @ xs / len(src))
    s = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ s @ vt
    scale = np.trace(np.diag(d) @ s) / var_s
    return np.hstack([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]])


def align_face(img: np.ndarray, landmarks5: np.ndarray, face_size: int = TEMPLATE_SIZE
               ) -> Tuple[np.ndarray, np.ndarray]:
    """Warp ``img`` (HxWx3 [0, 1]) so ``landmarks5`` land on the template -> (face, 2x3 affine img->face).

    Bilinear interpolation; outside the image the face is filled with :data:`PAD_VALUE`.
    """
    landmarks5 = np.asarray(landmarks5, dtype=np.float64).reshape(-1, 2)
    if landmarks5.shape != (5, 2):
        raise ValueError(f"need 5 landmarks (x, y), got shape {landmarks5.shape}")
    affine = estimate_similarity(landmarks5, face_template(face_size))
    face = cv2.warpAffine(np.asarray(img, dtype=np.float32), affine, (face_size, face_size),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=PAD_VALUE)
    return face, affine


def face_to_upsampled(affine: np.ndarray, upscale: float = 1) -> np.ndarray:
    """2x3 map from aligned-face pixels to pixels of the background upsampled by ``upscale``.

    Composes the inverse of ``affine`` (image -> face) with x -> s x + (s - 1) / 2 (half-pixel centres).
    """
    offset = (upscale - 1) / 2.0
    up = np.array([[upscale, 0.0, offset], [0.0, upscale, offset], [0.0, 0.0, 1.0]])
    return (up @ np.linalg.inv(_homogeneous(affine)))[:2]


def soft_face_mask(face_size: Tuple[int, int], inverse_affine: np.ndarray, out_hw: Tuple[int, int]) -> np.ndarray:
    """Blend weights in [0, 1] (HxW) for a face warped by ``inverse_affine`` into an ``out_hw`` image.

    The warped footprint is eroded by 2e pixels and blurred by a Gaussian of std e (kernel 4e+1), with
    e = sqrt(footprint area) * MASK_EDGE_FRACTION, so the weight falls to ~0 inside the footprint's edge.
    """
    h, w = out_hw
    footprint = cv2.warpAffine(np.ones(face_size, np.float32), inverse_affine, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    footprint = (footprint > 0.999).astype(np.float32)
    edge = max(1, int(round(np.sqrt(footprint.sum()) * MASK_EDGE_FRACTION)))
    core = cv2.erode(footprint, np.ones((4 * edge + 1, 4 * edge + 1), np.uint8))
    return cv2.GaussianBlur(core, (4 * edge + 1, 4 * edge + 1), edge, borderType=cv2.BORDER_CONSTANT)


def paste_back(background_upsampled: np.ndarray, restored_face: np.ndarray, affine: np.ndarray,
               upscale: float = 1) -> np.ndarray:
    """Blend ``restored_face`` (aligned by ``affine``, image -> face) into the upsampled background.

    ``background_upsampled`` is the original image upsampled by ``upscale`` (HxWx3 [0, 1]); the face is
    inverse-warped (bilinear) and mixed with :func:`soft_face_mask`. Returns a new float32 image.
    """
    bg = np.asarray(background_upsampled, dtype=np.float32)
    inverse = face_to_upsampled(affine, upscale)
    h, w = bg.shape[:2]
    warped = cv2.warpAffine(np.asarray(restored_face, dtype=np.float32), inverse, (w, h), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    mask = soft_face_mask(restored_face.shape[:2], inverse, (h, w))[:, :, None]
    return mask * warped + (1.0 - mask) * bg


def bicubic_upsample(img: np.ndarray, upscale: float) -> np.ndarray:
    """Default background upsampler: cv2 bicubic resize by ``upscale``, clipped to [0, 1]."""
    if upscale == 1:
        return np.asarray(img, dtype=np.float32).copy()
    h, w = img.shape[:2]
    size = (int(round(w * upscale)), int(round(h * upscale)))
    return np.clip(cv2.resize(img, size, interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


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


def paste_faces(img: np.ndarray, restored: Sequence[np.ndarray], affines: Sequence[np.ndarray], face_size: int,
                upscale: float, bg_upsampler: Optional[Callable[[np.ndarray, float], np.ndarray]] = None
                ) -> np.ndarray:
    """The upsampled ``img`` (``bg_upsampler``, default :func:`bicubic_upsample`) with each restored face
    pasted back (:func:`paste_back`), clipped to [0, 1]. With no face it is the upsampled background."""
    if len(restored) != len(affines):
        raise ValueError(f"{len(restored)} restored faces for {len(affines)} aligned ones")
    out = (bg_upsampler or bicubic_upsample)(img, upscale)
    expected_hw = (int(round(img.shape[0] * upscale)), int(round(img.shape[1] * upscale)))
    if out.shape[:2] != expected_hw:
        raise ValueError(f"bg_upsampler returned {out.shape[:2]}, expected {expected_hw} for upscale {upscale}")
    for face, affine in zip(restored, affines):
        if face.shape != (face_size, face_size, 3):
            raise ValueError(f"a restored face has shape {face.shape}, expected {(face_size, face_size, 3)}")
        out = paste_back(out, face, affine, upscale)
    return np.clip(out, 0.0, 1.0)


@dataclass
class WholeImageResult:
    """Output of :func:`restore_whole_image`: the pasted image, the detected and aligned faces, the restorations."""

    image: np.ndarray
    faces: AlignedFaces
    restored_faces: List[np.ndarray]


def restore_whole_image(img: np.ndarray, detector, restore_fn: Callable[[List[np.ndarray]], Sequence[np.ndarray]],
                        face_size: int, upscale: float,
                        bg_upsampler: Optional[Callable[[np.ndarray, float], np.ndarray]] = None
                        ) -> WholeImageResult:
    """Detect -> align -> restore all faces in one call -> paste back.

    ``restore_fn(list of aligned HxWx3 [0, 1] faces) -> same-size restored faces``. (The command line
    batches faces across images instead, with the same steps :func:`detect_and_align` and :func:`paste_faces`.)
    """
    faces = detect_and_align(img, detector, face_size)
    restored = list(restore_fn(faces.crops)) if faces.crops else []
    return WholeImageResult(paste_faces(img, restored, faces.affines, face_size, upscale, bg_upsampler), faces, restored)
