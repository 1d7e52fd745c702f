"""Few-step solvers on the guided x0 prediction (docs/steps.md). A step from t to s, alpha = sqrt(abar),
sigma = sqrt(1 - abar), lambda = log(alpha / sigma), h_i = lambda_s - lambda_t:

    x_s = alpha_s D + c (x_t - alpha_t D) / sigma_t + s_eta z,   c = sqrt(sigma_s^2 - s_eta^2),

``ddim``: D = x0_i. ``dpmpp_2m`` (DPM-Solver++(2M), Lu et al. 2022): D = x0_i + (x0_i - x0_{i+1}) / (2 r_i),
r_i = h_{i+1} / h_i; first order at an image's first step, where its guidance switches level, and at the
last two steps.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

SOLVERS = ("ddim", "dpmpp_2m")


def half_log_snr(alphas_cumprod: np.ndarray) -> np.ndarray:
    """lambda = log(alpha / sigma) = 0.5 log(abar / (1 - abar)) in float64 (+inf where abar = 1)."""
    abar = np.asarray(alphas_cumprod, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return 0.5 * (np.log(abar) - np.log1p(-abar))


def extrapolation_coefficients(alphas_cumprod: np.ndarray, alphas_cumprod_prev: np.ndarray) -> np.ndarray:
    """c_i = 1 / (2 r_i) = h_i / (2 h_{i+1}) of :data:`dpmpp_2m` for every respaced index i (float64).

    c_i multiplies (x0_i - x0_{i+1}); it is 0 where the step is first order: the last two steps
    (i = 0, 1; module docstring) and the largest index (no step i+1 exists)."""
    lam, lam_prev = half_log_snr(alphas_cumprod), half_log_snr(alphas_cumprod_prev)
    h = lam_prev - lam
    coef = np.zeros_like(h)
    coef[2:-1] = h[2:-1] / (2.0 * h[3:])
    return coef


class MultistepX0:
    """The x0 the update uses, per image of a batch (see the module docstring).

    ``diffusion``: the (respaced) :class:`models.gaussian_diffusion.GaussianDiffusion` of the sampler;
    ``count``: images in the batch; the previous prediction of every image is kept here."""

    def __init__(self, solver: str, diffusion, count: int):
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
        self.solver = solver
        self.coef = extrapolation_coefficients(diffusion.alphas_cumprod, diffusion.alphas_cumprod_prev)
        self.count = count
        self.previous: Optional[torch.Tensor] = None  # (count, C, H, W): each image's last x0
        self.has_previous = torch.zeros(count, dtype=torch.bool)

    def __call__(
        self, x0: torch.Tensor, images: torch.Tensor, index: int, restart: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """D for the images ``images`` ((M,) positions in the batch) at respaced ``index``; ``x0``
        (M,C,H,W) is their prediction at this step, remembered for their next step. ``restart`` (M,)
        bool (host): images whose prediction changed target at this step (a new guidance level), so
        their previous one is not extrapolated from (a first-order step)."""
        if self.solver == "ddim":
            return x0
        if self.previous is None:
            self.previous = torch.zeros((self.count,) + tuple(x0.shape[1:]), dtype=x0.dtype, device=x0.device)
        pos = images.cpu()
        out = x0
        coef = float(self.coef[index])
        with_history = self.has_previous[pos] if restart is None else self.has_previous[pos] & ~restart
        if coef != 0.0 and bool(with_history.any()):
            weight = (coef * with_history.to(x0.dtype)).to(x0.device).view(-1, *([1] * (x0.ndim - 1)))
            out = x0 + weight * (x0 - self.previous[images])
        self.previous[images] = x0
        self.has_previous[pos] = True
        return out
