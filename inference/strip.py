"""The --save_intermediates pictures: the strip LQ | blurred levels (labelled with sigma) | guidance map |
result, and for whole photos the detected faces drawn on the input (:func:`draw_detections`).

Tiles are enlarged (nearest) to at least :data:`MIN_TILE` px and separated by :data:`GAP` px of white.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from utils.image_io import to_uint8

MIN_TILE = 128  # px: smallest displayed tile side (labels need room)
LABEL_BAND = 0.16  # label band height as a fraction of the tile side
GAP = 4  # px between tiles
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _tile(img: np.ndarray, side: int) -> np.ndarray:
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    img = np.clip(img, 0.0, 1.0)
    if img.shape[:2] != (side, side):
        interp = cv2.INTER_NEAREST if img.shape[0] < side else cv2.INTER_AREA
        img = cv2.resize(img, (side, side), interpolation=interp)
    return to_uint8(img)


def _label(text: str, side: int) -> np.ndarray:
    band = np.full((max(12, int(round(side * LABEL_BAND))), side, 3), 255, np.uint8)
    scale = band.shape[0] / 40.0
    thickness = max(1, int(round(scale * 1.5)))
    (tw, th), _ = cv2.getTextSize(text, FONT, scale, thickness)
    if tw > side - 4:  # shrink long labels to fit the tile width
        scale *= (side - 4) / tw
        (tw, th), _ = cv2.getTextSize(text, FONT, scale, thickness)
    org = (max(2, (side - tw) // 2), (band.shape[0] + th) // 2)
    cv2.putText(band, text, org, FONT, scale, (0, 0, 0), thickness, cv2.LINE_AA)  # OpenCV 5: uint8 only
    return band


def make_strip(tiles: Sequence[Tuple[str, np.ndarray]], min_tile: int = MIN_TILE) -> np.ndarray:
    """Labelled tiles side by side -> uint8 HxWx3 RGB. ``tiles``: (label, HxW[x1|3] [0, 1]) pairs."""
    if not tiles:
        raise ValueError("make_strip needs at least one tile")
    side = max(min_tile, max(int(img.shape[0]) for _, img in tiles))
    columns: List[np.ndarray] = []
    for label, img in tiles:
        column = np.concatenate([_label(label, side), _tile(img, side)], axis=0)
        if columns:
            columns.append(np.full((column.shape[0], GAP, 3), 255, np.uint8))
        columns.append(column)
    return np.concatenate(columns, axis=1)


def strip_tiles(
    lq: np.ndarray,
    result: np.ndarray,
    levels: Optional[Sequence[np.ndarray]] = None,
    sigmas: Optional[Sequence[float]] = None,
    guidance_map: Optional[np.ndarray] = None,
    source: Optional[np.ndarray] = None,
    source_label: str = "RM0(y)",
) -> List[Tuple[str, np.ndarray]]:
    """The tiles of one image: LQ | levels "y'_k s=<sigma>" (or the diffused source) | guidance s | result."""
    tiles = [("LQ", lq)]
    if levels is not None:
        for k, (img, sigma) in enumerate(zip(levels, sigmas)):
            tiles.append((f"y'{k + 1} s={sigma:.2f}", img))
    elif source is not None:
        tiles.append((source_label, source))
    if guidance_map is not None:
        tiles.append(("guidance s", guidance_map))
    tiles.append(("result", result))
    return tiles


LANDMARK_COLOURS = ((255, 0, 0), (0, 160, 255), (0, 200, 0), (255, 0, 255), (255, 160, 0))  # template order


def draw_detections(img: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """uint8 RGB copy of ``img`` (HxWx3 [0, 1]) with each face's box (green, its index and score above
    it) and its 5 landmarks (left eye red, right eye blue, nose green, mouth corners magenta / orange)."""
    out = to_uint8(img)
    thickness = max(1, round(max(out.shape[:2]) / 400))
    for k, (box, lms) in enumerate(zip(np.asarray(boxes).reshape(-1, 5), np.asarray(landmarks).reshape(-1, 5, 2))):
        x1, y1, x2, y2 = (int(round(v)) for v in box[:4])
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 255, 0), thickness, cv2.LINE_AA)
        cv2.putText(
            out, f"{k} {box[4]:.2f}", (x1, max(12, y1 - 4)), FONT, 0.4 * thickness, (0, 255, 0), thickness, cv2.LINE_AA
        )
        for (x, y), colour in zip(lms, LANDMARK_COLOURS):
            cv2.circle(out, (int(round(x)), int(round(y))), 2 * thickness, colour, -1, cv2.LINE_AA)
    return out


def title_band(text: str, width: int, height: int = 24) -> np.ndarray:
    """A white uint8 RGB band ``height`` x ``width`` with ``text`` written at its left (a row title)."""
    band = np.full((height, width, 3), 255, np.uint8)
    scale = height / 40.0
    (_, th), _ = cv2.getTextSize(text, FONT, scale, 1)
    cv2.putText(band, text, (4, (height + th) // 2), FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return band


def stack_rows(images: Sequence[np.ndarray], gap: int = 8) -> Optional[np.ndarray]:
    """uint8 RGB images one below the other, left-aligned on white, ``gap`` px apart (None for none)."""
    if not images:
        return None
    width = max(img.shape[1] for img in images)
    rows = []
    for img in images:
        if rows:
            rows.append(np.full((gap, width, 3), 255, np.uint8))
        rows.append(np.pad(img, ((0, 0), (0, width - img.shape[1]), (0, 0)), constant_values=255))
    return np.concatenate(rows, axis=0)
