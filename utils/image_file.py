"""What an image file was, beyond the float RGB the models see, and a result written back as such a file.

:func:`read_image_file` returns float32 HxWx3 RGB in [0, 1] with :class:`FileFacts` (orientation, pixel
type, channels, gray, alpha); with ``alpha="keep"`` the models see x = a c + (1 - a) sum(a c) / sum(a).
:func:`faithful_pixels` writes a result back as the file was: gray as BT.601 luma, pixels the restoration
left unchanged as stored, the same pixel type and channels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import cv2
import numpy as np

from utils.image_io import read_upright, to_float_rgb, to_uint8, to_uint16

ALPHA_MODES = ("keep", "drop")
GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float64)


@dataclass
class FileFacts:
    """The file's facts needed to write a result back as the same kind of file."""

    orientation: int = 1  # EXIF orientation applied when reading (1: none)
    dtype: np.dtype = np.dtype(np.uint8)  # stored pixel type: uint8, uint16 or float32
    single_channel: bool = False  # stored as one channel (no alpha)
    gray: bool = False  # one channel, or all colour channels equal
    alpha: Optional[np.ndarray] = None  # HxW float32 [0, 1], upright; None: no alpha, or dropped
    colour: Optional[np.ndarray] = None  # HxWx3 float32 stored colour under the alpha (the models see x)
    alpha_dropped: bool = False  # the file had an alpha plane, dropped (alpha="drop")

    def transformed(self, fn: Callable[[np.ndarray], np.ndarray]) -> "FileFacts":
        """The facts after the geometric step ``fn`` that was applied to the image."""
        return replace(
            self,
            alpha=None if self.alpha is None else np.clip(fn(self.alpha), 0.0, 1.0),
            colour=None if self.colour is None else np.clip(fn(self.colour), 0.0, 1.0),
        )

    def notes(self) -> List[str]:
        """What reading did and writing will do, one phrase each."""
        notes = []
        if self.orientation != 1:
            notes.append(f"EXIF orientation {self.orientation} applied: restored upright, written without the tag")
        if self.dtype == np.uint16:
            notes.append("16-bit image: written at 16 bits, pixels outside the restored faces unchanged")
        elif self.dtype.kind == "f":
            notes.append("floating-point image, clipped to [0, 1] and written at 8 bits")
        if self.gray:
            notes.append(
                "grayscale image: restored in RGB, projected back to gray"
                + (" (1 channel)" if self.single_channel else "")
            )
        if self.alpha is not None:
            notes.append(
                "alpha kept: transparent pixels shown to the models on the mean colour, the output keeps "
                "the alpha (--alpha drop: opaque RGB)"
            )
        if self.alpha_dropped:
            notes.append("alpha channel dropped (--alpha drop)")
        return notes


def read_image_file(path: str | os.PathLike, alpha: str = "keep") -> Tuple[np.ndarray, FileFacts]:
    """The models' float RGB input of ``path`` and its :class:`FileFacts` (module docstring); raises
    ``utils.image_io.ImageReadError`` for a file that cannot be used."""
    pixels, orientation = read_upright(path)
    return from_pixels(pixels, orientation, alpha, Path(path))


def from_pixels(
    pixels: np.ndarray, orientation: int = 1, alpha: str = "keep", name: Path = Path("image")
) -> Tuple[np.ndarray, FileFacts]:
    """:func:`read_image_file` for decoded, upright pixels (HxW or HxWxC, RGB(A) order)."""
    if alpha not in ALPHA_MODES:
        raise ValueError(f"alpha must be one of {ALPHA_MODES}, got {alpha!r}")
    rgb = to_float_rgb(pixels, name)
    stored = pixels if pixels.ndim == 3 else pixels[:, :, None]
    channels = stored.shape[2]
    colour = stored[:, :, : 1 if channels <= 2 else 3]
    gray = colour.shape[2] == 1 or bool(
        np.array_equal(colour[:, :, 0], colour[:, :, 1]) and np.array_equal(colour[:, :, 0], colour[:, :, 2])
    )
    keep = channels in (2, 4) and alpha == "keep"
    facts = FileFacts(
        orientation,
        np.dtype(np.float32) if pixels.dtype.kind == "f" else pixels.dtype,
        single_channel=colour.shape[2] == 1 and not keep,
        gray=gray,
        alpha_dropped=channels in (2, 4) and not keep,
    )
    if keep:
        facts.alpha = to_float_rgb(stored[:, :, -1], name)[:, :, 0]
        facts.colour = rgb
        rgb = composite_on_mean(rgb, facts.alpha)
    return rgb, facts


def composite_on_mean(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """x = a c + (1 - a) mean_a(c) (module docstring); mid-gray when every pixel is transparent."""
    a = alpha[:, :, None].astype(np.float64)
    total = a.sum()
    mean = (a * rgb).sum(axis=(0, 1)) / total if total > 0 else np.full(3, 0.5)
    return (a * rgb + (1.0 - a) * mean).astype(np.float32)


def project_gray(img: np.ndarray) -> np.ndarray:
    """HxWx3 -> HxWx3 with every channel g = 0.299 R + 0.587 G + 0.114 B (exact on equal channels up to float32
    rounding)."""
    g = (img.astype(np.float64) @ GRAY_WEIGHTS).astype(np.float32)
    return np.repeat(g[:, :, None], 3, axis=2)


def faithful_pixels(result: np.ndarray, model_input: np.ndarray, facts: FileFacts) -> np.ndarray:
    """The pixels to store for ``result`` (float RGB [0, 1]), restored from ``model_input``, as the file
    ``facts`` describes (module docstring): RGB(A) order, HxW for one channel."""
    out = project_gray(result) if facts.gray else np.asarray(result, dtype=np.float32)
    if result.shape == model_input.shape:
        unchanged = np.all(result == model_input, axis=2, keepdims=True)
        stored = model_input if facts.colour is None or facts.colour.shape != result.shape else facts.colour
        out = np.where(unchanged, stored, out)
    quantise = {np.dtype(np.uint8): to_uint8, np.dtype(np.uint16): to_uint16}.get(facts.dtype, _clip_float)
    if facts.alpha is not None:
        alpha = resize_plane(facts.alpha, out.shape[:2])
        return quantise(np.concatenate([out, alpha[:, :, None]], axis=2))
    return quantise(out[:, :, 0] if facts.single_channel else out)


def resize_plane(plane: np.ndarray, hw: Tuple[int, int]) -> np.ndarray:
    """``plane`` at (height, width) ``hw``: area when shrinking, bilinear when enlarging, clipped to [0, 1]."""
    if plane.shape[:2] == tuple(hw):
        return plane
    interp = cv2.INTER_AREA if plane.shape[0] * plane.shape[1] > hw[0] * hw[1] else cv2.INTER_LINEAR
    return np.clip(cv2.resize(plane, (hw[1], hw[0]), interpolation=interp), 0.0, 1.0)


def _clip_float(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.clip(img, 0.0, 1.0), dtype=np.float32)
