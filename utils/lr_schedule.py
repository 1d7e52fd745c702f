"""Learning-rate schedules of the training loop (trainers/base.py).

``lr_at(step)`` for optimiser step ``step`` (1-based) of a run of ``total`` steps: a linear warm-up
lr * step / warmup over the first ``warmup`` steps, then either the constant ``lr`` or the cosine decay
(SGDR without restarts, Loshchilov & Hutter 2017)

    lr_t = min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2,   p = (step - warmup) / (total - warmup),

which reaches ``min_lr`` at ``total`` and stays there (p is clipped to 1). A pure function of the step, so
a resumed run continues the schedule exactly.
"""
from __future__ import annotations

import math

LR_SCHEDULES = ("constant", "cosine")


def lr_at(step: int, *, lr: float, total: int, warmup: int = 0, schedule: str = "constant",
          min_lr: float = 0.0) -> float:
    """Learning rate of optimiser step ``step`` (module docstring); ValueError on an unknown schedule."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"lr schedule must be one of {list(LR_SCHEDULES)}, got {schedule!r}")
    if warmup > 0 and step <= warmup:
        return lr * step / warmup
    if schedule == "constant":
        return lr
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
