"""Zero-shot DBLM: the blur levels from a restorer alone, no weights of its own (docs/method.md, section 4.5).

With R the restorer (RM0: DifFace's SwinIR at 512 px, the demo RM0 at 64 px) and y the input at the model's
resolution (so U(y) = y):

    x_R       = R(y)
    sigma_hat = sigma*(x_R, y) = argmin_sigma || G_sigma * x_R - y ||^2        (``data.sigma_star``)
    sigma_k   = max(rho^(k-1) sigma_hat, sigma_min),   k = 1..K              (``DiffBIR.dblm.LevelSchedule``)
    y'_k      = G_sigma_k * x_R

It is SDE's training target with the restorer's output standing in for the clean face, and each level is
the restorer's output blurred by that level's kernel. The output is the learned DBLM's ``DBLMOutput``, so the
sampler, the DSST start and the guidance take it unchanged. Cost: one restorer pass and one batched sigma*
search on the restorer's device.

What it gives up against the learned TM/RM: every level is a blur of one image, so detail R invents or
misses is in all levels alike, and guidance toward G_sigma_k * R(y) fixes every frequency the kernel
passes to R's: the result stays close to R(y). TM and RM are trained to produce G_sigma * x itself. And
sigma* measures how far R(y) is from y, not from the clean face, so the starts are earlier. Measured on the
64 px blind set (docs/evaluation.md, "Zero-shot DBLM"; both with the global scale, ddim50), zero-shot
against learned: PSNR +1.19 / +0.18 / +0.12 dB and LPIPS +0.011 / +0.058 / +0.042 (worse) on the mild /
medium / severe thirds, mean start t 188 / 372 / 438 against 332 / 421 / 467; within 0.03 dB of RM0 alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from DiffBIR.dblm import DBLMOutput, LevelSchedule, merge_section
from data.blur import SIGMA_MAX_512, gaussian_blur
from data.sigma_star import sigma_star
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
    fine_step_512: float = 0.08           # sigma* grid step, 512-px units (0.01 px at 64 px)


class ZeroShotDBLM(LevelSchedule):
    """Levels G_sigma_k * R(y) with sigma_hat = sigma*(R(y), y) (module docstring).

    Args:
        restorer: a module with ``restore(y)`` ([-1, 1] in and out, same size), e.g. ``models.swinir.SwinIR``.
        num_levels, rho, sigma_min_512: :class:`DiffBIR.dblm.LevelSchedule`.
        sigma_max_512, fine_step_512: the sigma* grid in 512-px units.
    """

    def __init__(self, restorer: nn.Module, num_levels: int = 3, rho: float = 0.75, sigma_min_512: float = 0.5,
                 sigma_max_512: float = SIGMA_MAX_512, fine_step_512: float = 0.08):
        super().__init__(num_levels, rho, sigma_min_512)
        if not 0 < fine_step_512 < sigma_max_512:
            raise ValueError(f"ZeroShotDBLM: need 0 < fine_step_512 < sigma_max_512, got {fine_step_512}, "
                             f"{sigma_max_512}")
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
        px = y.shape[-2] / 512.0
        sigma_hat = sigma_star(restored, y.float(), sigma_max=self.sigma_max_512 * px,
                               fine_step=self.fine_step_512 * px)
        sigmas = self.level_sigmas(sigma_hat, self.sigma_floor(y))
        images = [gaussian_blur(restored, sigmas[:, k]).clamp(-1.0, 1.0) for k in range(self.num_levels)]
        return DBLMOutput(sigma_hat=sigma_hat, sigmas=sigmas, images=images)
