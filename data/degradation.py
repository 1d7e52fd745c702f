"""Blind face degradation of DifFace / GFPGAN, reproducible from a numpy Generator (docs/method.md section 2).

    y = JPEG_q( (k * x) downarrow_s + n ),    lq_up = U(y) = bicubic resize of y back to the HQ size

k: an 'iso' or 'aniso' Gaussian kernel; s, the noise std and q drawn uniformly from their ranges, given at
``reference_resolution`` (blur and kernel size scale with the resolution). Every draw comes from ``rng`` in a
fixed order and is recorded in ``params``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Tuple, Union

import cv2
import numpy as np
from omegaconf import DictConfig, OmegaConf

from utils.config import ConfigError, load_config

KERNEL_TYPES = ("iso", "aniso")
INTERPOLATIONS = {"bilinear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA}


@dataclass
class DegradationConfig:
    """Every range of the blind degradation; sigma / kernel size at ``reference_resolution`` px."""

    reference_resolution: int = 512
    blur_kernel_size: int = 41
    kernel_list: List[str] = field(default_factory=lambda: ["iso", "aniso"])
    kernel_prob: List[float] = field(default_factory=lambda: [0.5, 0.5])
    blur_sigma: List[float] = field(default_factory=lambda: [0.1, 15.0])
    downsample_range: List[float] = field(default_factory=lambda: [0.8, 32.0])
    min_lq_size: int = 4
    downsample_interpolation: str = "bilinear"
    noise_range: List[float] = field(default_factory=lambda: [0.0, 20.0])
    jpeg_range: List[float] = field(default_factory=lambda: [30.0, 100.0])
    gray_prob: float = 0.01
    gt_gray: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the key of any inconsistent value."""

        def fail(key: str, why: str) -> None:
            raise ConfigError(f"degradation config: '{key}' {why}")

        for key in ("blur_sigma", "downsample_range", "noise_range", "jpeg_range"):
            lo_hi = list(getattr(self, key))
            if len(lo_hi) != 2 or not lo_hi[0] <= lo_hi[1]:
                fail(key, f"must be [low, high] with low <= high, got {lo_hi}")
        if self.blur_sigma[0] <= 0:
            fail("blur_sigma", "must be > 0")
        if self.downsample_range[0] <= 0:
            fail("downsample_range", "must be > 0")
        if self.noise_range[0] < 0:
            fail("noise_range", "must be >= 0")
        if not 1 <= self.jpeg_range[0] <= self.jpeg_range[1] <= 100:
            fail("jpeg_range", "must lie in [1, 100]")
        if self.blur_kernel_size < 3 or self.blur_kernel_size % 2 == 0:
            fail("blur_kernel_size", f"must be odd and >= 3, got {self.blur_kernel_size}")
        if self.reference_resolution <= 0 or self.min_lq_size < 1:
            fail("reference_resolution/min_lq_size", "must be positive")
        unknown = set(self.kernel_list) - set(KERNEL_TYPES)
        if unknown:
            fail("kernel_list", f"has unknown kernel types {sorted(unknown)}; allowed: {KERNEL_TYPES}")
        if (
            len(self.kernel_prob) != len(self.kernel_list)
            or not math.isclose(sum(self.kernel_prob), 1.0)
            or min(self.kernel_prob) < 0
        ):
            fail("kernel_prob", "must be non-negative, one per kernel_list entry, summing to 1")
        if self.downsample_interpolation not in INTERPOLATIONS:
            fail("downsample_interpolation", f"must be one of {sorted(INTERPOLATIONS)}")
        if not 0 <= self.gray_prob <= 1:
            fail("gray_prob", "must lie in [0, 1]")

    def kernel_size(self, resolution: int) -> int:
        """Blur kernel size at ``resolution``: nearest odd integer to size_ref * res / ref_res, >= 3."""
        size = self.blur_kernel_size * resolution / self.reference_resolution
        return max(3, 2 * int(round((size - 1) / 2)) + 1)

    def sigma_range(self, resolution: int) -> Tuple[float, float]:
        """Blur sigma range in pixels at ``resolution``."""
        f = resolution / self.reference_resolution
        return self.blur_sigma[0] * f, self.blur_sigma[1] * f

    def scale_range(self, resolution: int) -> Tuple[float, float]:
        """Downsampling factor range at ``resolution`` (upper end capped so the LQ keeps min_lq_size px)."""
        hi = min(self.downsample_range[1], resolution / self.min_lq_size)
        lo = min(self.downsample_range[0], hi)
        return lo, hi

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_degradation_config(source: Union[str, Path, dict, DictConfig, DegradationConfig]) -> DegradationConfig:
    """A DegradationConfig from a YAML path (flat keys), a mapping (e.g. a section of a training config) or itself."""
    if isinstance(source, DegradationConfig):
        return source
    if isinstance(source, (str, Path)):
        node = load_config(source, DegradationConfig)
        name = str(source)
    else:
        name = "degradation config"
        try:
            node = OmegaConf.merge(OmegaConf.structured(DegradationConfig), source)
        except Exception as err:  # omegaconf reports the unknown key / wrong type
            raise ConfigError(f"{name}: invalid configuration: {str(err).splitlines()[0]}") from None
    try:
        return DegradationConfig(**OmegaConf.to_container(node, resolve=True))
    except ConfigError as err:
        raise ConfigError(f"{name}: {err}") from None


def severity_config(cfg: DegradationConfig, resolution: int, level: int, levels: int = 3) -> DegradationConfig:
    """Part ``level`` (0 = mildest) of ``levels`` equal parts of the blur, downsampling (at ``resolution``) and noise
    ranges, and of the reversed JPEG range; kernel types and gray probability unchanged."""
    if not 0 <= level < levels:
        raise ValueError(f"severity level must be in [0, {levels}), got {level}")

    def part(lo: float, hi: float, k: int) -> List[float]:
        width = (hi - lo) / levels
        return [lo + k * width, lo + (k + 1) * width]

    lo_s, hi_s = cfg.scale_range(resolution)
    return dataclasses.replace(
        cfg,
        blur_sigma=part(*cfg.blur_sigma, level),
        downsample_range=part(lo_s, hi_s, level),
        noise_range=part(*cfg.noise_range, level),
        jpeg_range=part(*cfg.jpeg_range, levels - 1 - level),
    )


def gaussian_kernel2d(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """Normalised bivariate Gaussian on a size x size grid (GFPGAN/BasicSR ``bivariate_Gaussian``)."""
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    cov = rot @ np.diag([sigma_x**2, sigma_y**2]) @ rot.T
    ax = np.arange(size, dtype=np.float64) - size // 2
    xx, yy = np.meshgrid(ax, ax)
    grid = np.stack([xx, yy], axis=-1)
    expo = np.einsum("...i,ij,...j->...", grid, np.linalg.inv(cov), grid)
    kernel = np.exp(-0.5 * expo)
    return kernel / kernel.sum()


def to_gray(img: np.ndarray) -> np.ndarray:
    """RGB [0, 1] -> gray replicated to 3 channels (ITU-R 601 luma, as OpenCV's RGB2GRAY)."""
    gray = cv2.cvtColor(img.astype(np.float32), cv2.COLOR_RGB2GRAY)
    return np.repeat(gray[:, :, None], 3, axis=2)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """``img`` (HxWx3 [0, 1]) through OpenCV JPEG at ``quality``, float32."""
    bgr = (np.clip(img, 0, 1)[:, :, ::-1] * 255.0).round().astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", bgr, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise RuntimeError("OpenCV JPEG encoding failed")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].astype(np.float32) / 255.0


def degrade(hq: np.ndarray, rng: np.random.Generator, cfg: DegradationConfig) -> Tuple[np.ndarray, dict]:
    """Degrade ``hq`` (HxWx3 RGB float in [0, 1]) -> (lq_up float32 HxWx3 in [0, 1], params).

    lq_up = U(y) has the HQ size. params: kernel ('iso'/'aniso'), sigma_x, sigma_y (px at this
    resolution), sigma_x_512, sigma_y_512 (= sigma * 512 / resolution), theta (rad), kernel_size,
    scale (downsampling factor), lq_size [h, w], noise (std, 0-255 scale), jpeg_quality (int), gray (bool)."""
    if hq.ndim != 3 or hq.shape[2] != 3:
        raise ValueError(f"degrade expects an HxWx3 RGB image, got shape {hq.shape}")
    h, w = hq.shape[:2]
    res = max(h, w)
    img = np.ascontiguousarray(hq, dtype=np.float32)

    kernel_type = cfg.kernel_list[int(rng.choice(len(cfg.kernel_list), p=cfg.kernel_prob))]
    sig_lo, sig_hi = cfg.sigma_range(res)
    sigma_x = float(rng.uniform(sig_lo, sig_hi))
    if kernel_type == "iso":
        sigma_y, theta = sigma_x, 0.0
    else:
        sigma_y = float(rng.uniform(sig_lo, sig_hi))
        theta = float(rng.uniform(-math.pi, math.pi))
    ksize = cfg.kernel_size(res)
    kernel = gaussian_kernel2d(ksize, sigma_x, sigma_y, theta).astype(np.float32)
    img = cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT_101)

    scale = float(rng.uniform(*cfg.scale_range(res)))
    lq_w, lq_h = max(1, int(w // scale)), max(1, int(h // scale))
    img = cv2.resize(img, (lq_w, lq_h), interpolation=INTERPOLATIONS[cfg.downsample_interpolation])

    noise = float(rng.uniform(*cfg.noise_range))
    img = np.clip(img + rng.standard_normal(img.shape).astype(np.float32) * (noise / 255.0), 0.0, 1.0)

    quality = int(rng.uniform(*cfg.jpeg_range))
    img = jpeg(img, quality)

    img = np.clip(cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)
    gray = bool(rng.uniform() < cfg.gray_prob)
    if gray:
        img = to_gray(img)

    params = dict(
        kernel=kernel_type,
        sigma_x=sigma_x,
        sigma_y=sigma_y,
        sigma_x_512=sigma_x * 512 / res,
        sigma_y_512=sigma_y * 512 / res,
        theta=theta,
        kernel_size=ksize,
        scale=scale,
        lq_size=[lq_h, lq_w],
        noise=noise,
        jpeg_quality=quality,
        gray=gray,
    )
    return img.astype(np.float32), params
