"""What the three DBLM trainings (SDE, TM, RM; docs/method.md section 4) share: their config, data and outputs.

    accelerate launch train_SDE.py --config configs/train/train_SDE.yaml --save_dir DIR
    accelerate launch train_DBLM.py --config configs/train/train_DBLM_TM.yaml --save_dir DIR   (or _RM.yaml)

A config names its trainer in ``trainer.target`` (``trainers.sde.TrainerSDE``, ``trainers.transform.TrainerTM``
or ``TrainerRM``), as every training config does (:func:`trainers.base.load_training_config`).
:class:`DBLMTrainer` adds what the three have in common:

* data: :meth:`trainers.base.TrainerBase.face_dataset` of ``data.train`` / ``data.val`` with the blind
  degradation ``degradation`` and the sigma* target (``with_sigma_star=True``); both splits at one resolution.
* model: ``model``, with the weights of ``model.ckpt_path`` (continue from earlier weights) if set, else
  warm-started by ``init`` if the config has one (TM, RM: ``DiffBIR.transform.SigmaConditionedSwinIR.warm_start``
  from a trained one-image restorer, RM0), else freshly initialised.
* outputs: checkpoints in ``<save_dir>/checkpoints`` and, at the end, the EMA weights as a plain state dict
  ``<save_dir>/ema_final.pth``, the file ``DiffBIR.dblm.DBLM.from_config`` loads.
* seeding ``rank_offset`` (:class:`trainers.base.TrainerBase`), the streams the demo networks were trained with.

Quantities given in 512-px units (``*_512``) are scaled to the training resolution (:meth:`DBLMTrainer.px`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import MISSING
from torch import nn

from data.datasets import FaceDataset
from trainers.base import TrainerBase, TrainerConfig, TrainingError
from utils.checkpoint import read_state_dict
from utils.config import ConfigError
from utils.model_factory import resolve_path
from utils.run_checkpoints import CheckpointSeries, run_checkpoints

EMA_FINAL = "ema_final.pth"


class LossType(Enum):
    l1 = "l1"
    l2 = "l2"


def image_loss(kind: LossType, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute (l1) or squared (l2) error."""
    return F.l1_loss(out, target) if kind is LossType.l1 else F.mse_loss(out, target)


@dataclass
class WarmStart:
    ckpt_path: str = MISSING  # a global-residual SwinIR's state_dict, e.g. weights/demo/restorer_demo64.pth
    image: int = 0  # the stacked input image its first convolution reads (TM: 0 = y; RM: 1 = y_blur)


@dataclass
class DBLMConfig(TrainerConfig):
    degradation: Any = MISSING  # DegradationConfig YAML path or an inline mapping


class DBLMTrainer(TrainerBase):
    """The data, model and outputs shared by SDE, TM and RM (module docstring)."""

    config_schema = DBLMConfig
    seeding = "rank_offset"
    final_weights = EMA_FINAL

    @classmethod
    def check(cls, cfg) -> None:
        """Value checks beyond the schema's types; ConfigError names the key."""
        super().check(cfg)
        resolution = cfg.data.train.resolution
        if resolution < 8:
            raise ConfigError(f"'data.train.resolution' must be >= 8, got {resolution}")
        if cfg.data.val is not None and cfg.data.val.resolution != resolution:
            raise ConfigError(
                f"'data.val.resolution' must equal data.train.resolution {resolution}, got {cfg.data.val.resolution}"
            )

    def checkpoint_series(self) -> CheckpointSeries:
        return run_checkpoints(self.save_dir / "checkpoints")

    def px(self, value_512: float) -> float:
        """A 512-px quantity in pixels at the training resolution."""
        return value_512 * self.cfg.data.train.resolution / 512.0

    def build_model(self) -> nn.Module:
        model = super().build_model()
        init = self.cfg.get("init", None)
        if init is not None and not self.cfg.model.ckpt_path:
            source = read_state_dict(
                resolve_path(init.ckpt_path),
                hint="'init.ckpt_path' must be a trained restorer's state_dict (e.g. weights/demo/restorer_demo64.pth)",
            )
            try:
                model.warm_start(source, init.image)
            except ValueError as err:
                raise TrainingError(f"init: {init.ckpt_path}: {err}") from None
        return model

    def build_dataset(self, split: str) -> FaceDataset:
        """``data.<split>`` degraded by ``degradation``, with sigma*."""
        return self.face_dataset(split, degradation=self.degradation_config(), with_sigma_star=True)
