"""Input files of an inference run: listing, sharding, per-image seeds, reading and normalising.

Rank r takes ``sorted(files)[r::world]``; an image's key is its path relative to ``-i`` without suffix, and
its seed a hash of (``--seed``, key). HQ references match by stem. Files that cannot be read, or are smaller
than ``min_side``, raise :class:`InputSkip`; larger than ``max_side`` are downscaled (docs/method.md
section 11).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image

from utils.image_file import FileFacts, faithful_pixels, read_image_file
from utils.image_io import IMAGE_EXTENSIONS, ImageReadError, list_images

SEED_BITS = 63  # torch.Generator.manual_seed takes any non-negative 64-bit value


class InputSkip(Exception):
    """A file that is skipped; the message is the one-line reason (the file is named by the caller)."""


@dataclass
class InputItem:
    path: Path
    key: str
    hq: Optional[Path] = None


@dataclass
class LoadedImage:
    """Float32 HxWx3 RGB [0, 1] pixels (the models' input), the notes on what was converted and the file's facts."""

    image: np.ndarray
    notes: List[str] = field(default_factory=list)
    original_size: Tuple[int, int] = (0, 0)  # (height, width) upright, as read from the file
    facts: FileFacts = field(default_factory=FileFacts)

    def output(self, result: np.ndarray) -> np.ndarray:
        """The pixels to write for ``result`` (restored from :attr:`image`), as the file was."""
        return faithful_pixels(result, self.image, self.facts)


def list_inputs(
    path: str | os.PathLike, recursive: bool = False, exclude: Sequence[str | os.PathLike] = ()
) -> Tuple[List[InputItem], List[str]]:
    """Sorted inputs under ``path`` (folder or single file) and messages about what was left out: files
    without an image extension, duplicate keys, and files under a folder of ``exclude`` (a run's outputs)."""
    path = Path(path)
    files = list_images(path, recursive=recursive)
    messages = []
    if path.is_dir():
        pattern = "**/*" if recursive else "*"
        others = sorted(
            p
            for p in path.glob(pattern)
            if p.is_file() and p.suffix.lower() not in IMAGE_EXTENSIONS and not p.name.startswith(".")
        )
        for folder in (Path(f).resolve() for f in exclude):
            outputs = [f for f in files + others if f.resolve().is_relative_to(folder)]
            if outputs:
                messages.append(
                    f"{path}: leaving out the {len(outputs)} file(s) under the output folder {folder}: "
                    "outputs are not read as inputs"
                )
            files = [f for f in files if f not in outputs]
            others = [f for f in others if f not in outputs]
        if others:
            shown = ", ".join(p.name for p in others[:3]) + (" ..." if len(others) > 3 else "")
            messages.append(
                f"{path}: ignoring {len(others)} file(s) without an image extension {list(IMAGE_EXTENSIONS)}: {shown}"
            )
    items: List[InputItem] = []
    seen: Dict[str, Path] = {}
    for f in files:
        key = f.stem if f == path else f.relative_to(path).with_suffix("").as_posix()
        if key in seen:
            messages.append(f"{f}: skipped: same name as {seen[key]} (outputs would collide)")
            continue
        seen[key] = f
        items.append(InputItem(f, key))
    return items, messages


def match_hq(items: Sequence[InputItem], hq_path: Optional[str | os.PathLike], recursive: bool = False) -> List[str]:
    """Set ``item.hq`` by file stem; returns messages (duplicate HQ stems; the first sorted one is used)."""
    if hq_path is None:
        return []
    hq_path = Path(hq_path)
    hq_files = list_images(hq_path, recursive=recursive)
    if hq_path.is_file() and len(items) == 1 and items[0].path.is_file():
        items[0].hq = hq_path
        return []
    by_stem: Dict[str, Path] = {}
    messages = []
    for f in hq_files:
        if f.stem in by_stem:
            messages.append(f"{f}: HQ reference ignored: stem '{f.stem}' already matched by {by_stem[f.stem]}")
            continue
        by_stem[f.stem] = f
    for item in items:
        item.hq = by_stem.get(item.path.stem)
    return messages


def shard(items: Sequence, rank: int, world_size: int) -> list:
    """This rank's share: ``items[rank::world_size]`` (disjoint, covering, sizes differ by at most 1)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside [0, {world_size})")
    return list(items)[rank::world_size]


def image_seed(seed: int, key: str, index: int = 0) -> int:
    """Seed of one image (``index``: face number in a whole image): SHA-256 of (seed, key, index)."""
    digest = hashlib.sha256(f"{int(seed)}\0{key}\0{int(index)}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << SEED_BITS) - 1)


def header_notes(path: Path) -> List[str]:
    """Conversions read from the file header that :class:`FileFacts` cannot tell (Pillow, no pixel decoding)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                mode = im.mode
    except Exception:  # noqa: BLE001 - the header is only for notes; reading reports real problems
        return []
    notes = []
    if mode in ("P", "PA"):
        notes.append("palette image, expanded to RGB")
    if mode == "CMYK":
        notes.append("CMYK image, converted to RGB by the decoder")
    return notes


def load_image(path: Path, min_side: int, max_side: int, alpha: str = "keep") -> LoadedImage:
    """Read ``path`` with notes and facts (``alpha``: keep or drop); enforce the size policy of the module
    docstring; raise :class:`InputSkip`."""
    try:
        img, facts = read_image_file(path, alpha)
    except ImageReadError as err:
        raise InputSkip(str(err).removeprefix(f"{path}: ")) from None
    return sized_image(img, facts, min_side, max_side, header_notes(path))


def sized_image(
    img: np.ndarray, facts: FileFacts, min_side: int, max_side: int, notes: Sequence[str] = ()
) -> LoadedImage:
    """The size policy of the module docstring on read pixels ``img`` and their ``facts``."""
    h, w = img.shape[:2]
    if min(h, w) < min_side:
        raise InputSkip(f"too small ({w}x{h} px, the shorter side must be at least {min_side} px)")
    notes = facts.notes() + list(notes)
    if max(h, w) > max_side:
        scale = max_side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))

        def shrink(a: np.ndarray) -> np.ndarray:
            return cv2.resize(a, size, interpolation=cv2.INTER_AREA)

        img, facts = shrink(img), facts.transformed(shrink)
        notes.append(f"very large ({w}x{h} px), downscaled to {size[0]}x{size[1]} (--max_side {max_side})")
    return LoadedImage(np.ascontiguousarray(img, dtype=np.float32), notes, (h, w), facts)


def center_square(img: np.ndarray) -> Tuple[np.ndarray, Optional[str]]:
    """Centre crop to a square; the note says so when the image was not square."""
    h, w = img.shape[:2]
    if h == w:
        return img, None
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return img[top : top + s, left : left + s], f"not square ({w}x{h} px), centre-cropped to {s}x{s}"


def resize_to(img: np.ndarray, size: int) -> np.ndarray:
    """Square ``img`` -> ``size`` x ``size``: INTER_AREA when shrinking, bicubic when enlarging, clipped."""
    if img.shape[0] == size and img.shape[1] == size:
        return img
    interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_CUBIC
    return np.clip(cv2.resize(img, (size, size), interpolation=interp), 0.0, 1.0).astype(np.float32)


def square_aligned(loaded: LoadedImage) -> LoadedImage:
    """An aligned face centre-cropped to a square (with a note when it was not), the facts' planes alike."""
    img, note = center_square(loaded.image)
    facts = loaded.facts.transformed(lambda a: center_square(a)[0])
    return LoadedImage(img, loaded.notes + ([note] if note else []), loaded.original_size, facts)


def prepare_aligned(loaded: LoadedImage, resolution: int) -> LoadedImage:
    """An aligned face at the model's resolution: :func:`square_aligned`, then resized (the facts' planes stay
    at the square's size; the writer resizes them to the result)."""
    square = square_aligned(loaded)
    return LoadedImage(resize_to(square.image, resolution), square.notes, square.original_size, square.facts)


def fit_reference(ref: np.ndarray, shape: Tuple[int, int]) -> Tuple[np.ndarray, Optional[str]]:
    """HQ reference brought to the restored image's (height, width) for full-reference metrics."""
    if ref.shape[:2] == tuple(shape):
        return ref, None
    h, w = shape
    note = f"HQ reference {ref.shape[1]}x{ref.shape[0]} resized to {w}x{h} for the metrics"
    if h == w:
        ref, crop = center_square(ref)
        return resize_to(ref, h), note + (f" ({crop})" if crop else "")
    interp = cv2.INTER_AREA if ref.shape[0] * ref.shape[1] > h * w else cv2.INTER_CUBIC
    return np.clip(cv2.resize(ref, (w, h), interpolation=interp), 0.0, 1.0).astype(np.float32), note
