"""The ``train:`` section shared by every training config (main.py, train_SDE.py, train_DBLM.py).

``iterations``; ``batch: [A, B]`` (A samples per step over all processes, which must divide it; B the validation
batch of a process); ``microbatch`` (0: a process's whole share); ``lr``, ``weight_decay``, ``betas`` (AdamW),
``warmup_iterations``, ``lr_schedule`` (constant | cosine to ``min_lr``), ``grad_clip`` (0: off), ``ema_rate``;
``amp`` (none | bf16 | fp16, fp16 on CUDA only); ``seed``; ``save_freq``, ``keep_checkpoints`` (0: all),
``val_freq``, ``log_freq``; ``log_sample_paths`` (tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Tuple

from omegaconf import MISSING

from utils.config import ConfigError
from utils.lr_schedule import LR_SCHEDULES

AMP_MODES = ("none", "bf16", "fp16")


@dataclass
class TrainSection:
    iterations: int = MISSING
    batch: List[int] = field(default_factory=lambda: [32, 8])  # [total train batch, val batch per process]
    microbatch: int = 0
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_iterations: int = 0
    lr_schedule: str = "constant"
    min_lr: float = 0.0
    grad_clip: float = 0.0
    ema_rate: float = 0.999
    amp: str = "none"
    seed: int = 0
    save_freq: int = 1000
    val_freq: int = 1000
    log_freq: int = 10
    keep_checkpoints: int = 0
    log_sample_paths: bool = False


def check_train(tc: Any, world_size: int) -> Tuple[int, int]:
    """Validate a ``train:`` section for ``world_size`` processes; returns (samples per process and step,
    micro-batch size). ConfigError names the key."""

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(f"train.{message}")

    for key in ("iterations", "save_freq", "val_freq", "log_freq"):
        need(tc[key] >= 1, f"{key} must be >= 1, got {tc[key]}")
    for key in ("warmup_iterations", "keep_checkpoints", "microbatch", "grad_clip", "min_lr", "weight_decay"):
        need(tc[key] >= 0, f"{key} must be >= 0, got {tc[key]}")
    need(0.0 <= tc.ema_rate < 1.0, f"ema_rate must be in [0, 1), got {tc.ema_rate}")
    need(len(tc.betas) == 2, f"betas must be [beta1, beta2], got {list(tc.betas)}")
    need(tc.lr_schedule in LR_SCHEDULES, f"lr_schedule must be one of {list(LR_SCHEDULES)}, got {tc.lr_schedule!r}")
    need(tc.amp in AMP_MODES, f"amp must be one of {list(AMP_MODES)}, got {tc.amp!r}")
    need(
        len(tc.batch) == 2 and min(tc.batch) >= 1,
        f"batch must be [total train batch, val batch per process], got {list(tc.batch)}",
    )
    need(
        tc.batch[0] % world_size == 0,
        f"batch[0]={tc.batch[0]} (total over processes) is not divisible by {world_size} processes",
    )
    per_rank = tc.batch[0] // world_size
    micro = tc.microbatch or per_rank
    need(per_rank % micro == 0, f"microbatch={micro} does not divide the per-process batch {per_rank}")
    return per_rank, micro
