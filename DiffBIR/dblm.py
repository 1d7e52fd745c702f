"""DBLM (docs/method.md section 4): a degraded face y -> K faces blurred by known Gaussians.

    sigma_hat = SDE(y)
    sigma_k   = max(rho^(k-1) sigma_hat, sigma_min),   k = 1..K
    y'_1      = TM(y, sigma_1)
    y'_k      = RM(y, y'_(k-1), sigma_k)               k = 2..K

Levels at the floor ``sigma_min`` repeat the previous one (RM not evaluated); ``sigma_hat`` is returned
unclamped, images clamped to [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from utils.checkpoint import load_checkpoint
from utils.config import ConfigError, RequiredWeightsNode, instantiate
from utils.model_factory import resolve_path


@dataclass
class DBLMOutput:
    sigma_hat: torch.Tensor  # (N,) SDE estimate, pixels at y's resolution, unclamped
    sigmas: torch.Tensor  # (N, K) blur of each level, non-increasing along K
    images: List[torch.Tensor] = field(default_factory=list)  # K tensors (N, C, H, W) in [-1, 1]


@dataclass
class DBLMConfig:
    """Schema of the ``dblm`` section read by :meth:`DBLM.from_config`."""

    kind: str = "learned"  # ``zero_shot``: DiffBIR.zero_shot.ZeroShotDBLM instead (no networks of its own)
    num_levels: int = 3
    rho: float = 0.75
    sigma_min_512: float = 0.5
    sde: RequiredWeightsNode = field(default_factory=RequiredWeightsNode)
    tm: RequiredWeightsNode = field(default_factory=RequiredWeightsNode)
    rm: RequiredWeightsNode = field(default_factory=RequiredWeightsNode)


def merge_section(schema: type, node: Any) -> DictConfig:
    """``node`` merged onto the dataclass ``schema``; ConfigError naming the key for a bad one."""
    try:
        return OmegaConf.merge(OmegaConf.structured(schema), node)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None)
        raise ConfigError(f"dblm config{f' (key {key!r})' if key else ''}: {str(err).splitlines()[0]}") from None


class LevelSchedule(nn.Module):
    """The levels' blur widths, sigma_k = max(rho^(k-1) sigma_hat, sigma_min), for the learned and zero-shot DBLM.

    Args: ``num_levels`` K >= 1, ``rho`` in (0, 1), ``sigma_min_512`` the floor in 512-px units."""

    def __init__(self, num_levels: int = 3, rho: float = 0.75, sigma_min_512: float = 0.5):
        super().__init__()
        name = type(self).__name__
        if num_levels < 1:
            raise ValueError(f"{name}: num_levels must be >= 1, got {num_levels}")
        if not 0.0 < rho < 1.0:
            raise ValueError(f"{name}: rho must be in (0, 1), got {rho}")
        if sigma_min_512 < 0:
            raise ValueError(f"{name}: sigma_min_512 must be >= 0, got {sigma_min_512}")
        self.num_levels = int(num_levels)
        self.rho = float(rho)
        self.sigma_min_512 = float(sigma_min_512)

    def sigma_floor(self, y: torch.Tensor) -> float:
        """The floor in pixels at y's height."""
        return self.sigma_min_512 * y.shape[-2] / 512.0

    def level_sigmas(self, sigma_hat: torch.Tensor, floor: float) -> torch.Tensor:
        """(N, K): max(rho^(k-1) sigma_hat, floor)."""
        powers = self.rho ** torch.arange(self.num_levels, dtype=sigma_hat.dtype, device=sigma_hat.device)
        return (sigma_hat[:, None] * powers).clamp(min=floor)


class DBLM(LevelSchedule):
    """SDE + TM + RM (module docstring); ``num_levels``, ``rho``, ``sigma_min_512`` as in :class:`LevelSchedule`."""

    def __init__(
        self,
        sde: nn.Module,
        tm: nn.Module,
        rm: nn.Module,
        num_levels: int = 3,
        rho: float = 0.75,
        sigma_min_512: float = 0.5,
    ):
        super().__init__(num_levels, rho, sigma_min_512)
        self.sde, self.tm, self.rm = sde, tm, rm

    @classmethod
    def from_config(cls, node: Any, device: Optional[torch.device] = None) -> "DBLM":
        """The three networks of ``node`` (:class:`DBLMConfig`) with their weights loaded strictly, in eval mode.

        Relative ``ckpt_path`` as :func:`utils.model_factory.resolve_path`; ConfigError for a bad node, CheckpointError
        for a bad checkpoint."""
        kind = node.get("kind", "learned")
        if kind != "learned":
            raise ConfigError(
                f"dblm config: kind {kind!r} has no networks to load here; allowed: learned "
                "(a zero_shot DBLM is built by DiffBIR.zero_shot.ZeroShotDBLM from the restorer)"
            )
        cfg = merge_section(DBLMConfig, node)
        missing = sorted(OmegaConf.missing_keys(cfg))
        if missing:
            raise ConfigError(f"dblm config: missing required key(s) {missing}")
        nets = {}
        for name, script in (("sde", "train_SDE.py"), ("tm", "train_DBLM.py"), ("rm", "train_DBLM.py")):
            sub: DictConfig = cfg[name]
            net = instantiate(OmegaConf.create({"target": sub.target, "params": sub.params}))
            nets[name] = load_checkpoint(
                net,
                resolve_path(sub.ckpt_path),
                strict=True,
                hint=f"'{name}.ckpt_path' should be the ema_final.pth written by {script}",
            )
        model = cls(nets["sde"], nets["tm"], nets["rm"], cfg.num_levels, cfg.rho, cfg.sigma_min_512)
        return model.to(device).eval() if device is not None else model.eval()

    @torch.no_grad()
    def forward(self, y: torch.Tensor) -> DBLMOutput:
        """y: (N, C, H, W) in [-1, 1] -> DBLMOutput (module docstring)."""
        sigma_hat = self.sde(y).float()
        sigmas = self.level_sigmas(sigma_hat, self.sigma_floor(y))
        images = [self.tm(y, sigmas[:, 0]).clamp(-1.0, 1.0)]
        for k in range(1, self.num_levels):
            prev = images[-1]
            active = sigmas[:, k] < sigmas[:, k - 1]
            level = prev.clone()
            if active.any():
                idx = active.nonzero().squeeze(1)
                level[idx] = self.rm(y[idx], prev[idx], sigmas[idx, k]).clamp(-1.0, 1.0).to(level.dtype)
            images.append(level)
        return DBLMOutput(sigma_hat=sigma_hat, sigmas=sigmas, images=images)
