"""SwinIR (models/swinir.py): public DifFace layout, window attention against brute force, shapes."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from models.swinir import SwinIR, WindowAttention, relative_position_index, shifted_window_mask
from utils.checkpoint import load_checkpoint
from utils.config import instantiate, load_config

ROOT = Path(__file__).resolve().parents[1]
REBUILT = ("attn_mask", "relative_position_index")
SMALL = dict(
    img_size=16,
    in_chans=3,
    embed_dim=16,
    depths=[2, 2],
    num_heads=[2, 4],
    window_size=4,
    mlp_ratio=2,
    sf=4,
    upsampler="nearest+conv",
    unshuffle=True,
    unshuffle_scale=4,
)


@pytest.fixture(scope="module")
def spec(checkpoint_specs_dir):
    return json.loads((checkpoint_specs_dir / "difface_swinir_restoration512.json").read_text())


@pytest.fixture(scope="module")
def full_model():
    cfg = load_config(ROOT / "configs/sample/dynfacerestore_ffhq512.yaml")
    return instantiate(cfg.restorer).eval()


def small(**kw):
    torch.manual_seed(0)
    return SwinIR(**{**SMALL, **kw}).eval()


def test_full_layout_matches_public_checkpoint(spec, full_model):
    persistent = {k: list(v.shape) for k, v in full_model.state_dict().items()}
    expected = {k: v for k, v in spec.items() if not k.endswith(REBUILT)}
    assert persistent == expected
    buffers = {k: list(v.shape) for k, v in full_model.named_buffers() if k.endswith(REBUILT)}
    assert buffers == {k: v for k, v in spec.items() if k.endswith(REBUILT)}
    assert sum(p.numel() for p in full_model.parameters()) == sum(torch.Size(v).numel() for v in expected.values())


def test_full_model_loads_the_public_layout_with_or_without_buffers(tmp_path, spec, full_model):
    gen = torch.Generator().manual_seed(1)
    state = {k: torch.randn(v, generator=gen) for k, v in spec.items()}
    path = tmp_path / "swinir_restoration512_L1.pth"
    torch.save(state, path)
    for source in (path, {k: v for k, v in state.items() if not k.endswith(REBUILT)}):
        with torch.no_grad():
            for p in full_model.parameters():
                p.zero_()
        load_checkpoint(full_model, source)
        for k, v in full_model.state_dict().items():
            assert torch.equal(v, state[k]), k
    # the rebuilt buffers keep their own (correct) values, never the file's
    idx = full_model.layers[0].residual_group.blocks[0].attn.relative_position_index
    assert torch.equal(idx, relative_position_index(8))


@pytest.mark.parametrize("ws", [2, 3, 4, 8])
def test_relative_position_index_brute_force(ws):
    tokens = [(i, j) for i in range(ws) for j in range(ws)]
    table = {}
    idx = relative_position_index(ws)
    for a, (ia, ja) in enumerate(tokens):
        for b, (ib, jb) in enumerate(tokens):
            offset = (ia - ib, ja - jb)
            table.setdefault(offset, idx[a, b].item())
            assert table[offset] == idx[a, b].item()  # same offset -> same bias entry
    assert sorted(table.values()) == list(range((2 * ws - 1) ** 2))  # a bijection onto the table


@pytest.mark.parametrize("h,w,ws", [(8, 8, 4), (8, 12, 4), (12, 6, 3)])
def test_shifted_window_mask_brute_force(h, w, ws):
    shift = ws // 2
    mask = shifted_window_mask(h, w, ws, shift)

    # pixel (r, c) of the rolled image came from ((r + shift) % h, (c + shift) % w); two tokens of a
    # window may attend iff neither, or both, of their source rows/cols wrapped around the border
    def region(r, c):
        return (r + shift >= h, c + shift >= w)

    nwin_w = w // ws
    for win in range(mask.shape[0]):
        r0, c0 = (win // nwin_w) * ws, (win % nwin_w) * ws
        pix = [(r0 + i, c0 + j) for i in range(ws) for j in range(ws)]
        for a, pa in enumerate(pix):
            for b, pb in enumerate(pix):
                want = 0.0 if region(*pa) == region(*pb) else -100.0
                assert mask[win, a, b].item() == want


def test_window_attention_against_naive_float64():
    torch.manual_seed(0)
    attn = (
        WindowAttention(dim=12, ws=3, heads=3, qkv_bias=True, qk_scale=None, attn_drop=0.0, proj_drop=0.0)
        .double()
        .eval()
    )
    torch.nn.init.normal_(attn.relative_position_bias_table)
    x = torch.randn(4, 9, 12, dtype=torch.float64)
    mask = torch.where(torch.rand(2, 9, 9) > 0.7, -100.0, 0.0).double()
    got = attn(x, mask)
    q, k, v = attn.qkv(x).chunk(3, dim=-1)
    outs = []
    for n in range(4):
        heads = []
        for h in range(3):
            sl = slice(4 * h, 4 * h + 4)
            logits = q[n, :, sl] @ k[n, :, sl].T / 2.0  # head dim 4 -> scale 1/2
            for a in range(9):
                for b in range(9):
                    logits[a, b] += (
                        attn.relative_position_bias_table[relative_position_index(3)[a, b], h] + mask[n % 2, a, b]
                    )
            heads.append(torch.softmax(logits, -1) @ v[n, :, sl])
        outs.append(torch.cat(heads, -1))
    want = attn.proj(torch.stack(outs))
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_forward_shapes_unshuffle_and_padding():
    model = small()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 64, 64)).shape == (2, 3, 64, 64)
        assert model(torch.rand(1, 3, 32, 48)).shape == (1, 3, 32, 48)
        x = torch.rand(1, 3, 50, 70)  # not a multiple of unshuffle_scale * window_size = 16
        out = model(x)
        assert out.shape == (1, 3, 50, 70)
        padded = F.pad(x, (0, 10, 0, 14), mode="reflect")
        torch.testing.assert_close(out, model(padded)[:, :, :50, :70])


def test_forward_shapes_without_unshuffle():
    torch.manual_seed(0)
    sr = SwinIR(
        img_size=8, embed_dim=8, depths=[2], num_heads=[2], window_size=4, sf=2, upsampler="pixelshuffle"
    ).eval()
    den = SwinIR(img_size=8, embed_dim=8, depths=[2], num_heads=[2], window_size=4, sf=1, upsampler="").eval()
    with torch.no_grad():
        assert sr(torch.rand(1, 3, 8, 12)).shape == (1, 3, 16, 24)
        assert den(torch.rand(1, 3, 10, 6)).shape == (1, 3, 10, 6)


def test_restore_converts_between_minus1_1_and_0_1():
    model = small()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        model.conv_last.bias.copy_(torch.tensor([-1.0, 0.0, 1.0]))  # outputs outside [0, 1] too
        ref = model((x + 1) / 2) * 2 - 1
        assert ref.abs().max() > 1  # so that clamping is exercised
        torch.testing.assert_close(model.restore(x, clamp=False), ref)
        torch.testing.assert_close(model.restore(x), ref.clamp(-1, 1))


def test_conditioning_channels():
    model = small(cond_channels=2)
    assert model.conv_first[1].in_channels == 3 * 16 + 2
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        a = model(x, torch.tensor([[0.1, 0.5], [0.1, 0.5]]))
        b = model(x, torch.tensor([[0.1, 0.5], [0.9, 0.5]]))
        torch.testing.assert_close(a[0], b[0])  # samples are independent
        assert (a[1] - b[1]).abs().max() > 1e-6  # the condition is used
    with pytest.raises(ValueError, match="cond must have shape"):
        model(x)
    with pytest.raises(ValueError, match="cond_channels=0"):
        small()(x, torch.zeros(2, 1))


def test_out_chans_and_invalid_settings():
    model = small(in_chans=6, out_chans=3)
    with torch.no_grad():
        assert model(torch.rand(1, 6, 32, 32)).shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="unshuffle_scale == sf"):
        small(unshuffle_scale=2)
    with pytest.raises(ValueError, match="patch_size"):
        small(patch_size=2)


def test_training_step_reaches_every_parameter():
    model = small(use_checkpoint=True, drop_path_rate=0.1, cond_channels=1).train()
    out = model.restore(torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 1), clamp=False)
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("upsampler", ["nearest+conv", "pixelshuffle", "pixelshuffledirect"])
def test_global_residual_is_the_identity_at_init_and_input_plus_the_plain_output(upsampler):
    """y = x + (plain SwinIR(x) - RGB mean) with the same weights; the zero last layer makes it y = x."""
    resid = small(upsampler=upsampler, global_residual=True, img_range=2.0)
    x = torch.rand(2, 3, 50, 70)  # padded inside
    with torch.no_grad():
        torch.testing.assert_close(resid(x), x, rtol=0, atol=1e-6)
        for p in resid.parameters():  # leave the identity: every weight random, the last layer too
            p.add_(torch.randn_like(p) * 0.05)
        plain = small(upsampler=upsampler, img_range=2.0)
        plain.load_state_dict(resid.state_dict())  # same layout, so the same checkpoints load
        want = x.double() + plain(x).double() - plain.out_mean.double()
        torch.testing.assert_close(resid(x).double(), want, rtol=0, atol=1e-5)
        assert (resid(x) - x).abs().max() > 1e-3


def test_global_residual_invalid_settings():
    with pytest.raises(ValueError, match="global_residual"):
        SwinIR(
            img_size=8, embed_dim=8, depths=[2], num_heads=[2], window_size=4, sf=1, upsampler="", global_residual=True
        )
    with pytest.raises(ValueError, match="global_residual"):
        SwinIR(
            img_size=8,
            embed_dim=8,
            depths=[2],
            num_heads=[2],
            window_size=4,
            sf=2,
            upsampler="pixelshuffle",
            global_residual=True,
        )
    with pytest.raises(ValueError, match="global_residual"):
        small(in_chans=6, out_chans=3, global_residual=True)
