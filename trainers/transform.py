"""TrainerTM and TrainerRM: the DBLM transformation and refinement models (docs/method.md sections 4.2-4.3).

    accelerate launch train_DBLM.py --config configs/train/train_DBLM_TM.yaml   (or _RM.yaml)

Training sigma = max(sigma* exp(u) + v, floor), u ~ U(-``sigma.log_margin``, ``sigma.log_margin``),
v ~ U(0, ``sigma.offset_512``). TM: (y, sigma) -> G_sigma * hq. RM: (y, level at sigma, sigma') ->
G_sigma' * hq, sigma' = max(r sigma, floor), r ~ U(``rho_range``), its input level exact (``input: gt``) or
TM's (``input: tm``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import List, Optional

import torch

from data.blur import gaussian_blur
from trainers.dblm import EMA_FINAL, DBLMConfig, DBLMTrainer, LossType, WarmStart, image_loss
from utils.checkpoint import load_checkpoint
from utils.config import ConfigError, RequiredWeightsNode
from utils.model_factory import resolve_path


class RMInput(Enum):
    gt = "gt"
    tm = "tm"


@dataclass
class SigmaSampling:
    log_margin: float = 0.25  # m of sigma* exp(U(-m, m))
    offset_512: float = 0.5  # additive U(0, offset), 512-px units
    min_512: float = 0.5  # floor, 512-px units (DBLM's sigma_min_512)


@dataclass
class TMConfig(DBLMConfig):
    loss: LossType = LossType.l1
    sigma: SigmaSampling = field(default_factory=SigmaSampling)
    init: Optional[WarmStart] = None  # start the backbone from a trained restorer (DiffBIR.transform)


@dataclass
class RMConfig(TMConfig):
    rho_range: List[float] = field(default_factory=lambda: [0.6, 0.9])
    val_rho: float = 0.75
    input: RMInput = RMInput.gt
    tm: Optional[RequiredWeightsNode] = None  # the TM's ema_final.pth; required when input is 'tm'


def batch_psnr(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB), (N,), in the convention of ``utils.metrics.psnr`` (checked against it in
    tests/test_dblm_module.py): 10 log10(255^2 / MSE) over all pixels and channels of the uint8 values
    the images are saved as, round(clip((x + 1) / 2, 0, 1) * 255). Batched in torch, so that the
    training processes need not import basicsr."""

    def uint8_values(x: torch.Tensor) -> torch.Tensor:
        return ((x.detach().double().clamp(-1.0, 1.0) + 1.0) * 127.5).round()

    mse = (uint8_values(out) - uint8_values(target)).pow(2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(255.0**2 / mse)


def _need(ok: bool, key: str, why: str) -> None:
    if not ok:
        raise ConfigError(f"'{key}' {why}")


class TrainerTM(DBLMTrainer):
    """TM: (y, sigma) -> G_sigma * hq, sigma jittered around sigma* (module docstring)."""

    config_schema = TMConfig

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        for key in ("log_margin", "offset_512", "min_512"):
            _need(cfg.sigma[key] >= 0, f"sigma.{key}", "must be >= 0")

    def floor(self) -> float:
        return self.px(self.cfg.sigma.min_512)

    def sample_sigma(self, sigma_star: torch.Tensor) -> torch.Tensor:
        m = self.cfg.sigma.log_margin
        u = (torch.rand_like(sigma_star) * 2.0 - 1.0) * m
        v = torch.rand_like(sigma_star) * self.px(self.cfg.sigma.offset_512)
        return (sigma_star * u.exp() + v).clamp(min=self.floor())

    def compute_loss(self, model, batch):
        sigma = self.sample_sigma(batch["sigma_star"])
        out = model(batch["lq"], sigma)
        loss = image_loss(self.cfg.loss, out.float(), gaussian_blur(batch["hq"], sigma))
        return loss, {"loss": float(loss.detach()), "sigma_px": float(sigma.mean())}

    def val_metrics(self, model, batch, batch_idx):
        sigma = batch["sigma_star"].clamp(min=self.floor())
        return {"psnr": batch_psnr(model(batch["lq"], sigma), gaussian_blur(batch["hq"], sigma))}


class TrainerRM(TrainerTM):
    """RM: (y, blurred level at sigma, sigma') -> G_sigma' * hq, sigma' = r sigma, r ~ U(rho_range)."""

    config_schema = RMConfig

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        lo_hi = list(cfg.rho_range)
        _need(
            len(lo_hi) == 2 and 0 < lo_hi[0] <= lo_hi[1] < 1,
            "rho_range",
            f"must be [low, high] with 0 < low <= high < 1, got {lo_hi}",
        )
        _need(0 < cfg.val_rho < 1, "val_rho", f"must be in (0, 1), got {cfg.val_rho}")
        _need(
            cfg.input is RMInput.gt or cfg.tm is not None,
            "tm",
            "(target, params, ckpt_path of the trained TM) is required when input is 'tm'",
        )

    def build_extras(self) -> None:
        self.tm = None
        if self.cfg.input is RMInput.tm:
            self.tm = self.instantiate_section("tm")
            load_checkpoint(
                self.tm,
                resolve_path(self.cfg.tm.ckpt_path),
                strict=True,
                hint=f"set 'tm.ckpt_path' to the TM's {EMA_FINAL} (train it first with train_DBLM.py)",
            )
            self.tm.to(self.device).eval().requires_grad_(False)

    @torch.no_grad()
    def level_input(self, batch: dict, sigma: torch.Tensor) -> torch.Tensor:
        """The blurrier level RM starts from: G_sigma * hq, or the frozen TM's estimate of it."""
        if self.tm is None:
            return gaussian_blur(batch["hq"], sigma)
        return self.tm(batch["lq"], sigma).clamp(-1.0, 1.0)

    def target_sigma(self, sigma: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
        return torch.minimum(sigma, (sigma * ratio).clamp(min=self.floor()))

    def compute_loss(self, model, batch):
        sigma = self.sample_sigma(batch["sigma_star"])
        lo, hi = self.cfg.rho_range
        sigma_t = self.target_sigma(sigma, lo + (hi - lo) * torch.rand_like(sigma))
        out = model(batch["lq"], self.level_input(batch, sigma), sigma_t)
        loss = image_loss(self.cfg.loss, out.float(), gaussian_blur(batch["hq"], sigma_t))
        return loss, {"loss": float(loss.detach()), "sigma_target_px": float(sigma_t.mean())}

    def val_metrics(self, model, batch, batch_idx):
        sigma = batch["sigma_star"].clamp(min=self.floor())
        sigma_t = self.target_sigma(sigma, torch.full_like(sigma, self.cfg.val_rho))
        out = model(batch["lq"], self.level_input(batch, sigma), sigma_t)
        return {"psnr": batch_psnr(out, gaussian_blur(batch["hq"], sigma_t))}
