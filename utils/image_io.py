"""Image I/O shared by every script: robust reading, atomic writing, tensor conversion.

numpy: float32 HxWx3 RGB in [0, 1]; models: float32 NCHW RGB in [-1, 1]. Reading applies the EXIF
orientation and raises :class:`ImageReadError` (file and reason) on anything unreadable; writing stores
uint8 / uint16 / float pixels with 1, 3 or 4 channels and no metadata.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

import cv2
import numpy as np
import torch
from PIL import Image

_UMASK = os.umask(0)
os.umask(_UMASK)  # read the process umask once (os.umask can only be read by setting it)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
EXIF_ORIENTATION_TAG = 0x0112


class ImageReadError(ValueError):
    """A file that cannot be used as an image; the message names the file and the reason."""


def list_images(path: str | os.PathLike, recursive: bool = False) -> List[Path]:
    """Sorted image files under ``path`` (a folder), or ``[path]`` for a single file."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"no such file or folder: {path}")
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read ``path`` upright as float32 HxWx3 RGB in [0, 1]; raise :class:`ImageReadError` if impossible."""
    pixels, _ = read_upright(path)
    return to_float_rgb(pixels, Path(path))


def read_upright(path: str | os.PathLike) -> Tuple[np.ndarray, int]:
    """The decoded pixels as stored (dtype and channels kept, RGB(A) order), turned upright by the file's
    EXIF orientation, and that orientation (1: none); raise :class:`ImageReadError` if unreadable."""
    path = Path(path)
    try:
        raw = np.fromfile(str(path), dtype=np.uint8)
    except OSError as err:
        raise ImageReadError(f"{path}: cannot read file ({err.strerror})") from err
    if raw.size == 0:
        raise ImageReadError(f"{path}: empty file")
    img = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)  # ignores the EXIF orientation
    if img is None:
        raise ImageReadError(f"{path}: not a decodable image (corrupt or unsupported format)")
    if img.ndim == 3 and img.shape[2] in (3, 4):
        img = np.concatenate([img[:, :, 2::-1], img[:, :, 3:]], axis=2)
    orientation = exif_orientation(raw.tobytes())
    return np.ascontiguousarray(apply_orientation(img, orientation)), orientation


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation (1-8) of an encoded image, 1 when it has none or it cannot be read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                value = im.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - a header Pillow cannot parse has no orientation we could apply
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """``img`` (HxW[xC], stored order) as a viewer shows it for EXIF ``orientation`` (as PIL's exif_transpose):
    2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 anticlockwise."""
    transforms = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }
    return transforms[orientation](img)


def to_float_rgb(img: np.ndarray, path: Path) -> np.ndarray:
    """Decoded pixels (RGB(A) order, 1-4 channels, uint8 / uint16 / float) -> float32 HxWx3 RGB [0, 1], alpha
    dropped; raise :class:`ImageReadError` (naming ``path``) for a pixel type or channel count it cannot use."""
    if img.dtype == np.uint8:
        out = img.astype(np.float32) / 255.0
    elif img.dtype == np.uint16:
        out = img.astype(np.float32) / 65535.0
    elif img.dtype in (np.float32, np.float64):
        out = np.clip(img.astype(np.float32), 0.0, 1.0)
    else:
        raise ImageReadError(f"{path}: unsupported pixel type {img.dtype}")
    if out.ndim == 2:
        out = out[:, :, None]
    channels = out.shape[2]
    if channels == 1:
        out = np.repeat(out, 3, axis=2)
    elif channels == 2:  # gray + alpha
        out = np.repeat(out[:, :, :1], 3, axis=2)
    elif channels in (3, 4):
        out = out[:, :, :3]
    else:
        raise ImageReadError(f"{path}: unsupported channel count {channels}")
    return np.ascontiguousarray(out)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """float RGB [0, 1] -> contiguous uint8 (rounded, clipped): what :func:`write_image` stores."""
    return np.ascontiguousarray(np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8))


def to_uint16(img: np.ndarray) -> np.ndarray:
    """float [0, 1] -> contiguous uint16 (round(65535 x), clipped); exact inverse of v / 65535 in float32."""
    return np.ascontiguousarray(np.round(np.clip(img, 0.0, 1.0) * 65535.0).astype(np.uint16))


def write_image(path: str | os.PathLike, img: np.ndarray) -> Path:
    """Write pixels atomically (temp file in the same folder, then rename): float [0, 1] (stored as uint8), uint8
    or uint16, HxW or HxWxC with C in 1, 3, 4 (RGB(A) order)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if img.dtype not in (np.uint8, np.uint16):
        img = to_uint8(img)
    if img.ndim == 3 and img.shape[2] in (3, 4):
        img = np.concatenate([img[:, :, 2::-1], img[:, :, 3:]], axis=2)
    try:
        ok, buf = cv2.imencode(path.suffix or ".png", np.ascontiguousarray(img))
    except cv2.error:  # OpenCV raises (instead of returning False) for an unknown extension
        ok = False
    if not ok:
        raise ValueError(f"{path}: cannot encode image as {path.suffix!r} (use one of {IMAGE_EXTENSIONS})")
    write_bytes_atomic(path, buf.tobytes())
    return path


class DiskWriteError(OSError):
    """A file that could not be written (full disk, read-only or unwritable folder): "<path>: cannot write
    (<the OS's reason>)", e.g. "(no space left on device)"."""


def write_failure(path: str | os.PathLike, err: BaseException) -> Optional[DiskWriteError]:
    """The :class:`DiskWriteError` of ``path`` when ``err`` is an OSError or was raised while handling one
    (torch.save reports a full disk as a RuntimeError raised during the OSError); None otherwise."""
    cause: Optional[BaseException] = err
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    if cause is None or isinstance(cause, DiskWriteError):
        return cause
    reason = cause.strerror or str(cause) or type(cause).__name__
    return DiskWriteError(f"{path}: cannot write ({reason[:1].lower() + reason[1:]})")


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace`` (atomic on POSIX); a failed
    write leaves ``path`` as it was, no temporary file, and raises :class:`DiskWriteError` if the OS refused."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        failure = write_failure(path, err)
        if failure is None:
            raise
        raise failure from None
    return path


def img2tensor(imgs: np.ndarray | Iterable[np.ndarray]) -> torch.Tensor:
    """HxWx3 [0, 1] array (or a list of equally sized ones) -> float32 NCHW tensor in [-1, 1]."""
    if isinstance(imgs, np.ndarray) and imgs.ndim == 3:
        imgs = [imgs]
    batch = np.stack([np.asarray(im, dtype=np.float32) for im in imgs], axis=0)
    return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous() * 2.0 - 1.0


def tensor2img(x: torch.Tensor) -> np.ndarray:
    """NCHW (or CHW) tensor in [-1, 1] -> float32 NxHxWx3 (or HxWx3) array in [0, 1]."""
    x = x.detach().float().cpu().clamp(-1.0, 1.0) * 0.5 + 0.5
    if x.ndim == 3:
        return x.permute(1, 2, 0).numpy()
    return x.permute(0, 2, 3, 1).numpy()
