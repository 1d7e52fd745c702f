"""Zero-shot DBLM: the blur levels from a restorer R alone (docs/method.md section 4.5).

    x_R       = R(y),   s_R = sigma*(x_R, y)                                    (``data.sigma_star``)
    sigma_hat = k s_R,     d_0 = sqrt(k^2 - 1) s_R
    sigma_k   = max(rho^(k-1) sigma_hat, sigma_min, d_0),   k = 1..K          (``DiffBIR.dblm.LevelSchedule``)
    y'_k      = G_sqrt(sigma_k^2 - d_0^2) * x_R  ~  G_sigma_k * x

k = ``dblm.sigma_ratio``, measured by scripts/calibrate_zero_shot.py. Returns the learned DBLM's ``DBLMOutput``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from data.blur import SIGMA_MAX_512, gaussian_blur
from data.sigma_star import sigma_star
from DiffBIR.dblm import DBLMOutput, LevelSchedule, merge_section
from utils.config import ConfigError

#: The ``dblm.kind`` that selects this module (the learned DBLM is ``learned``, the default).
KIND = "zero_shot"


@dataclass
class ZeroShotDBLMConfig:
    """Schema of a ``dblm`` section with ``kind: zero_shot`` (the restorer is the config's ``restorer``)."""

    kind: str = KIND
    num_levels: int = 3
    rho: float = 0.75
    sigma_min_512: float = 0.5
    sigma_max_512: float = SIGMA_MAX_512  # upper end of the sigma* grid, 512-px units
    fine_step_512: float = 0.08  # sigma* grid step, 512-px units (0.01 px at 64 px)
    sigma_ratio: float = 1.0  # k >= 1: sigma_hat = k sigma*(R(y), y); 1: R(y) taken as sharp


class ZeroShotDBLM(LevelSchedule):
    """Levels G_sqrt(sigma_k^2 - d0^2) * R(y), sigma_hat = k sigma*(R(y), y) (module docstring).

    ``restorer``: a module with ``restore(y)`` ([-1, 1], same size); ``sigma_max_512``, ``fine_step_512``: the sigma*
    grid; ``sigma_ratio``: k >= 1 (:func:`calibrate`); the rest as :class:`DiffBIR.dblm.LevelSchedule`."""

    def __init__(
        self,
        restorer: nn.Module,
        num_levels: int = 3,
        rho: float = 0.75,
        sigma_min_512: float = 0.5,
        sigma_max_512: float = SIGMA_MAX_512,
        fine_step_512: float = 0.08,
        sigma_ratio: float = 1.0,
    ):
        super().__init__(num_levels, rho, sigma_min_512)
        if not sigma_ratio >= 1.0:
            raise ValueError(f"ZeroShotDBLM: need sigma_ratio >= 1, got {sigma_ratio}")
        self.sigma_ratio = float(sigma_ratio)
        if not 0 < fine_step_512 < sigma_max_512:
            raise ValueError(
                f"ZeroShotDBLM: need 0 < fine_step_512 < sigma_max_512, got {fine_step_512}, {sigma_max_512}"
            )
        self.restorer = restorer
        self.sigma_max_512, self.fine_step_512 = float(sigma_max_512), float(fine_step_512)

    @classmethod
    def from_config(cls, node: Any, restorer: nn.Module) -> "ZeroShotDBLM":
        """Build from a ``dblm`` node (schema :class:`ZeroShotDBLMConfig`) and the loaded restorer; eval mode."""
        params = OmegaConf.to_container(merge_section(ZeroShotDBLMConfig, node))
        params.pop("kind")
        try:
            return cls(restorer, **params).eval()
        except ValueError as err:
            raise ConfigError(f"dblm config: {err}") from None

    @torch.no_grad()
    def forward(self, y: torch.Tensor) -> DBLMOutput:
        """y: (N, C, H, W) in [-1, 1] -> DBLMOutput (module docstring)."""
        restored = self.restorer.restore(y).clamp(-1.0, 1.0).float()
        sigma_ry = self.grid_sigma_star(restored, y)
        sigma_hat = self.sigma_ratio * sigma_ry
        own_blur = sigma_ry * (self.sigma_ratio**2 - 1.0) ** 0.5  # d_0: R(y) ~ G_d0 * x
        sigmas = torch.maximum(self.level_sigmas(sigma_hat, self.sigma_floor(y)), own_blur[:, None])
        extra = (sigmas**2 - own_blur[:, None] ** 2).clamp(min=0.0).sqrt()
        images = [gaussian_blur(restored, extra[:, k]).clamp(-1.0, 1.0) for k in range(self.num_levels)]
        return DBLMOutput(sigma_hat=sigma_hat, sigmas=sigmas, images=images)

    def grid_sigma_star(self, sharp: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """sigma*(sharp, y) (N,) on the config's grid: s_R for sharp = R(y), SDE's target for the clean face."""
        px = y.shape[-2] / 512.0
        return sigma_star(
            sharp.float(), y.float(), sigma_max=self.sigma_max_512 * px, fine_step=self.fine_step_512 * px
        )


def calibrate(dblm: ZeroShotDBLM, hq: torch.Tensor, lq: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """Per-face ratios sigma*(x, y) / sigma*(R(y), y) of clean faces ``hq`` and their degradations ``lq``
    ((N, 3, H, W) in [-1, 1], same size); faces whose s_R is below two grid steps (R(y) ~ y: no ratio) are
    left out. Their median is the ``sigma_ratio`` of the module docstring."""
    step = dblm.fine_step_512 * lq.shape[-2] / 512.0
    ratios = []
    with torch.no_grad():
        for i in range(0, len(lq), batch):
            x, y = hq[i : i + batch], lq[i : i + batch]
            restored = dblm.restorer.restore(y).clamp(-1.0, 1.0)
            s_r, s_x = dblm.grid_sigma_star(restored, y), dblm.grid_sigma_star(x, y)
            keep = s_r >= 2 * step
            ratios.append(s_x[keep] / s_r[keep])
    return torch.cat(ratios)
