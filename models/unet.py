"""Improved-diffusion UNet (Nichol & Dhariwal 2021) in DifFace's layout (docs/method.md section 3).

Parameter names and shapes match ``iddpm_ffhq512_ema500000.pth``. ``attention_resolutions`` lists feature-map
sizes in pixels (DifFace's convention): attention where ``image_size // ds`` is listed.
:meth:`UNetModel.convert_to` casts the trunk to float16 / bfloat16; input and output keep the caller's dtype.
"""

from __future__ import annotations

from abc import abstractmethod
from functools import partial
from typing import Iterable, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.fp16_util import HALF_DTYPES, cast_convolutions
from models.nn import avg_pool_nd, checkpoint, conv_nd, normalization, timestep_embedding, zero_module


class TimestepBlock(nn.Module):
    """A module whose forward takes the timestep embedding as a second argument."""

    @abstractmethod
    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Apply the module to ``x`` given the timestep embedding ``emb``."""


class TimestepEmbedSequential(nn.Sequential, TimestepBlock):
    """Sequential container passing ``emb`` to the children that take it."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, TimestepBlock) else layer(x)
        return x


class Upsample(nn.Module):
    """Nearest x2 upsampling (inner dims only for 3D), optionally followed by a 3x3 convolution."""

    def __init__(self, channels: int, use_conv: bool, dims: int = 2, out_channels: Optional[int] = None):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.dims = dims
        if use_conv:
            self.conv = conv_nd(dims, channels, self.out_channels, 3, padding=1)
        self.use_conv = use_conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dims == 3:
            x = F.interpolate(x, (x.shape[2], x.shape[3] * 2, x.shape[4] * 2), mode="nearest")
        else:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    """x2 downsampling by a strided 3x3 convolution (``use_conv``) or average pooling."""

    def __init__(self, channels: int, use_conv: bool, dims: int = 2, out_channels: Optional[int] = None):
        super().__init__()
        self.out_channels = out_channels or channels
        stride = 2 if dims != 3 else (1, 2, 2)
        if use_conv:
            self.op = conv_nd(dims, channels, self.out_channels, 3, stride=stride, padding=1)
        else:
            if self.out_channels != channels:
                raise ValueError("Downsample without convolution cannot change the channel count")
            self.op = avg_pool_nd(dims, kernel_size=stride, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class ResBlock(TimestepBlock):
    """Residual block conditioned on the timestep embedding.

    ``h = in_layers(x)``; with ``use_scale_shift_norm`` the embedding gives (scale, shift) and
    ``h = out_rest(norm(h) * (1 + scale) + shift)`` (FiLM, Dhariwal & Nichol 2021), otherwise it is added
    to ``h``. Output is ``skip(x) + h``."""

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: Optional[int] = None,
        use_conv: bool = False,
        use_scale_shift_norm: bool = False,
        dims: int = 2,
        use_checkpoint: bool = False,
        up: bool = False,
        down: bool = False,
    ):
        super().__init__()
        self.out_channels = out_channels or channels
        self.use_checkpoint = use_checkpoint
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(
            normalization(channels), nn.SiLU(), conv_nd(dims, channels, self.out_channels, 3, padding=1)
        )
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False, dims), Upsample(channels, False, dims)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False, dims), Downsample(channels, False, dims)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        emb_out = 2 * self.out_channels if use_scale_shift_norm else self.out_channels
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, emb_out))
        self.out_layers = nn.Sequential(
            normalization(self.out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            zero_module(conv_nd(dims, self.out_channels, self.out_channels, 3, padding=1)),
        )
        if self.out_channels == channels:
            self.skip_connection = nn.Identity()
        elif use_conv:
            self.skip_connection = conv_nd(dims, channels, self.out_channels, 3, padding=1)
        else:
            self.skip_connection = conv_nd(dims, channels, self.out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return checkpoint(self._forward, (x, emb), self.use_checkpoint)

    def _forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:
            in_rest, in_conv = self.in_layers[:-1], self.in_layers[-1]
            h = in_conv(self.h_upd(in_rest(x)))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)
        emb_out = emb_out.reshape(emb_out.shape + (1,) * (h.ndim - emb_out.ndim))
        if self.use_scale_shift_norm:
            out_norm, out_rest = self.out_layers[0], self.out_layers[1:]
            scale, shift = torch.chunk(emb_out, 2, dim=1)
            h = out_rest(out_norm(h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class QKVAttentionLegacy(nn.Module):
    """Multi-head attention on a packed (N, heads*3*C, T) qkv: heads split first, then q/k/v (legacy order)."""

    def __init__(self, n_heads: int):
        super().__init__()
        self.n_heads = n_heads

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        bs, width, length = qkv.shape
        ch = width // (3 * self.n_heads)
        q, k, v = qkv.reshape(bs * self.n_heads, ch * 3, length).split(ch, dim=1)
        return _attention(q, k, v).reshape(bs, -1, length)


class QKVAttention(nn.Module):
    """Multi-head attention on a packed (N, 3*heads*C, T) qkv: q/k/v split first, then heads (new order)."""

    def __init__(self, n_heads: int):
        super().__init__()
        self.n_heads = n_heads

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        bs, width, length = qkv.shape
        ch = width // (3 * self.n_heads)
        q, k, v = (z.reshape(bs * self.n_heads, ch, length) for z in qkv.chunk(3, dim=1))
        return _attention(q, k, v).reshape(bs, -1, length)


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q^T k / sqrt(C)) applied to v, for (B, C, T) tensors; the softmax runs in float32."""
    scale = q.shape[1] ** -0.25
    weight = torch.einsum("bct,bcs->bts", q * scale, k * scale)
    weight = torch.softmax(weight.float(), dim=-1).type(weight.dtype)
    return torch.einsum("bts,bcs->bct", weight, v)


class AttentionBlock(nn.Module):
    """Spatial self-attention with a residual connection: ``x + proj_out(attn(qkv(norm(x))))``."""

    def __init__(
        self,
        channels: int,
        num_heads: int = 1,
        num_head_channels: int = -1,
        use_checkpoint: bool = False,
        use_new_attention_order: bool = False,
    ):
        super().__init__()
        if num_head_channels == -1:
            self.num_heads = num_heads
        else:
            if channels % num_head_channels:
                raise ValueError(f"channels {channels} not divisible by num_head_channels {num_head_channels}")
            self.num_heads = channels // num_head_channels
        self.use_checkpoint = use_checkpoint
        self.norm = normalization(channels)
        self.qkv = conv_nd(1, channels, channels * 3, 1)
        self.attention = QKVAttention(self.num_heads) if use_new_attention_order else QKVAttentionLegacy(self.num_heads)
        self.proj_out = zero_module(conv_nd(1, channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return checkpoint(self._forward, (x,), self.use_checkpoint)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        flat = x.reshape(b, c, -1)
        h = self.proj_out(self.attention(self.qkv(self.norm(flat))))
        return (flat + h).reshape(x.shape)


def run_trunk(net: nn.Module, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    """The U-Net pass shared by UNetModel and DGSA: ``net.input_blocks`` (keeping every output as a
    skip), ``net.middle_block``, then ``net.output_blocks`` on the concatenation with the skips in reverse."""
    skips = []
    for block in net.input_blocks:
        h = block(h, emb)
        skips.append(h)
    h = net.middle_block(h, emb)
    for block in net.output_blocks:
        h = block(torch.cat([h, skips.pop()], dim=1), emb)
    return h


class UNetModel(nn.Module):
    """The improved-diffusion UNet with timestep embedding and attention (parameters as in guided-diffusion;
    ``attention_resolutions``: feature-map sizes, DifFace convention; ``num_res_blocks``: an int or one per level)."""

    def __init__(
        self,
        image_size: int,
        in_channels: int,
        model_channels: int,
        out_channels: int,
        num_res_blocks: Union[int, Sequence[int]],
        attention_resolutions: Iterable[int],
        dropout: float = 0,
        channel_mult: Sequence[int] = (1, 2, 4, 8),
        conv_resample: bool = True,
        dims: int = 2,
        num_classes: Optional[int] = None,
        use_checkpoint: bool = False,
        use_fp16: bool = False,
        num_heads: int = 1,
        num_head_channels: int = -1,
        num_heads_upsample: int = -1,
        use_scale_shift_norm: bool = False,
        resblock_updown: bool = False,
        use_new_attention_order: bool = False,
    ):
        super().__init__()
        channel_mult = tuple(channel_mult)
        if isinstance(num_res_blocks, int):
            num_res_blocks = [num_res_blocks] * len(channel_mult)
        num_res_blocks = list(num_res_blocks)
        if len(num_res_blocks) != len(channel_mult):
            raise ValueError(
                f"num_res_blocks {num_res_blocks} needs one count per level of channel_mult {channel_mult}"
            )
        if image_size % 2 ** (len(channel_mult) - 1):
            raise ValueError(
                f"image_size {image_size} not divisible by 2^{len(channel_mult) - 1} (levels of channel_mult)"
            )
        if num_heads_upsample == -1:
            num_heads_upsample = num_heads
        attention_resolutions = set(int(r) for r in attention_resolutions)
        self.image_size = image_size
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.out_channels = out_channels
        self.num_classes = num_classes
        self.use_fp16 = use_fp16
        self.dtype = torch.float32

        time_embed_dim = model_channels * 4
        self.time_embed = nn.Sequential(
            nn.Linear(model_channels, time_embed_dim), nn.SiLU(), nn.Linear(time_embed_dim, time_embed_dim)
        )
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, time_embed_dim)

        def res(ch_in, ch_out, **kw):
            return ResBlock(
                ch_in,
                time_embed_dim,
                dropout,
                out_channels=ch_out,
                dims=dims,
                use_checkpoint=use_checkpoint,
                use_scale_shift_norm=use_scale_shift_norm,
                **kw,
            )

        def attn(ch, heads):
            return AttentionBlock(
                ch,
                num_heads=heads,
                num_head_channels=num_head_channels,
                use_checkpoint=use_checkpoint,
                use_new_attention_order=use_new_attention_order,
            )

        ch = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(conv_nd(dims, in_channels, ch, 3, padding=1))])
        skip_chans = [ch]
        ds = 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks[level]):
                layers = [res(ch, int(mult * model_channels))]
                ch = int(mult * model_channels)
                if image_size // ds in attention_resolutions:
                    layers.append(attn(ch, num_heads))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_chans.append(ch)
            if level != len(channel_mult) - 1:
                down = res(ch, ch, down=True) if resblock_updown else Downsample(ch, conv_resample, dims, ch)
                self.input_blocks.append(TimestepEmbedSequential(down))
                skip_chans.append(ch)
                ds *= 2

        self.middle_block = TimestepEmbedSequential(res(ch, ch), attn(ch, num_heads), res(ch, ch))

        self.output_blocks = nn.ModuleList([])
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks[level] + 1):
                layers = [res(ch + skip_chans.pop(), int(model_channels * mult))]
                ch = int(model_channels * mult)
                if image_size // ds in attention_resolutions:
                    layers.append(attn(ch, num_heads_upsample))
                if level and i == num_res_blocks[level]:
                    layers.append(res(ch, ch, up=True) if resblock_updown else Upsample(ch, conv_resample, dims, ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(
            normalization(ch), nn.SiLU(), zero_module(conv_nd(dims, ch, out_channels, 3, padding=1))
        )

    def _trunk(self) -> Iterable[nn.Module]:
        return (self.input_blocks, self.middle_block, self.output_blocks)

    def convert_to(self, dtype: torch.dtype) -> None:
        """Cast the trunk's convolutions to ``dtype`` (float16 or bfloat16: improved-diffusion mixed
        precision; float32 undoes it). The activations of the trunk then run in ``dtype``."""
        if dtype not in HALF_DTYPES + (torch.float32,):
            raise ValueError(f"UNetModel.convert_to: dtype must be float16, bfloat16 or float32, got {dtype}")
        for part in self._trunk():
            part.apply(partial(cast_convolutions, dtype=dtype))
        self.dtype = dtype

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Predict the diffusion output for ``x`` (N, C, H, W) at ``timesteps`` (N,); ``y``: class labels."""
        if (y is not None) != (self.num_classes is not None):
            raise ValueError("class labels y must be given exactly when the model is class-conditional")
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))
        if y is not None:
            emb = emb + self.label_emb(y)
        h = run_trunk(self, x.type(self.dtype), emb)
        return self.out(h.type(x.dtype))
