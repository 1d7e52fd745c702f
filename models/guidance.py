"""Closed-form fidelity guidance in the Fourier domain (DESIGN.md section 5).

At a sampling step with the prior's clipped prediction ``x0_hat`` and a blurred level ``(y, sigma)``,
the corrected clean image is, independently for every image of the batch,

    x0_tilde = argmin_x ||G_sigma * x - y||^2 + lam ||x - x0_hat||^2,

whose normal equations ``(G^T G + lam I) x = G^T y + lam x0_hat`` are diagonal in the Fourier domain
when the convolution is circular:

    X = (conj(G) Y + lam X0_hat) / (|G|^2 + lam).

``G`` is the transfer function of the same sampled, truncated, normalised Gaussian that
``data.blur.gaussian_blur`` applies (``data.blur.gaussian_kernel1d``, radius ``ceil(4 sigma)``),
placed with its centre at index 0 (wrapped), so no phase shift is needed. The kernel is symmetric,
hence ``G`` is real and ``conj(G) = G``; it is separable, hence ``G(u, v) = g_H(u) g_W(v)`` with 1-D
spectra that are cached. To hide the periodic boundary the images are reflect-padded by the kernel
radius of the batch's largest sigma (the repeated-reflection continuation of
``data.blur.mirror_indices``, the boundary ``gaussian_blur`` uses, so any radius works) and cropped
back; ``periodic=True`` skips the padding and solves the exact circulant problem.
The default pad suits guidance (lam not tiny); for near-pure deconvolution (lam -> 0) the wrap
error spreads further, and ``pad = H/2 - 1`` (even H = W) makes the padded domain exactly one period
of the mirror continuation, on which ``gaussian_blur`` *is* circular, so the solution then blurs
exactly to ``y``.

Several levels combine in closed form (sum of weighted data terms):

    X = (sum_k w_k conj(G_k) Y_k + lam X0_hat) / (sum_k w_k |G_k|^2 + lam).

Computation runs on the inputs' device in float64 for float64 inputs and float32 otherwise
(complex64 FFTs on GPU); the result has the dtype of ``x0_hat``. The only host synchronisation is
reading the N sigma values, which the padded shape and the kernel cache need.
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

    Args:
        x0_hat: (N, C, H, W) prior prediction.
        y_blur: (N, C, H, W) blurred observation at ``sigma``.
        sigma: (N,) tensor (or a float for all images), blur std in pixels at this resolution;
            0 means no blur, giving ``(y + lam x0_hat) / (1 + lam)``.
        lam: float or (N,) tensor, > 0; large ``lam`` trusts ``x0_hat``, small ``lam`` the data.
        pad: reflect padding in pixels; default ``kernel_radius(max sigma)``.
        periodic: solve the circular-convolution problem with no padding.
    """
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

    ``ys[k]`` is (N, C, H, W) blurred at ``sigmas[k]`` ((N,) tensor or float); ``weights[k]`` is a
    float or (N,) tensor (default 1; 0 switches a level off for that image, e.g. a level that is not
    active yet). Other arguments as in :func:`closed_form_guidance`.
    """
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
    n, _, h, w = x0_hat.shape
    device = x0_hat.device
    cdtype = torch.float64 if x0_hat.dtype == torch.float64 else torch.float32
    sigma_lists = [sigma_values(s, n, "closed_form_guidance") for s in sigmas]
    if periodic:
        pad = 0
    elif pad is None:
        pad = kernel_radius(max(max(s) for s in sigma_lists))
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    rows, cols = mirror_indices(h, pad, device), mirror_indices(w, pad, device)

    def padded(t: torch.Tensor) -> torch.Tensor:
        t = t.to(device=device, dtype=cdtype)
        return t if pad == 0 else t.index_select(2, rows).index_select(3, cols)

    x0p = padded(x0_hat)
    hp, wp = x0p.shape[-2:]
    lam_t = _per_image(lam, n, device, cdtype, "lam")
    numer = lam_t * torch.fft.rfft2(x0p)
    denom = lam_t.expand(n, 1, 1, 1).clone()
    for y, sig, wk in zip(ys, sigma_lists, weights):
        gain = gaussian_transfer(sig, hp, wp, device, cdtype)  # (N, 1, hp, wp // 2 + 1), real
        w_t = _per_image(wk, n, device, cdtype, "weight")
        numer = numer + (w_t * gain) * torch.fft.rfft2(padded(y))
        denom = denom + w_t * gain * gain
    x = torch.fft.irfft2(numer / denom, s=(hp, wp))
    x = x[..., pad:pad + h, pad:pad + w]
    return x.to(x0_hat.dtype)


def blend(x0_hat: torch.Tensor, x0_tilde: torch.Tensor, s: Scale) -> torch.Tensor:
    """``x0_hat + s (x0_tilde - x0_hat)`` (DESIGN.md section 6); ``s`` scalar, (N,), (N,1,H,W) or (N,C,H,W)."""
    if isinstance(s, torch.Tensor) and s.ndim == 1:
        s = s.view(-1, 1, 1, 1)
    if isinstance(s, torch.Tensor):
        s = s.to(device=x0_hat.device, dtype=x0_hat.dtype)
    return x0_hat + s * (x0_tilde - x0_hat)


def _per_image(value: Scale, n: int, device: torch.device, dtype: torch.dtype, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        t = value.to(device=device, dtype=dtype).reshape(-1)
        if t.numel() not in (1, n):
            raise ValueError(f"{name} must be a scalar or have one value per image ({n}), got {t.numel()}")
        return t.expand(n).reshape(n, 1, 1, 1)
    if name == "lam" and not float(value) > 0:
        raise ValueError(f"lam must be > 0, got {value}")
    return torch.full((n, 1, 1, 1), float(value), device=device, dtype=dtype)
