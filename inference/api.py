"""The Python API: ``restore(image, ...) -> image`` on a numpy array or a PIL image.

It runs :class:`inference.interactive.Restorer` on the pixels in memory, so the result equals the command
line's for the same key, config, method and seed, returned as the input was (PIL or array, same dtype and
channels). Restorers are kept per device.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple, Union

import numpy as np
from PIL import Image

from inference.interactive import DEFAULT_CONFIG, Restorer
from utils.image_io import EXIF_ORIENTATION_TAG

ImageLike = Union[np.ndarray, Image.Image]
_RESTORERS: Dict[str, Restorer] = {}
_PIL_AS = {"1": "L", "P": "RGB", "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB"}
_PIL_16 = ("I", "I;16", "I;16L", "I;16B", "I;16N")


def restore(
    image: ImageLike,
    *,
    key: str = "image",
    aligned: bool = True,
    config: str = DEFAULT_CONFIG,
    method: str = "dynfacerestore",
    seed: int = 0,
    eta: str | float | None = None,
    steps: Optional[int] = None,
    solver: Optional[str] = None,
    upscale: float = 1.0,
    alpha: str = "keep",
    device: str = "cpu",
) -> ImageLike:
    """Restore ``image``: an aligned face (``aligned``), or a whole photo whose faces are detected, restored and
    pasted back. ``key`` (a file's stem) and ``seed`` seed the sampling; the other settings are the command line's.
    Raises ``inference.inputs.InputSkip`` for an image the command line would skip, ``ValueError`` for bad
    settings or pixels."""
    pixels, orientation = _pixels(image)
    restorer = _RESTORERS.setdefault(device, Restorer(device=device))
    name = f"{key}.png"
    report = restorer.restore_image(
        pixels,
        name=name,
        orientation=orientation,
        alpha=alpha,
        config=config,
        method=method,
        eta=eta,
        seed=seed,
        aligned=aligned,
        upscale=upscale,
        steps=steps,
        solver=solver,
    )
    out = report.output()
    if isinstance(image, Image.Image):
        return Image.fromarray(out)
    return out.reshape(out.shape[:2] + (1,)) if np.ndim(image) == 3 and np.shape(image)[2] == 1 else out


def _pixels(image: ImageLike) -> Tuple[np.ndarray, int]:
    """Decoded pixels (RGB(A) order) and the EXIF orientation to apply (1 for an array)."""
    if isinstance(image, Image.Image):
        mode = _PIL_AS.get(image.mode, image.mode)
        if image.mode == "P" and "transparency" in image.info:
            mode = "RGBA"
        orientation = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
        pixels = np.asarray(image.convert(mode) if mode != image.mode else image)
        if image.mode in _PIL_16:
            pixels = np.clip(pixels, 0, 65535).astype(np.uint16)
        return pixels, orientation if orientation in range(1, 9) else 1
    if not isinstance(image, np.ndarray):
        raise TypeError(f"restore takes a numpy array or a PIL image, got {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ValueError(f"restore takes HxW, HxWx1, HxWx3 or HxWx4 pixels, got shape {image.shape}")
    return image, 1
