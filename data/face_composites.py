"""Whole photos with known faces: aligned real faces pasted into public-domain backgrounds (docs/face_detection.md).

A face pasted with a known similarity T has true landmarks T(template) and true aligned crop the source face;
a detector is scored by its landmark error mapped back by T^-1 (512 template pixels) and its crop's PSNR.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Sequence, Tuple

import cv2
import numpy as np

from faces.align import TEMPLATE_SIZE, face_template
from utils.image_io import read_image

BACKGROUNDS = ("coffee", "rocket", "chelsea", "hubble_deep_field")


@dataclass
class PlacedFace:
    """One pasted face: its source file, the 2x3 map source-face pixels -> composite pixels, the truth."""

    source: Path
    source_size: int
    affine: np.ndarray  # 2x3, source face -> composite
    landmarks: np.ndarray  # (5, 2) true landmarks in the composite: affine(template(source_size))
    scale: float
    angle_deg: float

    def to_source(self, points: np.ndarray) -> np.ndarray:
        """Composite pixel coordinates (N, 2) -> source-face coordinates."""
        inv = cv2.invertAffineTransform(self.affine)
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return pts @ inv[:, :2].T + inv[:, 2]

    def landmark_error(self, detected: np.ndarray) -> float:
        """Mean distance of ``detected`` (5, 2, composite pixels) to the template, in 512-template pixels."""
        in_source = self.to_source(detected) * (TEMPLATE_SIZE / self.source_size)
        return float(np.linalg.norm(in_source - face_template(TEMPLATE_SIZE), axis=1).mean())


@dataclass
class Composite:
    image: np.ndarray  # HxWx3 float32 RGB [0, 1]
    faces: List[PlacedFace] = field(default_factory=list)
    background: str = ""


def background(name: str, size: Tuple[int, int]) -> np.ndarray:
    """scikit-image photo ``name`` as float RGB [0, 1] resized (bicubic) to ``size`` = (height, width)."""
    import skimage.data

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    img = img[:, :, :3].astype(np.float32) / 255.0
    h, w = size
    return np.clip(cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def placement_affine(source_size: int, scale: float, angle_deg: float, centre: Tuple[float, float]) -> np.ndarray:
    """2x3 similarity: source face scaled by ``scale``, rotated by ``angle_deg`` (counter-clockwise as
    seen, OpenCV's convention) about its centre, the centre landing on ``centre`` (x, y)."""
    c = (source_size - 1) / 2.0
    affine = cv2.getRotationMatrix2D((c, c), angle_deg, scale)
    affine[:, 2] += np.asarray(centre, dtype=np.float64) - np.array([c, c])
    return affine


def paste(canvas: np.ndarray, face: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``face`` warped by ``affine`` over ``canvas`` (bilinear; an anti-aliased footprint as the mask)."""
    h, w = canvas.shape[:2]
    warped = cv2.warpAffine(face, affine, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    mask = cv2.warpAffine(
        np.ones(face.shape[:2], np.float32), affine, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )[:, :, None]
    return mask * warped + (1.0 - mask) * canvas


def _load_face(path: Path, max_size: int) -> np.ndarray:
    img = read_image(path)
    if img.shape[0] > max_size:  # 1024 FFHQ faces shrink first (area) so the paste resamples little
        img = cv2.resize(img, (max_size, max_size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img, dtype=np.float32)


def make_composite(
    faces: Sequence[Path],
    seed: int,
    size: Tuple[int, int] = (720, 1080),
    face_px: Tuple[float, float] = (140.0, 260.0),
    max_angle: float = 30.0,
    background_name: str | None = None,
    max_tries: int = 200,
) -> Composite:
    """Paste aligned square ``faces`` into one background: side ``face_px`` (uniform), angle in [-max_angle,
    max_angle], inside the image and clear of the other faces."""
    rng = np.random.default_rng(seed)
    name = background_name or BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    sources = [_load_face(Path(path), max_size=512) for path in faces]
    layout = _place_discs(rng, len(faces), size, face_px, max_angle, max_tries)
    if layout is None:
        raise ValueError(f"cannot place {len(faces)} faces of up to {face_px[1]} px in a {size[1]}x{size[0]} image")
    canvas = background(name, size)
    placed: List[PlacedFace] = []
    for path, face, (side, angle, cx, cy) in zip(faces, sources, layout):
        s = face.shape[0]
        affine = placement_affine(s, side / s, angle, (cx, cy))
        canvas = paste(canvas, face, affine)
        truth = face_template(s) @ affine[:, :2].T + affine[:, 2]
        placed.append(PlacedFace(Path(path), s, affine, truth, side / s, angle))
    return Composite(np.clip(canvas, 0.0, 1.0).astype(np.float32), placed, name)


def _place_discs(
    rng: np.random.Generator,
    count: int,
    size: Tuple[int, int],
    face_px: Tuple[float, float],
    max_angle: float,
    max_tries: int,
    max_layouts: int = 50,
) -> List[Tuple[float, float, float, float]] | None:
    """(side, angle, cx, cy) per face, each rotated square's enclosing disc inside the image and clear of the
    others, drawn up to ``max_tries`` times per face and ``max_layouts`` times per layout; None if none fits."""
    h, w = size
    for _ in range(max_layouts):
        layout: List[Tuple[float, float, float, float]] = []
        for _ in range(count):
            side = float(rng.uniform(*face_px))
            angle = float(rng.uniform(-max_angle, max_angle))
            radius = side / np.sqrt(2.0) + 2.0  # the rotated square fits in this disc
            for _ in range(max_tries):
                cx, cy = rng.uniform(radius, w - radius), rng.uniform(radius, h - radius)
                if all(np.hypot(cx - x, cy - y) > radius + s / np.sqrt(2.0) + 2.0 for s, _, x, y in layout):
                    layout.append((side, angle, float(cx), float(cy)))
                    break
            else:
                break
        if len(layout) == count:
            return layout
    return None


def match_detections(composite: Composite, landmarks: np.ndarray, max_error: float = 60.0) -> List[int]:
    """For each placed face, the index of the detection whose landmarks are closest (mean error in
    template pixels, below ``max_error``), or -1. Greedy by error; each detection used once."""
    pairs = sorted(
        (face.landmark_error(lm), i, j) for i, face in enumerate(composite.faces) for j, lm in enumerate(landmarks)
    )
    match = [-1] * len(composite.faces)
    used = set()
    for err, i, j in pairs:
        if err <= max_error and match[i] < 0 and j not in used:
            match[i] = j
            used.add(j)
    return match


@dataclass
class CompositeScore:
    """A detector on one composite: per placed face the matched detection's landmark error (template
    pixels) and aligned-crop PSNR (dB), NaN where missed; detections matching no face are false alarms."""

    landmark_errors: List[float]
    crop_psnrs: List[float]
    false_alarms: int

    @property
    def found(self) -> int:
        return int(np.sum(np.isfinite(self.landmark_errors)))


def reference_crop(face: PlacedFace, crop_size: int) -> np.ndarray:
    """The true aligned crop: the source face resized (area) to ``crop_size``."""
    return cv2.resize(_load_face(face.source, max_size=512), (crop_size, crop_size), interpolation=cv2.INTER_AREA)


def score_detections(composite: Composite, landmarks: np.ndarray, crop_size: int = 128) -> CompositeScore:
    """Match ``landmarks`` (N, 5, 2) to the placed faces and score each match (see the module docstring)."""
    from faces.align import align_face
    from utils.metrics import psnr

    match = match_detections(composite, landmarks)
    errors, psnrs = [], []
    for face, j in zip(composite.faces, match):
        if j < 0:
            errors.append(float("nan"))
            psnrs.append(float("nan"))
            continue
        crop, _ = align_face(composite.image, landmarks[j], crop_size)
        errors.append(face.landmark_error(landmarks[j]))
        psnrs.append(psnr(np.clip(crop, 0, 1), reference_crop(face, crop_size)))
    return CompositeScore(errors, psnrs, len(landmarks) - sum(j >= 0 for j in match))


def standard_composites(
    ffhq_dir: Path,
    celebref_dir: Path,
    count: int,
    seed: int = 0,
    size: Tuple[int, int] = (720, 1080),
    face_px: Tuple[float, float] = (140.0, 260.0),
) -> List[Composite]:
    """``count`` composites of two or three faces each: one FFHQ face (1024 px source) and one or two
    CelebRef-HQ faces (512 px), chosen and placed deterministically from ``seed`` (see make_composite)."""
    ffhq = sorted(Path(ffhq_dir).glob("*.png"))
    celebref = sorted(Path(celebref_dir).rglob("*.png"))
    if not ffhq or len(celebref) < 2:
        raise FileNotFoundError(f"need FFHQ faces in {ffhq_dir} and CelebRef-HQ faces in {celebref_dir}")
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        picks = rng.choice(len(celebref), size=1 + i % 2, replace=False)
        faces = [ffhq[i % len(ffhq)]] + [celebref[int(k)] for k in picks]
        out.append(
            make_composite(
                faces,
                seed=seed * 10_000 + i,
                size=size,
                face_px=face_px,
                background_name=BACKGROUNDS[i % len(BACKGROUNDS)],
            )
        )
    return out
