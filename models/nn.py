"""Small building blocks of the improved-diffusion UNet (Nichol & Dhariwal, 2021).

Layer names and parameter layouts follow improved-diffusion / DifFace so that the public DifFace prior
(``iddpm_ffhq512_ema500000.pth``) loads without renaming (docs/method.md section 3).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.utils.checkpoint


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 and cast back, so fp16 activations normalise stably."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def normalization(channels: int) -> nn.Module:
    """The UNet's normalisation layer: GroupNorm with 32 groups."""
    return GroupNorm32(32, channels)


def conv_nd(dims: int, *args, **kwargs) -> nn.Module:
    """A 1D, 2D or 3D convolution."""
    layers = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
    if dims not in layers:
        raise ValueError(f"unsupported dimensions: {dims} (expected 1, 2 or 3)")
    return layers[dims](*args, **kwargs)


def avg_pool_nd(dims: int, *args, **kwargs) -> nn.Module:
    """A 1D, 2D or 3D average pooling."""
    layers = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
    if dims not in layers:
        raise ValueError(f"unsupported dimensions: {dims} (expected 1, 2 or 3)")
    return layers[dims](*args, **kwargs)


def zero_module(module: nn.Module) -> nn.Module:
    """Zero the parameters of ``module`` (residual branches start as identity) and return it."""
    for p in module.parameters():
        p.detach().zero_()
    return module


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over all non-batch dimensions."""
    return x.mean(dim=list(range(1, x.ndim)))


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal timestep embedding [cos(t f_i), sin(t f_i)], f_i = max_period^(-i/half) (Vaswani et al.).

    ``timesteps``: (N,) tensor, possibly fractional. Returns an (N, dim) float32 tensor."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


def checkpoint(func, inputs: tuple, enabled: bool):
    """Run ``func(*inputs)``, recomputing activations in the backward pass when ``enabled`` (saves memory)."""
    if enabled and torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(func, *inputs, use_reentrant=False)
    return func(*inputs)
