"""Gaussian blur with known kernels on float NCHW tensors (docs/method.md sections 1-2).

Kernel: exp(-k^2 / (2 sigma^2)) at integers |k| <= r = ceil(4 sigma), normalised; separable along H and W.
Boundary: reflect-101 extended to any radius by repeated reflection (the periodic mirror signal of period
2n - 2; a side of length 1 continues as a constant), done by index arithmetic (:func:`mirror_indices`).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

#: Default upper end of the sigma* grid, in 512-px units (sigma_max = SIGMA_MAX_512 * resolution / 512).
#: Measured on real CelebA faces with data/degradation.py: downsampling by s alone gives sigma* ~ 0.36 s
#: px at any resolution (blur adds in quadrature); the worst case of configs/degradation/difface_blind.yaml
#: (blur 15 px at 512 plus an LQ of 4 px, i.e. s = 16 at 64 px or 32 at 128 px) gives sigma* ~ 46 in
#: 512-px units; at 512 px (s <= 32, LQ >= 16 px) sigma* stays under ~20. 48 covers every case.
SIGMA_MAX_512 = 64.0
#: Kernel spectra kept by :func:`kernel_spectrum1d` (LRU).
SPECTRUM_CACHE_SIZE = 256

SigmaLike = Union[float, int, torch.Tensor]


def kernel_radius(sigma: float) -> int:
    """Radius r = ceil(4 sigma) of the sampled Gaussian kernel (at least 1 for sigma > 0, 0 for sigma 0)."""
    sigma = float(sigma)
    if sigma < 0 or not math.isfinite(sigma):
        raise ValueError(f"blur sigma must be finite and >= 0, got {sigma}")
    if sigma == 0:
        return 0
    return max(1, math.ceil(4.0 * sigma - 1e-9))


def gaussian_kernel1d(
    sigma: float, radius: Optional[int] = None, dtype: torch.dtype = torch.float64, device=None
) -> torch.Tensor:
    """Normalised samples of exp(-k^2 / (2 sigma^2)), k = -r..r, r = ``radius`` or ``kernel_radius(sigma)``; sigma 0:
    the delta."""
    r = kernel_radius(sigma) if radius is None else int(radius)
    if r < 0:
        raise ValueError(f"kernel radius must be >= 0, got {r}")
    k = torch.arange(-r, r + 1, dtype=torch.float64, device=device)
    if float(sigma) == 0:
        kernel = (k == 0).to(torch.float64)
    else:
        kernel = torch.exp(-(k * k) / (2.0 * float(sigma) ** 2))
    return (kernel / kernel.sum()).to(dtype)


def mirror_indices(n: int, radius: int, device=None) -> torch.Tensor:
    """Indices of the repeated-reflection continuation of a length-``n`` axis over [-radius, n + radius)."""
    i = torch.arange(-radius, n + radius, device=device)
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * n - 2
    i = torch.remainder(i, period)
    return torch.where(i >= n, period - i, i)


def sigma_values(sigma: SigmaLike, n: int, caller: str = "gaussian_blur") -> list:
    """One validated float sigma per image: a float, a 1-element or an (n,) tensor -> list of n floats; ValueError
    for a wrong count or a negative / non-finite sigma."""
    if isinstance(sigma, torch.Tensor):
        values = sigma.detach().flatten().double().cpu().tolist()
        if len(values) == 1:
            values = values * n
    else:
        values = [float(sigma)] * n
    if len(values) != n:
        raise ValueError(f"{caller}: sigma must have one value per image ({n}), got {len(values)}")
    for s in values:
        kernel_radius(s)  # validates
    return values


def _padded_kernel(sigma: float, radius: int, dtype: torch.dtype, device) -> torch.Tensor:
    """``gaussian_kernel1d(sigma)`` (its own radius) zero-padded to length 2 * radius + 1."""
    kernel = gaussian_kernel1d(sigma, dtype=dtype, device=device)
    pad = radius - (kernel.numel() - 1) // 2
    return F.pad(kernel, (pad, pad))


def gaussian_blur(x: torch.Tensor, sigma: SigmaLike) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W), one sigma per image (float or (N,) tensor).

    Kernels zero-padded to the batch's largest radius R, one depthwise convolution per axis after repeated-
    reflection padding by R; sigma 0 leaves an image unchanged. Output in the dtype and device of ``x``."""
    if x.ndim != 4:
        raise ValueError(f"gaussian_blur expects an (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    sigmas = sigma_values(sigma, n)
    radius = max(kernel_radius(s) for s in sigmas)
    if radius == 0:
        return x
    kernels = torch.stack([_padded_kernel(s, radius, x.dtype, x.device) for s in sigmas])
    weight = kernels.repeat_interleave(c, dim=0)  # (N*C, 2R+1)
    y = x.reshape(1, n * c, h, w)
    y = y.index_select(2, mirror_indices(h, radius, x.device))
    y = F.conv2d(y, weight[:, None, :, None], groups=n * c)
    y = y.index_select(3, mirror_indices(w, radius, x.device))
    y = F.conv2d(y, weight[:, None, None, :], groups=n * c)
    return y.reshape(n, c, h, w)


def default_sigma_max(resolution: int) -> float:
    """Upper end of the default sigma* grid at ``resolution`` px: SIGMA_MAX_512 * resolution / 512."""
    return SIGMA_MAX_512 * resolution / 512.0


@lru_cache(maxsize=SPECTRUM_CACHE_SIZE)
def kernel_spectrum1d(sigma: float, length: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """DFT (real) of ``gaussian_kernel1d(sigma)`` wrapped circularly onto ``length`` samples, centre at 0.

    A kernel longer than ``length`` wraps around (aliases), which is exactly circular convolution.
    Cached (LRU) per (sigma, length, device, dtype); the returned tensor must not be modified."""
    kernel = gaussian_kernel1d(sigma, dtype=dtype, device=device)
    radius = (kernel.numel() - 1) // 2
    offsets = torch.arange(-radius, radius + 1, device=device) % length
    wrapped = torch.zeros(length, device=device, dtype=dtype).index_add_(0, offsets, kernel)
    return torch.fft.fft(wrapped).real.contiguous()


def gaussian_transfer(
    sigmas: Sequence[float], hp: int, wp: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Real transfer functions (N, 1, hp, wp // 2 + 1) of the separable kernels, for ``rfft2`` spectra.

    On an image padded by ``mirror_indices`` with pad >= kernel_radius(sigma), cropped back, they give exactly
    ``gaussian_blur``."""
    rows = []
    for s in sigmas:
        g_h = kernel_spectrum1d(float(s), hp, device, dtype)
        g_w = kernel_spectrum1d(float(s), wp, device, dtype)[: wp // 2 + 1]
        rows.append(g_h[:, None] * g_w[None, :])
    return torch.stack(rows)[:, None]
