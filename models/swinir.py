"""SwinIR (Liang et al. 2021) with pixel-unshuffle input, DifFace's restorer RM0 (docs/method.md section 3).

    F0 = Conv3x3(x);  FD = Conv3x3(RSTB_K(... RSTB_1(F0))) + F0;  y = Upsampler(FD)

The layout of the public ``swinir_restoration512_L1.pth``; ``forward`` works in [0, 1], :meth:`SwinIR.restore`
in [-1, 1]. ``cond_channels`` adds constant maps of ``cond`` (TM / RM); ``global_residual``: y = x + Upsampler(FD),
the identity at initialisation.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as torch_checkpoint
from torch import nn

# Per-channel RGB mean that SwinIR subtracts from 3-channel inputs (DIV2K statistics).
RGB_MEAN = (0.4488, 0.4371, 0.4040)
# Logit added to attention between tokens from different regions of a shifted window (Swin).
SHIFT_MASK_VALUE = -100.0


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): drop the whole residual branch of a sample with prob p."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class Mlp(nn.Module):
    """Transformer feed-forward: fc1 -> GELU -> dropout -> fc2 -> dropout."""

    def __init__(self, dim: int, hidden: int, drop: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * H/ws * W/ws, ws*ws, C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def window_reverse(windows: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nW, ws*ws, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def relative_position_index(ws: int) -> torch.Tensor:
    """(ws*ws, ws*ws) index into the ((2ws-1)^2, heads) bias table for every pair of window tokens."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
    return rel[:, :, 0] * (2 * ws - 1) + rel[:, :, 1]


def shifted_window_mask(h: int, w: int, ws: int, shift: int) -> torch.Tensor:
    """(nW, ws*ws, ws*ws) additive mask of SW-MSA: tokens of different pre-shift regions don't attend."""
    region = torch.zeros(1, h, w, 1)
    bounds = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    for i, (hs, wsl) in enumerate((a, b) for a in bounds for b in bounds):
        region[:, hs, wsl, :] = i
    win = window_partition(region, ws).squeeze(-1)
    diff = win[:, None, :] - win[:, :, None]
    return torch.where(diff != 0, SHIFT_MASK_VALUE, 0.0)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside a window, with a learned relative position bias (Swin eq. 4)."""

    def __init__(
        self,
        dim: int,
        ws: int,
        heads: int,
        qkv_bias: bool,
        qk_scale: Optional[float],
        attn_drop: float,
        proj_drop: float,
    ):
        super().__init__()
        self.heads = heads
        self.scale = qk_scale or (dim // heads) ** -0.5
        self.attn_drop = attn_drop
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, heads))
        self.register_buffer("relative_position_index", relative_position_index(ws), persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        bw, n, c = x.shape
        q, k, v = self.qkv(x).view(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, self.heads).permute(2, 0, 1).unsqueeze(0)  # 1, heads, n, n
        if mask is not None:  # mask: nW, n, n; windows of one image are contiguous in the batch
            bias = (bias + mask[:, None].to(bias.dtype)).repeat(bw // mask.shape[0], 1, 1, 1)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias.to(q.dtype), dropout_p=self.attn_drop if self.training else 0.0, scale=self.scale
        )
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(bw, n, c)))


class SwinTransformerBlock(nn.Module):
    """x + DropPath(W-MSA(LN(x))), then + DropPath(MLP(LN(.))); odd blocks use shifted windows."""

    def __init__(
        self,
        dim: int,
        resolution: Tuple[int, int],
        heads: int,
        ws: int,
        shift: int,
        mlp_ratio: float,
        qkv_bias: bool,
        qk_scale: Optional[float],
        drop: float,
        attn_drop: float,
        drop_path: float,
        norm_layer,
    ):
        super().__init__()
        if min(resolution) <= ws:  # a single window covers the image: no shift (as in Swin)
            ws, shift = min(resolution), 0
        self.ws, self.shift = ws, shift
        self.norm1 = norm_layer(dim)
        self.attn = WindowAttention(dim, ws, heads, qkv_bias, qk_scale, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        self.mask_size = tuple(resolution)
        if shift > 0:
            self.register_buffer("attn_mask", shifted_window_mask(*resolution, ws, shift), persistent=False)

    def _mask(self, size: Tuple[int, int], ref: torch.Tensor) -> Optional[torch.Tensor]:
        if self.shift == 0:
            return None
        if size == self.mask_size:
            return self.attn_mask
        return shifted_window_mask(*size, self.ws, self.shift).to(ref.device)

    def forward(self, x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        h, w = size
        b, _, c = x.shape
        y = self.norm1(x).view(b, h, w, c)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(window_partition(y, self.ws), self._mask(size, x))
        y = window_reverse(y, self.ws, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + self.drop_path(y.reshape(b, h * w, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class BasicLayer(nn.Module):
    """A sequence of Swin blocks with alternating shift (0, ws/2, 0, ...)."""

    def __init__(
        self,
        dim,
        resolution,
        depth,
        heads,
        ws,
        mlp_ratio,
        qkv_bias,
        qk_scale,
        drop,
        attn_drop,
        drop_path: Sequence[float],
        norm_layer,
        use_checkpoint: bool,
    ):
        super().__init__()
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(
                dim,
                resolution,
                heads,
                ws,
                0 if i % 2 == 0 else ws // 2,
                mlp_ratio,
                qkv_bias,
                qk_scale,
                drop,
                attn_drop,
                drop_path[i],
                norm_layer,
            )
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        for blk in self.blocks:
            if self.use_checkpoint and self.training:
                x = torch_checkpoint.checkpoint(blk, x, size, use_reentrant=False)
            else:
                x = blk(x, size)
        return x


def _tokens_to_map(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *size)


def _resi_conv(dim: int, resi_connection: str) -> nn.Module:
    """The convolution closing a residual group: one 3x3 conv, or the light 3-conv bottleneck."""
    if resi_connection == "1conv":
        return nn.Conv2d(dim, dim, 3, 1, 1)
    if resi_connection == "3conv":
        return nn.Sequential(
            nn.Conv2d(dim, dim // 4, 3, 1, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(dim // 4, dim // 4, 1, 1, 0),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(dim // 4, dim, 3, 1, 1),
        )
    raise ValueError(f"resi_connection must be '1conv' or '3conv', got {resi_connection!r}")


class RSTB(nn.Module):
    """Residual Swin Transformer Block: z + Conv(SwinBlocks(z)) on the token map."""

    def __init__(
        self,
        dim,
        resolution,
        depth,
        heads,
        ws,
        mlp_ratio,
        qkv_bias,
        qk_scale,
        drop,
        attn_drop,
        drop_path,
        norm_layer,
        use_checkpoint,
        resi_connection,
    ):
        super().__init__()
        self.residual_group = BasicLayer(
            dim,
            resolution,
            depth,
            heads,
            ws,
            mlp_ratio,
            qkv_bias,
            qk_scale,
            drop,
            attn_drop,
            drop_path,
            norm_layer,
            use_checkpoint,
        )
        self.conv = _resi_conv(dim, resi_connection)

    def forward(self, x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        y = self.conv(_tokens_to_map(self.residual_group(x, size), size))
        return x + y.flatten(2).transpose(1, 2)


class PatchEmbed(nn.Module):
    """Feature map (B, C, H, W) -> tokens (B, HW, C), optionally layer-normalised (patch size 1)."""

    def __init__(self, dim: int, norm_layer):
        super().__init__()
        self.norm = norm_layer(dim) if norm_layer is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.flatten(2).transpose(1, 2))


def _pixelshuffle_upsample(sf: int, num_feat: int) -> nn.Sequential:
    """Conv + PixelShuffle(2) per factor 2 of sf (a power of 2), or one Conv + PixelShuffle(3) for sf=3."""
    if sf == 3:
        return nn.Sequential(nn.Conv2d(num_feat, 9 * num_feat, 3, 1, 1), nn.PixelShuffle(3))
    steps = int(round(math.log2(sf)))
    if sf < 2 or 2**steps != sf:
        raise ValueError(f"SwinIR: 'pixelshuffle' needs sf 3 or a power of 2 >= 2, got {sf}")
    layers = []
    for _ in range(steps):
        layers += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2)]
    return nn.Sequential(*layers)


class SwinIR(nn.Module):
    """SwinIR with optional pixel-unshuffle input (module docstring).

    ``forward(x, cond=None)``: (N, in_chans, H, W) in [0, 1] -> (N, out_chans, H*r, W*r), r = sf / unshuffle_scale
    with ``unshuffle`` else sf, unclamped; any H, W (reflect-padded to the window grid, cropped back).
    ``patch_size`` must be 1."""

    def __init__(
        self,
        img_size: int = 64,
        patch_size: int = 1,
        in_chans: int = 3,
        embed_dim: int = 96,
        depths: Sequence[int] = (6, 6, 6, 6),
        num_heads: Sequence[int] = (6, 6, 6, 6),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: Optional[float] = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        norm_layer=nn.LayerNorm,
        ape: bool = False,
        patch_norm: bool = True,
        use_checkpoint: bool = False,
        sf: int = 4,
        img_range: float = 1.0,
        upsampler: str = "",
        resi_connection: str = "1conv",
        unshuffle: bool = False,
        unshuffle_scale: Optional[int] = None,
        cond_channels: int = 0,
        out_chans: Optional[int] = None,
        global_residual: bool = False,
    ):
        super().__init__()
        out_chans = in_chans if out_chans is None else out_chans
        if patch_size != 1:
            raise ValueError(f"SwinIR: patch_size must be 1, got {patch_size}")
        if len(depths) != len(num_heads):
            raise ValueError(f"SwinIR: depths {list(depths)} and num_heads {list(num_heads)} differ in length")
        if unshuffle and (unshuffle_scale is None or unshuffle_scale != sf or upsampler == ""):
            raise ValueError(
                "SwinIR: unshuffle needs unshuffle_scale == sf (output at input size) and an "
                f"upsampler, got sf={sf}, unshuffle_scale={unshuffle_scale}, upsampler={upsampler!r}"
            )
        if upsampler == "" and (sf != 1 or out_chans != in_chans):
            raise ValueError(
                "SwinIR: upsampler '' (restoration at input size, global residual) needs "
                f"sf=1 and out_chans == in_chans, got sf={sf}, out_chans={out_chans}"
            )
        if global_residual and (upsampler == "" or not unshuffle or sf != unshuffle_scale or out_chans != in_chans):
            raise ValueError(
                "SwinIR: global_residual needs unshuffle with sf == unshuffle_scale (output at input "
                "size), an upsampler and out_chans == in_chans (upsampler '' is always residual), got "
                f"unshuffle={unshuffle}, sf={sf}, unshuffle_scale={unshuffle_scale}, "
                f"upsampler={upsampler!r}, out_chans={out_chans}, in_chans={in_chans}"
            )
        self.global_residual = global_residual
        self.img_range = img_range
        self.upsampler = upsampler
        self.window_size = window_size
        self.unshuffle_scale = unshuffle_scale if unshuffle else 1
        self.out_scale = sf // self.unshuffle_scale  # output size / input size
        self.cond_channels = cond_channels
        self.register_buffer("mean", self._channel_mean(in_chans), persistent=False)
        self.register_buffer("out_mean", self._channel_mean(out_chans), persistent=False)

        first_in = in_chans * self.unshuffle_scale**2 + cond_channels
        conv_first = nn.Conv2d(first_in, embed_dim, 3, 1, 1)
        self.conv_first = nn.Sequential(nn.PixelUnshuffle(sf), conv_first) if unshuffle else conv_first

        resolution = (img_size // patch_size, img_size // patch_size)
        self.patch_embed = PatchEmbed(embed_dim, norm_layer if patch_norm else None)
        self.ape = ape
        if ape:
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, resolution[0] * resolution[1], embed_dim))
            nn.init.trunc_normal_(self.absolute_pos_embed, std=0.02)
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        starts = [sum(depths[:i]) for i in range(len(depths))]
        self.layers = nn.ModuleList(
            RSTB(
                embed_dim,
                resolution,
                d,
                h,
                window_size,
                mlp_ratio,
                qkv_bias,
                qk_scale,
                drop_rate,
                attn_drop_rate,
                dpr[s : s + d],
                norm_layer,
                use_checkpoint,
                resi_connection,
            )
            for d, h, s in zip(depths, num_heads, starts)
        )
        self.norm = norm_layer(embed_dim)
        self.conv_after_body = _resi_conv(embed_dim, resi_connection)
        self._build_reconstruction(embed_dim, out_chans, sf)
        self.apply(self._init_weights)
        if global_residual:  # start at the identity: the last convolution outputs zero
            last = self.upsample[0] if upsampler == "pixelshuffledirect" else self.conv_last
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    @staticmethod
    def _channel_mean(channels: int) -> torch.Tensor:
        """RGB mean for 3-channel images, zero otherwise (as SwinIR / DifFace)."""
        mean = torch.tensor(RGB_MEAN) if channels == 3 else torch.zeros(channels)
        return mean.view(1, channels, 1, 1)

    def _build_reconstruction(self, embed_dim: int, out_chans: int, sf: int) -> None:
        num_feat = 64
        if self.upsampler in ("pixelshuffle", "nearest+conv"):
            self.conv_before_upsample = nn.Sequential(
                nn.Conv2d(embed_dim, num_feat, 3, 1, 1), nn.LeakyReLU(inplace=True)
            )
        if self.upsampler == "pixelshuffle":
            self.upsample = _pixelshuffle_upsample(sf, num_feat)
            self.conv_last = nn.Conv2d(num_feat, out_chans, 3, 1, 1)
        elif self.upsampler == "pixelshuffledirect":
            self.upsample = nn.Sequential(nn.Conv2d(embed_dim, out_chans * sf**2, 3, 1, 1), nn.PixelShuffle(sf))
        elif self.upsampler == "nearest+conv":
            steps = int(round(math.log2(sf)))
            if 2**steps != sf or steps < 1:
                raise ValueError(f"SwinIR: 'nearest+conv' needs sf a power of 2 >= 2, got {sf}")
            self.up_steps = steps
            for i in range(1, steps + 1):
                setattr(self, f"conv_up{i}", nn.Conv2d(num_feat, num_feat, 3, 1, 1))
            self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_last = nn.Conv2d(num_feat, out_chans, 3, 1, 1)
            self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        elif self.upsampler == "":
            self.conv_last = nn.Conv2d(embed_dim, out_chans, 3, 1, 1)
        else:
            raise ValueError(
                "SwinIR: upsampler must be 'pixelshuffle', 'pixelshuffledirect', "
                f"'nearest+conv' or '', got {self.upsampler!r}"
            )

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[2], x.shape[3])
        x = self.patch_embed(x)
        if self.ape:
            x = x + self.absolute_pos_embed
        x = self.pos_drop(x)
        for layer in self.layers:
            x = layer(x, size)
        return _tokens_to_map(self.norm(x), size)

    def _shallow(self, x: torch.Tensor, cond: Optional[torch.Tensor]) -> torch.Tensor:
        """First convolution, on the pixel-unshuffled input with the constant conditioning maps."""
        conv = self.conv_first
        if isinstance(conv, nn.Sequential):  # (PixelUnshuffle, Conv2d)
            x, conv = conv[0](x), conv[1]
        if self.cond_channels:
            if cond is None or cond.shape != (x.shape[0], self.cond_channels):
                got = None if cond is None else tuple(cond.shape)
                raise ValueError(f"SwinIR: cond must have shape ({x.shape[0]}, {self.cond_channels}), got {got}")
            maps = cond.to(x.dtype)[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
            x = torch.cat([x, maps], dim=1)
        elif cond is not None:
            raise ValueError("SwinIR: cond given but the model was built with cond_channels=0")
        return conv(x)

    def _reconstruct(self, feat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Output in the normalised range; x (the normalised input) is added for ``upsampler ''`` and
        ``global_residual``."""
        if self.upsampler == "":
            return x + self.conv_last(feat)
        if self.upsampler == "pixelshuffle":
            y = self.conv_last(self.upsample(self.conv_before_upsample(feat)))
        elif self.upsampler == "pixelshuffledirect":
            y = self.upsample(feat)
        else:  # nearest+conv
            y = self.conv_before_upsample(feat)
            for i in range(1, self.up_steps + 1):
                y = self.lrelu(getattr(self, f"conv_up{i}")(F.interpolate(y, scale_factor=2, mode="nearest")))
            y = self.conv_last(self.lrelu(self.conv_hr(y)))
        return x + y if self.global_residual else y

    def forward(self, x: torch.Tensor, cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(N, in_chans, H, W) in [0, 1] (+ cond (N, cond_channels)) -> (N, out_chans, rH, rW) ~[0, 1]."""
        h, w = x.shape[2:]
        multiple = self.window_size * self.unshuffle_scale
        pad_h, pad_w = (-h) % multiple, (-w) % multiple
        if pad_h or pad_w:
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        x = (x - self.mean.to(x.dtype)) * self.img_range
        feat = self._shallow(x, cond)
        feat = self.conv_after_body(self.forward_features(feat)) + feat
        out = self._reconstruct(feat, x) / self.img_range + self.out_mean.to(x.dtype)
        return out[:, :, : h * self.out_scale, : w * self.out_scale]

    def restore(self, x: torch.Tensor, cond: Optional[torch.Tensor] = None, clamp: bool = True) -> torch.Tensor:
        """x in [-1, 1] -> 2 forward((x + 1) / 2) - 1, clipped to [-1, 1] when ``clamp`` (pass False in training)."""
        out = self.forward((x + 1.0) * 0.5, cond) * 2.0 - 1.0
        return out.clamp(-1.0, 1.0) if clamp else out
