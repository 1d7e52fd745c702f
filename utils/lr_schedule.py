"""Learning-rate schedules of the training loop: linear warm-up over ``warmup`` steps, then constant or

    lr_t = min_lr + (lr - min_lr) (1 + cos(pi p)) / 2,   p = min(1, (step - warmup) / (total - warmup)),

a pure function of the (1-based) step, so a resumed run continues it exactly.
"""

from __future__ import annotations

import math

LR_SCHEDULES = ("constant", "cosine")


def lr_at(
    step: int, *, lr: float, total: int, warmup: int = 0, schedule: str = "constant", min_lr: float = 0.0
) -> float:
    """Learning rate of optimiser step ``step`` (module docstring); ValueError on an unknown schedule."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"lr schedule must be one of {list(LR_SCHEDULES)}, got {schedule!r}")
    if warmup > 0 and step <= warmup:
        return lr * step / warmup
    if schedule == "constant":
        return lr
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
