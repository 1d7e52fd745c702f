"""TrainerDiffusion: the face diffusion prior (improved-diffusion, Nichol & Dhariwal 2021; docs/method.md section 3).

t ~ U{0, ..., T-1}; loss = ``diffusion.training_losses`` (L_hybrid = L_simple + VB with a learned variance),
unrespaced. Validation: the same losses at ``validation.timesteps`` with fixed noise (``mse_t0100`` ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
from omegaconf import MISSING
from torch import nn
from torch.utils.data import Dataset

from trainers.base import TrainerBase, TrainerConfig
from utils.config import ConfigError, ObjectNode


@dataclass
class DiffusionValidation:
    timesteps: List[int] = field(default_factory=lambda: [50, 250, 500, 750, 950])


@dataclass
class DiffusionTrainerConfig(TrainerConfig):
    diffusion: ObjectNode = MISSING  # models.script_util.create_gaussian_diffusion, no respacing
    validation: DiffusionValidation = field(default_factory=DiffusionValidation)


class TrainerDiffusion(TrainerBase):
    config_schema = DiffusionTrainerConfig

    def build_extras(self) -> None:
        if self.cfg.diffusion.params.get("timestep_respacing"):
            raise ConfigError("diffusion.params.timestep_respacing must be empty for training (all T steps)")
        self.diffusion = self.instantiate_section("diffusion")
        bad = [t for t in self.cfg.validation.timesteps if not 0 <= t < self.diffusion.num_timesteps]
        if bad:
            raise ConfigError(f"validation.timesteps {bad} outside [0, {self.diffusion.num_timesteps})")

    def build_dataset(self, split: str) -> Optional[Dataset]:
        return self.face_dataset(split)

    def compute_loss(self, model: nn.Module, batch: Dict[str, Any]) -> Tuple[torch.Tensor, Dict[str, float]]:
        x = batch["hq"]
        t = torch.randint(0, self.diffusion.num_timesteps, (x.shape[0],), device=x.device)
        terms = self.diffusion.training_losses(model, x, t)
        return terms["loss"].mean(), {k: float(v.detach().mean()) for k, v in terms.items()}

    def val_metrics(self, model: nn.Module, batch: Dict[str, Any], batch_idx: int) -> Dict[str, torch.Tensor]:
        x = batch["hq"]
        gen = self.val_generator(batch_idx)
        out: Dict[str, torch.Tensor] = {}
        for t in self.cfg.validation.timesteps:
            noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
            steps = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
            terms = self.diffusion.training_losses(model, x, steps, noise=noise)
            for name, value in terms.items():
                out[f"{name}_t{t:04d}"] = value.float()
        for name in ("loss", "mse"):
            out[name] = torch.stack([out[f"{name}_t{t:04d}"] for t in self.cfg.validation.timesteps]).mean(0)
        return out
