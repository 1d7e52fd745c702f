"""TM and RM, the image networks of DBLM (docs/method.md sections 4.2-4.3).

TM: (y, sigma) -> G_sigma * x; RM: (y, y_blur, sigma') -> G_sigma' * x with sigma' < sigma. A SwinIR on the
images stacked on channels, conditioned on one constant map c = sigma_512 / sigma_scale_512. ``residual``:
output ``base + 2 (f - m)`` (base y for TM, y_blur for RM; m SwinIR's output mean), else 2 f - 1.
:meth:`SigmaConditionedSwinIR.warm_start` copies a trained RM0 so that TM(y, sigma) = RM0(y) for every sigma.
"""

from __future__ import annotations

from typing import Mapping, Optional, Union

import torch
from torch import nn

from models.swinir import SwinIR
from utils.checkpoint import load_checkpoint

#: Images are RGB.
IMAGE_CHANNELS = 3
#: Arguments of SwinIR that the wrapper sets itself.
_RESERVED = ("in_chans", "out_chans", "cond_channels")


def sigma_vector(sigma: Union[float, torch.Tensor], batch: int, like: torch.Tensor) -> torch.Tensor:
    """sigma (float, 0-d or (N,) tensor) as an (N,) tensor with the dtype and device of ``like``."""
    sigma = torch.as_tensor(sigma, dtype=like.dtype, device=like.device).flatten()
    if sigma.numel() == 1:
        sigma = sigma.expand(batch)
    if sigma.shape != (batch,):
        raise ValueError(f"expected one sigma per image ({batch}), got shape {tuple(sigma.shape)}")
    return sigma


class SigmaConditionedSwinIR(nn.Module):
    """SwinIR on ``num_inputs`` stacked RGB images conditioned on c = sigma_512 / ``sigma_scale_512`` (module
    docstring); ``swinir``: SwinIR's arguments but the channel counts; ``residual``: predict the change."""

    def __init__(
        self, num_inputs: int, swinir: Optional[dict] = None, sigma_scale_512: float = 16.0, residual: bool = True
    ):
        super().__init__()
        swinir = dict(swinir or {})
        reserved = sorted(set(swinir) & set(_RESERVED))
        if reserved:
            raise ValueError(
                f"{type(self).__name__}: swinir parameters {reserved} are set by the wrapper; "
                "remove them from the config"
            )
        if sigma_scale_512 <= 0:
            raise ValueError(f"sigma_scale_512 must be > 0, got {sigma_scale_512}")
        self.backbone = SwinIR(
            in_chans=IMAGE_CHANNELS * num_inputs, out_chans=IMAGE_CHANNELS, cond_channels=1, **swinir
        )
        self.num_inputs = num_inputs
        self.sigma_scale_512 = float(sigma_scale_512)
        self.residual = residual

    def condition(self, sigma: Union[float, torch.Tensor], like: torch.Tensor) -> torch.Tensor:
        """(N, 1) conditioning c = (sigma * 512 / H) / sigma_scale_512 for images ``like`` (N, C, H, W)."""
        sigma = sigma_vector(sigma, like.shape[0], like)
        return (sigma * (512.0 / like.shape[-2]) / self.sigma_scale_512)[:, None]

    @torch.no_grad()
    def warm_start(self, restorer: Mapping[str, torch.Tensor], image: int) -> None:
        """Load a global-residual one-image SwinIR into the backbone, its first convolution reading stacked image
        ``image``; ValueError for a bad index or restorer, CheckpointError when other tensors do not fit."""
        if not 0 <= image < self.num_inputs:
            raise ValueError(f"warm start image must be in [0, {self.num_inputs}), got {image}")
        unshuffled = isinstance(self.backbone.conv_first, nn.Sequential)  # (PixelUnshuffle, Conv2d)
        conv = self.backbone.conv_first[1] if unshuffled else self.backbone.conv_first
        prefix = "conv_first.1." if unshuffled else "conv_first."
        weight, bias = restorer.get(prefix + "weight"), restorer.get(prefix + "bias")
        per_image = (conv.in_channels - self.backbone.cond_channels) // self.num_inputs
        if weight is None or bias is None or weight.shape != (conv.out_channels, per_image, *conv.kernel_size):
            got = None if weight is None else tuple(weight.shape)
            raise ValueError(
                f"the restorer's {prefix}weight must have shape "
                f"{(conv.out_channels, per_image, *conv.kernel_size)} (a SwinIR on one RGB image "
                f"of this backbone's size), got {got}"
            )
        scale = self.backbone.unshuffle_scale**2
        # Unshuffled channel j of an RGB image comes from colour j // scale.
        own_mean = self.backbone.mean.flatten()[image * IMAGE_CHANNELS : (image + 1) * IMAGE_CHANNELS]
        rgb_mean = SwinIR._channel_mean(IMAGE_CHANNELS).flatten()
        shift = ((rgb_mean - own_mean) * self.backbone.img_range).repeat_interleave(scale)
        new_weight = torch.zeros_like(conv.weight)
        new_weight[:, image * per_image : (image + 1) * per_image] = weight
        state = dict(restorer)
        state[prefix + "weight"] = new_weight
        state[prefix + "bias"] = (bias.double() - torch.einsum("oikl,i->o", weight.double(), shift.double())).float()
        load_checkpoint(self.backbone, state, strict=True)

    def run(self, images: list, base: torch.Tensor, sigma: Union[float, torch.Tensor]) -> torch.Tensor:
        """Output image in [-1, 1] (unclamped) from the stacked ``images`` and the target ``sigma``."""
        stack = torch.cat(images, dim=1)
        raw = self.backbone((stack + 1.0) * 0.5, self.condition(sigma, stack))
        if self.residual:
            return base + 2.0 * (raw - self.backbone.out_mean.to(raw.dtype))
        return 2.0 * raw - 1.0


class TransformModel(SigmaConditionedSwinIR):
    """TM: ``forward(y, sigma) -> G_sigma * x`` estimate; y (N, 3, H, W) in [-1, 1], sigma in pixels at H."""

    def __init__(self, swinir: Optional[dict] = None, sigma_scale_512: float = 16.0, residual: bool = True):
        super().__init__(1, swinir, sigma_scale_512, residual)

    def forward(self, y: torch.Tensor, sigma: Union[float, torch.Tensor]) -> torch.Tensor:
        return self.run([y], y, sigma)


class RefinementModel(SigmaConditionedSwinIR):
    """RM: ``forward(y, y_blur, sigma_target) -> G_sigma_target * x`` estimate, with y_blur the blurred
    image of a blurrier level (sigma > sigma_target); images (N, 3, H, W) in [-1, 1], sigma in pixels."""

    def __init__(self, swinir: Optional[dict] = None, sigma_scale_512: float = 16.0, residual: bool = True):
        super().__init__(2, swinir, sigma_scale_512, residual)

    def forward(self, y: torch.Tensor, y_blur: torch.Tensor, sigma_target: Union[float, torch.Tensor]) -> torch.Tensor:
        return self.run([y, y_blur], y_blur, sigma_target)
