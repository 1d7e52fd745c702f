"""Builds DSST tables (models/dsst.py; docs/method.md section 5); run by scripts/make_dsst.py.

    KL_t(sigma) = a_t ||x - G_sigma * x||^2 / (2 (1 - a_t) N),   averaged over HQ faces in [-1, 1];
    t(sigma) = the smallest t with KL_t(sigma) < tau, i.e. a_t / (1 - a_t) < 2 tau / r(sigma),

r(sigma) the mean of ||x - G_sigma x||^2 / N. ``calibrate: {sigma_512, start_t}`` sets tau so that sigma_512
starts at start_t (:func:`tau_for_start`). t is made non-decreasing in sigma by a cumulative maximum.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import cv2
import numpy as np
import torch

from data.sigma_star import BlurFit
from models.dsst import DSSTTable, SigmaLike, convert_sigma
from models.gaussian_diffusion import get_named_beta_schedule
from utils.config import ConfigError, load_config
from utils.image_io import img2tensor, list_images, read_image


@dataclass
class GridConfig:
    """Grid of sigmas in 512-px units (resolution-free): ``linspace(sigma_512_min, sigma_512_max, num)``."""

    sigma_512_min: float = 0.0
    sigma_512_max: float = 32.0
    num: int = 129


@dataclass
class CalibrationConfig:
    """Choose tau so that the blur ``sigma_512`` (512-px units) starts at the original step ``start_t``."""

    sigma_512: float = 16.0
    start_t: int = 400


@dataclass
class DSSTBuildConfig:
    """configs/dsst/*.yaml: exactly one of ``tau`` and ``calibrate``."""

    resolution: int = 64
    noise_schedule: str = "linear"
    num_steps: int = 1000
    tau: Optional[float] = None
    calibrate: Optional[CalibrationConfig] = None
    batch_size: int = 64
    grid: GridConfig = field(default_factory=GridConfig)


def sigma_grid(grid: GridConfig, resolution: int) -> np.ndarray:
    """The grid's sigmas in pixels at ``resolution``: sigma = sigma_512 * resolution / 512."""
    if grid.num < 2 or not 0 <= grid.sigma_512_min < grid.sigma_512_max:
        raise ValueError(f"bad sigma grid {grid}: need 0 <= sigma_512_min < sigma_512_max and num >= 2")
    return convert_sigma(np.linspace(grid.sigma_512_min, grid.sigma_512_max, grid.num), 512, resolution)


def alphas_cumprod(noise_schedule: str, num_steps: int) -> np.ndarray:
    """alpha_bar_t = prod_{s <= t} (1 - beta_s), t = 0 .. num_steps - 1 (float64)."""
    return np.cumprod(1.0 - get_named_beta_schedule(noise_schedule, num_steps))


def load_faces(paths: Sequence[Union[str, Path]], resolution: int) -> torch.Tensor:
    """Read ``paths`` as a float32 (N, 3, R, R) tensor in [-1, 1]; resized with area (down) / cubic (up)."""
    images = []
    for path in paths:
        img = read_image(path)
        if img.shape[0] != resolution or img.shape[1] != resolution:
            shrink = img.shape[0] > resolution
            img = cv2.resize(img, (resolution, resolution), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
        images.append(img)
    return img2tensor(images)


def mean_blur_residual(
    image_paths: Sequence[Union[str, Path]],
    sigmas: SigmaLike,
    resolution: int,
    batch_size: int = 64,
    device: Union[str, torch.device] = "cpu",
) -> np.ndarray:
    """r(sigma) = mean over images of ||x - G_sigma * x||^2 / (3 R^2), x in [-1, 1] at ``resolution``, all sigmas at
    once through ``data.sigma_star.BlurFit``; float64 (len(sigmas),)."""
    sigmas = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    if len(image_paths) == 0:
        raise ValueError("mean_blur_residual: no images given")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    total = np.zeros(len(sigmas), dtype=np.float64)
    grid = torch.from_numpy(sigmas)
    for start in range(0, len(image_paths), batch_size):
        x = load_faces(image_paths[start : start + batch_size], resolution).to(device)
        loss = BlurFit(x, x).loss(grid.expand(x.shape[0], -1).to(device))  # (n, S): ||G_sigma x - x||^2
        total += (loss.clamp(min=0.0) / x[0].numel()).sum(0).numpy()
    total[sigmas == 0] = 0.0
    return total / len(image_paths)


def kl_per_pixel(residual: SigmaLike, alphas_cumprod: SigmaLike) -> np.ndarray:
    """KL_t = a_t r / (2 (1 - a_t)): shape (len(residual), len(alphas_cumprod)) (scalar r -> (T,))."""
    r = np.asarray(residual, dtype=np.float64)
    a = np.asarray(alphas_cumprod, dtype=np.float64)
    return r[..., None] * (a / (2.0 * (1.0 - a)))


def start_steps_from_residual(residual: SigmaLike, alphas_cumprod: SigmaLike, tau: float) -> np.ndarray:
    """Smallest t with KL_t < tau per residual (int64; T - 1 if none): KL_t decreases in t, so count KL_t >= tau."""
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    kl = kl_per_pixel(residual, alphas_cumprod)
    steps = (kl >= tau).sum(axis=-1)
    return np.minimum(steps, kl.shape[-1] - 1).astype(np.int64)


def tau_for_start(residual: float, alphas_cumprod: SigmaLike, start_t: int) -> float:
    """tau making ``start_t`` the smallest step with KL_t < tau for ``residual``: the geometric mean of KL_{start_t} and
    KL_{start_t - 1}."""
    kl = kl_per_pixel(float(residual), alphas_cumprod)
    if not 1 <= int(start_t) < kl.shape[-1]:
        raise ValueError(f"start_t must be in [1, {kl.shape[-1] - 1}], got {start_t}")
    if not residual > 0:
        raise ValueError(f"the reference blur must change the faces (residual > 0), got {residual}")
    return float(np.sqrt(kl[int(start_t) - 1] * kl[int(start_t)]))


def file_list_hash(image_paths: Sequence[Union[str, Path]], root: Optional[Union[str, Path]] = None) -> str:
    """sha256 of the sorted names relative to ``root`` (default: the files' common folder), '\\n'-joined."""
    paths = [Path(p) for p in image_paths]
    if root is None:
        root = Path(os.path.commonpath([str(p.parent) for p in paths]))
    names = sorted(Path(os.path.relpath(p, root)).as_posix() for p in paths)
    return hashlib.sha256("\n".join(names).encode("utf-8")).hexdigest()


def build_table(
    image_paths: Sequence[Union[str, Path]],
    sigmas: SigmaLike,
    *,
    resolution: int,
    noise_schedule: str,
    num_steps: int,
    tau: Optional[float] = None,
    calibrate: Optional[Sequence[float]] = None,
    batch_size: int = 64,
    root: Optional[Union[str, Path]] = None,
    device: Union[str, torch.device] = "cpu",
) -> DSSTTable:
    """The table from HQ faces: r(sigma) -> smallest t with KL < tau (module docstring).

    Exactly one of ``tau`` and ``calibrate = (sigma_px, start_t)``. ``root``: the folder the hashed names are
    relative to (default: the files' common folder)."""
    if (tau is None) == (calibrate is None):
        raise ValueError("build_table: give exactly one of tau and calibrate")
    sigmas = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    measured = sigmas if calibrate is None else np.append(sigmas, float(calibrate[0]))
    residual = mean_blur_residual(image_paths, measured, resolution, batch_size=batch_size, device=device)
    abar = alphas_cumprod(noise_schedule, num_steps)
    if calibrate is not None:
        tau, residual = tau_for_start(float(residual[-1]), abar, int(calibrate[1])), residual[:-1]
    steps = start_steps_from_residual(residual, abar, tau)
    steps = np.maximum.accumulate(steps)
    table = DSSTTable(
        sigmas=[float(s) for s in sigmas],
        t_values=[int(t) for t in steps],
        tau=float(tau),
        resolution=int(resolution),
        noise_schedule=str(noise_schedule),
        num_steps=int(num_steps),
        num_images=len(image_paths),
        file_list_hash=file_list_hash(image_paths, root),
        residuals=[float(r) for r in residual],
    )
    table.validate()
    return table


def resolve_images(images: Union[str, Path, Sequence[Union[str, Path]]], max_images: Optional[int] = None):
    """(paths, root) of ``images``: a folder, a .txt list relative to its folder, or a sequence of those; the first
    ``max_images`` in list order."""
    if not isinstance(images, (str, Path)):
        parts = [resolve_images(one) for one in images]
        paths = [p for part, _ in parts for p in part][:max_images]
        return paths, Path(os.path.commonpath([str(root) for _, root in parts]))
    images = Path(images)
    if images.suffix == ".txt":
        if not images.is_file():
            raise FileNotFoundError(f"image list not found: {images}")
        root = images.parent
        paths = [root / name for name in images.read_text().split()]
    else:
        root = images if images.is_dir() else images.parent
        paths = list_images(images)
    if max_images is not None:
        paths = paths[:max_images]
    if not paths:
        raise ValueError(f"no images in {images}")
    return paths, root


def build_from_config(images, config, resolution=None, max_images=None, device="cpu") -> DSSTTable:
    """The table of ``config`` (configs/dsst/*.yaml) over its ``images``, tau from ``tau`` or ``calibrate``."""
    paths, root = resolve_images(images, max_images)
    return _build(paths, root, config, resolution, device)


def _build(paths, root, config, resolution, device) -> DSSTTable:
    """The table of the image files ``paths`` with the settings of ``config``."""
    cfg = load_config(config, DSSTBuildConfig)
    if (cfg.tau is None) == (cfg.calibrate is None):
        raise ConfigError(f"{config}: give exactly one of 'tau' and 'calibrate'")
    resolution = int(resolution or cfg.resolution)
    calibrate = None
    if cfg.calibrate is not None:
        calibrate = (convert_sigma(float(cfg.calibrate.sigma_512), 512, resolution), int(cfg.calibrate.start_t))
    return build_table(
        paths,
        sigma_grid(cfg.grid, resolution),
        resolution=resolution,
        noise_schedule=cfg.noise_schedule,
        num_steps=cfg.num_steps,
        tau=cfg.tau,
        calibrate=calibrate,
        batch_size=cfg.batch_size,
        root=root,
        device=device,
    )


def half_split(
    images, config, resolution=None, device="cpu", full: Optional[DSSTTable] = None, max_images: Optional[int] = None
) -> Dict[str, Any]:
    """Tables from the even and the odd images (each calibrated on its own), compared with each other and with
    ``full``: tau of each half and the largest / mean |t| difference over the grid."""
    paths, root = resolve_images(images, max_images)
    if len(paths) < 2:
        raise ValueError("half_split needs at least 2 images")
    halves = [_build(part, root, config, resolution, device) for part in (paths[0::2], paths[1::2])]
    ta, tb = (np.asarray(h.t_values) for h in halves)
    out = {
        "split": "even / odd positions of the image list",
        "num_images": [h.num_images for h in halves],
        "tau": [h.tau for h in halves],
        "max_abs_dt_between_halves": int(np.abs(ta - tb).max()),
        "mean_abs_dt_between_halves": float(np.abs(ta - tb).mean()),
    }
    if full is not None:
        tf = np.asarray(full.t_values)
        out["max_abs_dt_half_vs_all"] = int(max(np.abs(ta - tf).max(), np.abs(tb - tf).max()))
    return out
