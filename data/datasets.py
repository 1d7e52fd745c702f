"""HQ face datasets with on-the-fly blind degradation and sigma* (docs/method.md section 2).

Item ``index`` of epoch ``epoch`` draws everything from ``item_rng(seed, index, epoch)`` =
``np.random.default_rng([seed, epoch, index])``: the same data for any number of workers or ranks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Sequence, Union

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from data.degradation import DegradationConfig, degrade, load_degradation_config, to_gray
from data.sigma_star import sigma_star
from utils.image_io import IMAGE_EXTENSIONS, list_images, read_image

Source = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]


def read_file_list(path: Union[str, os.PathLike]) -> List[Path]:
    """Image paths from a list file (one per line, relative to the list file's folder; blank lines
    and lines starting with '#' ignored) or from a folder (every image under it, recursively, sorted)."""
    path = Path(path)
    if path.is_dir():
        files = list_images(path, recursive=True)
        if not files:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under folder {path}")
        return files
    if not path.is_file():
        raise FileNotFoundError(f"file list or image folder not found: {path}")
    files = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        file = Path(entry) if Path(entry).is_absolute() else path.parent / entry
        if not file.is_file():
            raise FileNotFoundError(f"{path}, line {lineno}: image not found: {file}")
        files.append(file)
    if not files:
        raise ValueError(f"file list {path} names no images")
    return files


def item_rng(seed: int, index: int, epoch: int = 0) -> np.random.Generator:
    """The generator of item ``index`` in ``epoch`` (see the module docstring)."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


def load_face(path: Union[str, os.PathLike], resolution: int) -> np.ndarray:
    """Read an image as float32 HxWx3 RGB [0, 1], centre-cropped to a square and resized to ``resolution``
    (area interpolation when shrinking, bicubic when enlarging)."""
    img = read_image(path)
    h, w = img.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    img = img[top : top + side, left : left + side]
    if side != resolution:
        interp = cv2.INTER_AREA if side > resolution else cv2.INTER_CUBIC
        img = np.clip(cv2.resize(img, (resolution, resolution), interpolation=interp), 0.0, 1.0)
    return np.ascontiguousarray(img, dtype=np.float32)


def _chw(img: np.ndarray) -> torch.Tensor:
    """HxWx3 [0, 1] -> CHW float32 [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1) * 2.0 - 1.0


class FaceDataset(Dataset):
    """Faces at ``resolution`` px, optionally with their blind degradation and sigma*.

    Items: 'hq' CHW float32 in [-1, 1]; 'lq' (with ``degradation``) U(y), CHW in [-1, 1]; 'sigma_star' (with
    ``with_sigma_star``) a float32 scalar tensor; 'path'. A flip (p = 0.5) precedes the degradation; ``length``
    repeats the files cyclically with fresh randomness."""

    def __init__(
        self,
        source: Source,
        resolution: int,
        flip: bool = True,
        degradation: Optional[Union[DegradationConfig, str, os.PathLike, dict]] = None,
        seed: int = 0,
        with_sigma_star: bool = False,
        length: Optional[int] = None,
        sigma_star_kwargs: Optional[dict] = None,
    ):
        if isinstance(source, (str, os.PathLike)):
            self.files = read_file_list(source)
        else:
            self.files = [Path(p) for p in source]
        if not self.files:
            raise ValueError("FaceDataset: empty source")
        if with_sigma_star and degradation is None:
            raise ValueError("FaceDataset: with_sigma_star needs a degradation config")
        self.resolution = int(resolution)
        self.flip = flip
        self.degradation = None if degradation is None else load_degradation_config(degradation)
        self.seed = int(seed)
        self.with_sigma_star = with_sigma_star
        self.sigma_star_kwargs = dict(sigma_star_kwargs or {})
        self.length = len(self.files) if length is None else int(length)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a dataset of {self.length} items")
        path = self.files[index % len(self.files)]
        rng = item_rng(self.seed, index, self.epoch)
        hq = load_face(path, self.resolution)
        if self.flip and rng.uniform() < 0.5:
            hq = np.ascontiguousarray(hq[:, ::-1])
        item = {"path": str(path)}
        if self.degradation is not None:
            lq, params = degrade(hq, rng, self.degradation)
            if params["gray"] and self.degradation.gt_gray:
                hq = to_gray(hq)
            item["lq"] = _chw(lq)
        item["hq"] = _chw(hq)
        if self.with_sigma_star:
            sigma = sigma_star(item["hq"][None], item["lq"][None], **self.sigma_star_kwargs)
            item["sigma_star"] = sigma[0]
        return item
