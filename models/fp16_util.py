"""Half-precision conversion of the UNet trunk (improved-diffusion): convolutions cast to float16 / bfloat16;
normalisation and the timestep-embedding MLPs stay float32.
"""

from __future__ import annotations

import torch
import torch.nn as nn

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
HALF_DTYPES = (torch.float16, torch.bfloat16)


def cast_convolutions(layer: nn.Module, dtype: torch.dtype) -> None:
    """Cast a convolution's weight and bias to ``dtype`` (other layers are left unchanged)."""
    if isinstance(layer, _CONVS):
        layer.weight.data = layer.weight.data.to(dtype)
        if layer.bias is not None:
            layer.bias.data = layer.bias.data.to(dtype)
