"""Exponential moving average of model parameters (improved-diffusion / BasicSR style).

theta_ema <- rate * theta_ema + (1 - rate) * theta, applied to every floating-point parameter and
buffer after each optimiser step. The EMA copy is what checkpoints ship for inference.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Holds a frozen copy of ``model`` updated by :meth:`update`."""

    def __init__(self, model: nn.Module, rate: float = 0.999):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"EMA rate must be in [0, 1), got {rate}")
        self.rate = rate
        self.model = copy.deepcopy(_unwrap(model)).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        src = _unwrap(model).state_dict()
        for name, value in self.model.state_dict().items():
            new = src[name].detach()
            if value.dtype.is_floating_point:
                value.mul_(self.rate).add_(new.to(value.dtype), alpha=1.0 - self.rate)
            else:
                value.copy_(new)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)


def _unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper."""
    return getattr(model, "module", model)
