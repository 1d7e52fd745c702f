"""DGSA, the dynamic guidance-scaling adjuster (docs/method.md section 7).

    x - x0_tilde ~ Laplace(0, b),   b = b_min + softplus(up_f(f_theta(pool_f(x0_hat, x0_tilde, y_k), t))),
    s = s_max / (1 + b / b_ref)  in (0, s_max],    x0 = x0_hat + s (x0_tilde - x0_hat).

f_theta: a UNet of models/unet.py's ResBlocks with timestep FiLM, no attention (widths multiples of 32 for
GroupNorm); its output convolution starts at zero with a bias giving b = ``b_init``. ``map_downsample`` f:
f x f block means in, logits upsampled bilinearly. Trained with the Laplace NLL (:func:`laplace_nll`).
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from models.nn import conv_nd, normalization, timestep_embedding, zero_module
from models.unet import Downsample, ResBlock, TimestepEmbedSequential, Upsample, run_trunk

NUM_INPUTS = 3  # x0_hat, x0_tilde, y_k
GROUPS = 32  # GroupNorm groups of models.nn.normalization
REDUCTIONS = ("mean", "per_image", "none")


def laplace_nll(residual: torch.Tensor, b: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Laplace NLL of ``residual`` r = x - x0_tilde, scale ``b`` (N, 1, H, W) shared by a pixel's channels.

        nll[n, c, p] = |r[n, c, p]| / b[n, p] + log b[n, p]     (minimised by b = mean_c |r|)

    ``reduction``: ``mean`` (scalar), ``per_image`` ((N,)) or ``none``; float32 (float64 for float64 inputs)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"laplace_nll: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if (
        residual.ndim != 4
        or b.ndim != 4
        or b.shape[1] != 1
        or b.shape[0] != residual.shape[0]
        or b.shape[-2:] != residual.shape[-2:]
    ):
        raise ValueError(
            f"laplace_nll: expected residual (N, C, H, W) and b (N, 1, H, W), got "
            f"{tuple(residual.shape)} and {tuple(b.shape)}"
        )
    dtype = torch.float64 if residual.dtype == torch.float64 else torch.float32
    b = b.to(dtype)
    nll = residual.to(dtype).abs() / b + torch.log(b)
    if reduction == "none":
        return nll
    if reduction == "per_image":
        return nll.flatten(1).mean(1)
    return nll.mean()


def scale_from_b(b: Union[torch.Tensor, float], s_max: float, b_ref: float) -> Union[torch.Tensor, float]:
    """The guidance map s = s_max / (1 + b / b_ref) (module docstring)."""
    return s_max / (1.0 + b / b_ref)


class DGSA(nn.Module):
    """Per-pixel Laplace scale b of x - x0_tilde (module docstring).

    The network sees 3 * ``in_channels``; widths ``model_channels * channel_mult`` are multiples of 32; the image
    size must be divisible by ``map_downsample`` * 2^(len(channel_mult) - 1). ``s_max`` in (0, 1]; ``b_ref``: the b
    with s = s_max / 2; ``b_min`` < ``b_init``: the floor and the initial b. Others as in models/unet.py."""

    def __init__(
        self,
        in_channels: int = 3,
        model_channels: int = 32,
        channel_mult: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 1,
        dropout: float = 0.0,
        use_scale_shift_norm: bool = True,
        s_max: float = 1.0,
        b_ref: float = 0.05,
        b_min: float = 1e-3,
        b_init: float = 0.1,
        use_checkpoint: bool = False,
        map_downsample: int = 1,
    ):
        super().__init__()
        channel_mult = tuple(int(m) for m in channel_mult)
        widths = [model_channels * m for m in channel_mult]
        if not channel_mult or min(channel_mult) < 1 or any(w % GROUPS for w in widths):
            raise ValueError(
                f"DGSA: model_channels * channel_mult = {widths} must all be positive multiples of "
                f"{GROUPS} (GroupNorm groups); got model_channels={model_channels}, "
                f"channel_mult={list(channel_mult)}"
            )
        if num_res_blocks < 1:
            raise ValueError(f"DGSA: num_res_blocks must be >= 1, got {num_res_blocks}")
        if not 0.0 < s_max <= 1.0:
            raise ValueError(f"DGSA: s_max must be in (0, 1], got {s_max}")
        if not (b_ref > 0 and b_min > 0 and b_init > b_min):
            raise ValueError(
                f"DGSA: need b_ref > 0 and b_init > b_min > 0, got b_ref={b_ref}, b_min={b_min}, b_init={b_init}"
            )
        if int(map_downsample) != map_downsample or map_downsample < 1:
            raise ValueError(f"DGSA: map_downsample must be a positive integer, got {map_downsample}")
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.s_max, self.b_ref, self.b_min = float(s_max), float(b_ref), float(b_min)
        self.map_downsample = int(map_downsample)
        self.down_factor = 2 ** (len(channel_mult) - 1) * self.map_downsample  # the input size must divide by it
        emb_dim = 4 * model_channels
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

        def res(ch_in: int, ch_out: int) -> ResBlock:
            return ResBlock(
                ch_in,
                emb_dim,
                dropout,
                out_channels=ch_out,
                use_scale_shift_norm=use_scale_shift_norm,
                use_checkpoint=use_checkpoint,
            )

        ch = widths[0]
        self.input_blocks = nn.ModuleList(
            [TimestepEmbedSequential(conv_nd(2, NUM_INPUTS * in_channels, ch, 3, padding=1))]
        )
        skips = [ch]
        for level, width in enumerate(widths):
            for _ in range(num_res_blocks):
                self.input_blocks.append(TimestepEmbedSequential(res(ch, width)))
                ch = width
                skips.append(ch)
            if level != len(widths) - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch, True, 2)))
                skips.append(ch)
        self.middle_block = TimestepEmbedSequential(res(ch, ch), res(ch, ch))
        self.output_blocks = nn.ModuleList()
        for level, width in reversed(list(enumerate(widths))):
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skips.pop(), width)]
                ch = width
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch, True, 2))
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        head = zero_module(conv_nd(2, ch, 1, 3, padding=1))
        with torch.no_grad():
            head.bias.fill_(math.log(math.expm1(b_init - b_min)))  # softplus^-1(b_init - b_min)
        self.out = nn.Sequential(normalization(ch), nn.SiLU(), head)

    def forward(self, x0_hat: torch.Tensor, x0_tilde: torch.Tensor, y_k: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """b (N, 1, H, W) >= b_min for images (N, in_channels, H, W) in [-1, 1] and original timesteps t (N,)."""
        if not (x0_hat.shape == x0_tilde.shape == y_k.shape) or x0_hat.ndim != 4 or x0_hat.shape[1] != self.in_channels:
            raise ValueError(
                f"DGSA: expected three (N, {self.in_channels}, H, W) images, got "
                f"{tuple(x0_hat.shape)}, {tuple(x0_tilde.shape)}, {tuple(y_k.shape)}"
            )
        h_img, w_img = x0_hat.shape[-2:]
        if h_img % self.down_factor or w_img % self.down_factor:
            raise ValueError(
                f"DGSA: image size {h_img}x{w_img} must be divisible by {self.down_factor} "
                f"(map_downsample * 2^(levels - 1))"
            )
        t = torch.as_tensor(t, device=x0_hat.device).reshape(-1)
        if t.numel() == 1:
            t = t.expand(x0_hat.shape[0])
        if t.shape[0] != x0_hat.shape[0]:
            raise ValueError(f"DGSA: need one timestep per image ({x0_hat.shape[0]}), got {t.shape[0]}")
        emb = self.time_embed(timestep_embedding(t, self.model_channels))
        inputs = torch.cat([x0_hat, x0_tilde, y_k], dim=1).float()
        if self.map_downsample > 1:
            inputs = F.avg_pool2d(inputs, self.map_downsample)
        logits = self.out(run_trunk(self, inputs, emb)).float()
        if self.map_downsample > 1:
            logits = F.interpolate(logits, size=(h_img, w_img), mode="bilinear", align_corners=False)
        return self.b_min + F.softplus(logits)

    def guidance_scale(
        self, x0_hat: torch.Tensor, x0_tilde: torch.Tensor, y_k: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """The guidance map s = s_max / (1 + b / b_ref), (N, 1, H, W) in (0, s_max]."""
        return scale_from_b(self(x0_hat, x0_tilde, y_k, t), self.s_max, self.b_ref)
