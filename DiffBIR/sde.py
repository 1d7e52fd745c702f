"""SDE, DBLM's standard-deviation estimator (docs/method.md section 4.1): y -> sigma_hat ~ sigma*(x, y).

A residual CNN (stride-1 stem, strided stages, global average pool, two-layer MLP) predicting log sigma.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class ResBlock(nn.Module):
    """x + conv(act(conv(act(x)))), no normalisation (batch sizes are small)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.LeakyReLU(0.2),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SigmaEstimator(nn.Module):
    """CNN regressor of log sigma: stages of ``blocks_per_stage`` residual blocks (stride 2 from stage 1), output
    bias ``log_sigma_init``."""

    def __init__(
        self,
        in_chans: int = 3,
        channels: Sequence[int] = (32, 64, 128, 256),
        blocks_per_stage: int = 1,
        log_sigma_init: float = 0.0,
    ):
        super().__init__()
        channels = list(channels)
        if not channels:
            raise ValueError("SigmaEstimator: 'channels' must list at least one stage width")
        layers = [nn.Conv2d(in_chans, channels[0], 3, padding=1)]
        prev = channels[0]
        for i, ch in enumerate(channels):
            if i > 0:
                layers.append(nn.Conv2d(prev, ch, 4, stride=2, padding=1))
            layers.extend(ResBlock(ch) for _ in range(blocks_per_stage))
            prev = ch
        layers.extend([nn.LeakyReLU(0.2), nn.AdaptiveAvgPool2d(1), nn.Flatten()])
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(prev, prev), nn.LeakyReLU(0.2), nn.Linear(prev, 1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.constant_(self.head[-1].bias, float(log_sigma_init))

    def forward(self, y: torch.Tensor, log: bool = False) -> torch.Tensor:
        """sigma_hat > 0 in pixels at y's resolution (its log with ``log``), (N,); y: (N, in_chans, H, W) in [-1, 1]."""
        log_sigma = self.head(self.features(y)).squeeze(1)
        return log_sigma if log else log_sigma.exp()
