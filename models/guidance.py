"""Closed-form fidelity guidance in the Fourier domain (docs/method.md section 6).

    x0_tilde = argmin_x ||G_sigma * x - y||^2 + lam ||x - x0_hat||^2,
    X = (conj(G) Y + lam X0_hat) / (|G|^2 + lam)                    (circular convolution),
    X = (sum_k w_k conj(G_k) Y_k + lam X0_hat) / (sum_k w_k |G_k|^2 + lam)    (several levels).

Images are reflect-padded (default: the kernel radius of the largest sigma) and cropped back; ``periodic=True``
solves the circulant problem unpadded. float64 inputs compute in float64, others in float32.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from data.blur import gaussian_transfer, kernel_radius, mirror_indices, sigma_values

Scale = Union[float, torch.Tensor]


def closed_form_guidance(
    x0_hat: torch.Tensor,
    y_blur: torch.Tensor,
    sigma: Scale,
    lam: Scale,
    pad: Optional[int] = None,
    periodic: bool = False,
) -> torch.Tensor:
    """``argmin_x ||G_sigma * x - y_blur||^2 + lam ||x - x0_hat||^2`` per image, exactly.

    x0_hat, y_blur: (N, C, H, W); sigma: (N,) tensor or float, pixels at this resolution (0: no blur); lam: float
    or (N,) tensor > 0; pad: reflect padding (default ``kernel_radius(max sigma)``); periodic: no padding."""
    return closed_form_guidance_multi(x0_hat, [y_blur], [sigma], lam, pad=pad, periodic=periodic)


def closed_form_guidance_multi(
    x0_hat: torch.Tensor,
    ys: Sequence[torch.Tensor],
    sigmas: Sequence[Scale],
    lam: Scale,
    weights: Optional[Sequence[Scale]] = None,
    pad: Optional[int] = None,
    periodic: bool = False,
) -> torch.Tensor:
    """``argmin_x sum_k w_k ||G_k * x - y_k||^2 + lam ||x - x0_hat||^2`` per image, exactly.

    ``ys[k]``: (N, C, H, W) blurred at ``sigmas[k]`` ((N,) tensor or float); ``weights[k]``: float or (N,) tensor
    (default 1; 0 switches a level off). Other arguments as in :func:`closed_form_guidance`."""
    if x0_hat.ndim != 4:
        raise ValueError(f"x0_hat must be (N, C, H, W), got shape {tuple(x0_hat.shape)}")
    if len(ys) == 0 or len(ys) != len(sigmas):
        raise ValueError(f"need one sigma per level: got {len(ys)} images and {len(sigmas)} sigmas")
    if weights is None:
        weights = [1.0] * len(ys)
    if len(weights) != len(ys):
        raise ValueError(f"need one weight per level: got {len(weights)} weights for {len(ys)} levels")
    for k, y in enumerate(ys):
        if y.shape != x0_hat.shape:
            raise ValueError(f"level {k}: y shape {tuple(y.shape)} != x0_hat shape {tuple(x0_hat.shape)}")
    n, device = x0_hat.shape[0], x0_hat.device
    cdtype = _compute_dtype(x0_hat)
    sigma_table = torch.tensor([sigma_values(s, n, "closed_form_guidance") for s in sigmas], dtype=torch.float64).T
    w = torch.cat([_per_image(wk, n, device, cdtype, "weight").view(n, 1) for wk in weights], dim=1)
    spectra = LevelSpectra(
        torch.stack([y.to(device, cdtype) for y in ys], dim=1), sigma_table, pad=0 if periodic else pad
    )
    return spectra.solve(x0_hat, w, lam)


class LevelSpectra:
    """The closed form toward K fixed levels with ``G_k Y_k`` and ``G_k^2`` computed once per batch.

    Equals :func:`closed_form_guidance_multi` with the same ``pad``. ``levels`` (N, K, C, H, W), ``sigmas`` (N, K)
    in pixels; ``pad`` default ``kernel_radius`` of the largest sigma."""

    def __init__(self, levels: torch.Tensor, sigmas: torch.Tensor, pad: Optional[int] = None):
        if levels.ndim != 5:
            raise ValueError(f"levels must be (N, K, C, H, W), got shape {tuple(levels.shape)}")
        n, k, _, self.h, self.w = levels.shape
        if tuple(sigmas.shape) != (n, k):
            raise ValueError(f"sigmas must be (N, K) = ({n}, {k}), got shape {tuple(sigmas.shape)}")
        device, self.dtype = levels.device, _compute_dtype(levels)
        sigma_list = sigma_values(sigmas, n * k, "LevelSpectra")
        self.pad = kernel_radius(max(sigma_list)) if pad is None else int(pad)
        if self.pad < 0:
            raise ValueError(f"pad must be >= 0, got {self.pad}")
        self.rows = mirror_indices(self.h, self.pad, device)
        self.cols = mirror_indices(self.w, self.pad, device)
        self.hp, self.wp = self.h + 2 * self.pad, self.w + 2 * self.pad
        gain = gaussian_transfer(sigma_list, self.hp, self.wp, device, self.dtype)  # (N*K, 1, hp, wp // 2 + 1)
        gain = gain.view(n, k, 1, *gain.shape[-2:])
        spectra = torch.fft.rfft2(self._padded(levels.flatten(0, 1))).view(n, k, levels.shape[2], self.hp, -1)
        self.gain_y = gain * spectra  # (N, K, C, hp, wp // 2 + 1)
        self.gain_sq = gain * gain  # (N, K, 1, hp, wp // 2 + 1)
        self.images = torch.arange(n, device=device)

    def _padded(self, t: torch.Tensor) -> torch.Tensor:
        t = t.to(self.dtype)
        return t if self.pad == 0 else t.index_select(-2, self.rows).index_select(-1, self.cols)

    def solve(
        self, x0_hat: torch.Tensor, weights: torch.Tensor, lam: Scale, idx: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """x0_tilde for the images ``idx`` (default all) of the batch, in ``x0_hat``'s dtype.

        ``x0_hat``: (n, C, H, W) for those images; ``weights``: (n, K) level weights (a one-hot row guides
        toward one level, which :meth:`solve_level` does with less work); ``lam``: float or (n,) tensor > 0."""
        gain_y, gain_sq = (self.gain_y, self.gain_sq) if idx is None else (self.gain_y[idx], self.gain_sq[idx])
        n = x0_hat.shape[0]
        if gain_y.shape[0] != n or tuple(weights.shape) != (n, gain_y.shape[1]):
            raise ValueError(
                f"solve: x0_hat {tuple(x0_hat.shape)} and weights {tuple(weights.shape)} do not match "
                f"{gain_y.shape[0]} images of {gain_y.shape[1]} levels"
            )
        w = weights.to(self.dtype).view(n, -1, 1, 1, 1)
        return self._solve(x0_hat, (w * gain_y).sum(1), (w * gain_sq).sum(1), lam)

    def solve_level(
        self, x0_hat: torch.Tensor, level: torch.Tensor, lam: Scale, idx: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """:meth:`solve` with one level per image, ``level``: (n,) long (the sampler's sharpest active level):
        the level's two terms are gathered instead of weighted and summed over all K levels."""
        images = self.images if idx is None else idx
        if images.shape != level.shape:
            raise ValueError(f"solve_level: {level.numel()} levels for {images.numel()} images")
        return self._solve(x0_hat, self.gain_y[images, level], self.gain_sq[images, level], lam)

    def _solve(self, x0_hat: torch.Tensor, gain_y: torch.Tensor, gain_sq: torch.Tensor, lam: Scale) -> torch.Tensor:
        """X = (G Y + lam X0_hat) / (G^2 + lam) with the data terms ``gain_y`` (n, C, ...) and ``gain_sq``
        (n, 1, ...) already chosen; cropped back to the image, in ``x0_hat``'s dtype."""
        n = x0_hat.shape[0]
        if x0_hat.shape[-2:] != (self.h, self.w) or gain_y.shape[0] != n:
            raise ValueError(
                f"solve: x0_hat {tuple(x0_hat.shape)} does not match {gain_y.shape[0]} images at {self.h}x{self.w}"
            )
        spectrum = torch.fft.rfft2(self._padded(x0_hat))
        if isinstance(lam, torch.Tensor):
            lam_t = _per_image(lam, n, x0_hat.device, self.dtype, "lam")
            numer, denom = lam_t * spectrum + gain_y, lam_t + gain_sq
        else:  # a number: no per-step tensor for it
            if not float(lam) > 0:
                raise ValueError(f"lam must be > 0, got {lam}")
            numer, denom = torch.add(gain_y, spectrum, alpha=float(lam)), gain_sq + float(lam)
        x = torch.fft.irfft2(numer / denom, s=(self.hp, self.wp))
        return x[..., self.pad : self.pad + self.h, self.pad : self.pad + self.w].to(x0_hat.dtype)


def batch_pad(sigmas: torch.Tensor, resolution: int, pad_sigma_512: float) -> int:
    """``kernel_radius(max(pad_sigma_512 * resolution / 512, max sigma))``: batch-independent while every sigma fits."""
    if not pad_sigma_512 >= 0:
        raise ValueError(f"pad_sigma_512 must be >= 0, got {pad_sigma_512}")
    largest = max(sigma_values(sigmas, sigmas.numel(), "batch_pad")) if sigmas.numel() else 0.0
    return kernel_radius(max(float(pad_sigma_512) * resolution / 512.0, largest))


def blend(x0_hat: torch.Tensor, x0_tilde: torch.Tensor, s: Scale) -> torch.Tensor:
    """``x0_hat + s (x0_tilde - x0_hat)`` (docs/method.md section 7) as one ``torch.lerp``; ``s`` scalar, (N,),
    (N,1,H,W) or (N,C,H,W)."""
    if not isinstance(s, torch.Tensor):
        return torch.lerp(x0_hat, x0_tilde, float(s))
    s = s.to(device=x0_hat.device, dtype=x0_hat.dtype)
    return torch.lerp(x0_hat, x0_tilde, s.view(-1, 1, 1, 1) if s.ndim == 1 else s)


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _per_image(value: Scale, n: int, device: torch.device, dtype: torch.dtype, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        t = value.to(device=device, dtype=dtype).reshape(-1)
        if t.numel() not in (1, n):
            raise ValueError(f"{name} must be a scalar or have one value per image ({n}), got {t.numel()}")
        return t.expand(n).reshape(n, 1, 1, 1)
    if name == "lam" and not float(value) > 0:
        raise ValueError(f"lam must be > 0, got {value}")
    return torch.full((n, 1, 1, 1), float(value), device=device, dtype=dtype)
