"""Half-precision conversion of the UNet trunk, as in improved-diffusion.

Only convolutions (including the attention's 1x1 Conv1d qkv / proj_out) are cast; normalisation layers
compute in float32 (``GroupNorm32``) and the timestep-embedding MLPs stay float32, so the embedding is
cast to the activation dtype where it is added.
"""
from __future__ import annotations

import torch
import torch.nn as nn

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def convert_module_to_f16(layer: nn.Module) -> None:
    """Cast a convolution's weight and bias to float16 (other layers are left unchanged)."""
    _cast_conv(layer, torch.float16)


def convert_module_to_f32(layer: nn.Module) -> None:
    """Undo :func:`convert_module_to_f16`."""
    _cast_conv(layer, torch.float32)


def _cast_conv(layer: nn.Module, dtype: torch.dtype) -> None:
    if isinstance(layer, _CONVS):
        layer.weight.data = layer.weight.data.to(dtype)
        if layer.bias is not None:
            layer.bias.data = layer.bias.data.to(dtype)
