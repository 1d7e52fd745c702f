"""What the three DBLM trainings (SDE, TM, RM; docs/method.md section 4) share: their config, data and outputs.

    accelerate launch train_SDE.py --config configs/train/train_SDE.yaml
    accelerate launch train_DBLM.py --config configs/train/train_DBLM_TM.yaml   (or _RM.yaml)

A config of configs/train/ names its network in ``task`` (sde, tm or rm: :data:`TASKS`), the trainer
of ``trainers/sde.py`` or ``trainers/transform.py``; the loop is :class:`trainers.base.TrainerBase`.
:class:`DBLMTrainer` adds what the three have in common:

* data: ``data.datasets.FaceDataset`` of ``data.train`` / ``data.val`` (first ``data.val_size`` faces) at
  ``data.resolution`` with the blind degradation ``data.degradation`` and the sigma* target
  (``with_sigma_star=True``); degradations are seeded by ``data.train_seed`` / ``data.val_seed``.
* model: ``model``, with the weights of ``model.ckpt_path`` (continue from earlier weights) if set, else
  warm-started by ``init`` if the config has one (TM, RM: ``DiffBIR.transform.SigmaConditionedSwinIR.warm_start``
  from a trained one-image restorer, RM0), else freshly initialised.
* outputs: checkpoints in ``<save_dir>/checkpoints`` (where the ``step_XXXXXXX`` directories of the
  earlier accelerate loop also count, :mod:`utils.run_checkpoints`) and, at the end, the EMA weights as a
  plain state dict ``<save_dir>/ema_final.pth``, the file ``DiffBIR.dblm.DBLM.from_config`` loads.
* seeding ``rank_offset`` (:class:`trainers.base.TrainerBase`), the streams the demo networks were trained with.

Quantities given in 512-px units (``*_512``) are scaled to the training resolution (:meth:`DBLMTrainer.px`).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from omegaconf import MISSING, OmegaConf
from torch import nn

from data.datasets import FaceDataset
from data.degradation import load_degradation_config
from trainers import cli
from trainers.base import TrainerBase, TrainingError
from utils.checkpoint import read_state_dict
from utils.config import ConfigError, WeightsNode, get_obj_from_str, load_config, override_hint, require_keys
from utils.model_factory import resolve_path
from utils.run_checkpoints import CheckpointSeries, run_checkpoints
from utils.train_schema import TrainSection, check_train

EMA_FINAL = "ema_final.pth"
TASKS = {"sde": "trainers.sde.TrainerSDE", "tm": "trainers.transform.TrainerTM", "rm": "trainers.transform.TrainerRM"}


class LossType(Enum):
    l1 = "l1"
    l2 = "l2"


def image_loss(kind: LossType, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute (l1) or squared (l2) error."""
    return F.l1_loss(out, target) if kind is LossType.l1 else F.mse_loss(out, target)


@dataclass
class DataConfig:
    train: str = MISSING  # folder of images or text file list (relative names resolved beside it)
    val: str = MISSING
    resolution: int = MISSING
    flip: bool = True
    degradation: Any = "configs/degradation/difface_blind.yaml"  # YAML path or an inline mapping
    train_seed: int = 0
    val_seed: int = 1234  # fixed degradations of the validation images
    val_size: Optional[int] = None  # first N validation images; null = all
    num_workers: int = 2


@dataclass
class WarmStart:
    ckpt_path: str = MISSING  # a global-residual SwinIR's state_dict, e.g. weights/demo/restorer_demo64.pth
    image: int = 0  # the stacked input image its first convolution reads (TM: 0 = y; RM: 1 = y_blur)


@dataclass
class DBLMConfig:
    task: str = MISSING  # sde | tm | rm (TASKS)
    save_dir: str = MISSING
    model: WeightsNode = field(default_factory=WeightsNode)  # ckpt_path: initial weights (replaces init)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainSection = MISSING


class DBLMTrainer(TrainerBase):
    """The data, model and outputs shared by SDE, TM and RM (module docstring)."""

    config_schema = DBLMConfig
    seeding = "rank_offset"
    final_weights = EMA_FINAL

    @classmethod
    def check(cls, cfg) -> None:
        """Value checks beyond the schema's types; ConfigError names the key."""
        check_train(cfg.train, world_size=1)
        if cfg.data.resolution < 8:
            raise ConfigError(f"'data.resolution' must be >= 8, got {cfg.data.resolution}")

    def checkpoint_series(self) -> CheckpointSeries:
        return run_checkpoints(self.save_dir / "checkpoints", legacy_dirs=True)

    def px(self, value_512: float) -> float:
        """A 512-px quantity in pixels at the training resolution."""
        return value_512 * self.cfg.data.resolution / 512.0

    def build_model(self) -> nn.Module:
        model = super().build_model()
        init = self.cfg.get("init", None)
        if init is not None and not self.cfg.model.ckpt_path:
            source = read_state_dict(resolve_path(init.ckpt_path), hint="'init.ckpt_path' must be a trained restorer's "
                                     "state_dict (e.g. weights/demo/restorer_demo64.pth)")
            try:
                model.warm_start(source, init.image)
            except ValueError as err:
                raise TrainingError(f"init: {init.ckpt_path}: {err}") from None
        return model

    def build_dataset(self, split: str) -> FaceDataset:
        """The training (random flips) or validation (first ``val_size`` faces) FaceDataset with sigma*."""
        d = self.cfg.data
        degradation = resolve_path(d.degradation) if isinstance(d.degradation, str) else \
            OmegaConf.to_container(d.degradation)
        try:
            degradation = load_degradation_config(degradation)
        except (FileNotFoundError, ValueError) as err:
            raise ConfigError(f"data.degradation: {err}") from None
        try:
            if split == "train":
                return FaceDataset(resolve_path(d.train), d.resolution, flip=d.flip, degradation=degradation,
                                   seed=d.train_seed, with_sigma_star=True)
            return FaceDataset(resolve_path(d.val), d.resolution, flip=False, degradation=degradation,
                               seed=d.val_seed, with_sigma_star=True, length=d.val_size)
        except FileNotFoundError as err:
            raise ConfigError(f"data.{split}: {err}; {override_hint(f'data.{split}')}") from None
        except ValueError as err:
            raise ConfigError(f"data.{split}: {err}") from None


def trainer_for(task: str) -> type:
    """The trainer class of a DBLM ``task`` (sde, tm, rm)."""
    return get_obj_from_str(TASKS[task])


def load_experiment(path: str | Path, tasks: Sequence[str], overrides: Optional[list] = None):
    """Load and validate a DBLM training config whose ``task`` is one of ``tasks``; ConfigError otherwise."""
    task = load_config(path, overrides=overrides).get("task", None)
    if task not in tasks:
        raise ConfigError(f"{path}: key 'task' must be one of {list(tasks)} for this script, got {task!r}")
    cls = trainer_for(task)
    cfg = load_config(path, cls.config_schema, overrides)
    require_keys(cfg, path)
    try:
        cls.check(cfg)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return cfg


def build_parser(tasks: Sequence[str], prog: str) -> argparse.ArgumentParser:
    return cli.build_parser(prog, f"Train DBLM network(s) {'/'.join(tasks)} (docs/method.md section 4).",
                            save_dir_required=False)


def main(argv: Optional[Sequence[str]], tasks: Sequence[str], prog: str) -> int:
    """train_SDE.py / train_DBLM.py: ``--save_dir`` becomes the override ``save_dir=`` (:mod:`trainers.cli`)."""
    def make_trainer(args: argparse.Namespace) -> TrainerBase:
        overrides = args.overrides + ([f"save_dir={args.save_dir}"] if args.save_dir is not None else [])
        cfg = load_experiment(args.config, tasks, overrides)
        return trainer_for(cfg.task)(cfg, cfg.save_dir, args.resume)

    return cli.main(argv, build_parser(tasks, prog), make_trainer)
