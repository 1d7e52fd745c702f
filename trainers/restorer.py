"""TrainerRestorer: the RM0 restorer, SwinIR trained on blindly degraded faces (DifFace; docs/method.md section 3).

loss = || SwinIR((y+1)/2) - (x+1)/2 ||_1 (``loss: l2``: the squared error). Validation: PSNR of
``SwinIR.restore(y)`` and of the LQ input, and the loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import torch
from omegaconf import MISSING
from torch import nn
from torch.utils.data import Dataset

from trainers.base import TrainerBase, TrainerConfig
from utils.config import ConfigError
from utils.tensor_psnr import psnr_tensor


@dataclass
class RestorerTrainerConfig(TrainerConfig):
    degradation: str = MISSING  # path of a DegradationConfig YAML
    loss: str = "l1"  # l1 | l2 (mean absolute / squared error on [0, 1], module docstring)


LOSSES = {"l1": lambda d: d.abs().mean(), "l2": lambda d: d.square().mean()}


def _unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], SwinIR's input range."""
    return (x + 1.0) * 0.5


class TrainerRestorer(TrainerBase):
    config_schema = RestorerTrainerConfig

    def build_extras(self) -> None:
        if self.cfg.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {sorted(LOSSES)}, got {self.cfg.loss!r}")
        self.degradation = self.degradation_config()

    def build_dataset(self, split: str) -> Optional[Dataset]:
        return self.face_dataset(split, degradation=self.degradation)

    def compute_loss(self, model: nn.Module, batch: Dict[str, Any]) -> Tuple[torch.Tensor, Dict[str, float]]:
        loss = LOSSES[self.cfg.loss](model(_unit(batch["lq"])) - _unit(batch["hq"]))
        return loss, {self.cfg.loss: float(loss.detach())}

    def val_metrics(self, model: nn.Module, batch: Dict[str, Any], batch_idx: int) -> Dict[str, torch.Tensor]:
        lq, hq = batch["lq"], batch["hq"]
        out = model.restore(lq)
        return {
            "psnr": psnr_tensor(out, hq),
            "psnr_lq": psnr_tensor(lq, hq),
            "l1": (_unit(out) - _unit(hq)).abs().flatten(1).mean(1),
        }
