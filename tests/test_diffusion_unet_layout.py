"""UNet layout against the public DifFace checkpoint spec, attention placement, fp16 conversion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models.unet import AttentionBlock, UNetModel
from utils.config import instantiate, load_config

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CFG = REPO / "configs" / "sample" / "dynfacerestore_ffhq512.yaml"


@pytest.fixture(scope="module")
def unet512():
    with torch.device("meta"):  # layout only: no memory, no initialisation time
        return instantiate(load_config(SAMPLE_CFG).model)


def tiny(**kw):
    args = dict(
        image_size=16,
        in_channels=3,
        model_channels=32,
        out_channels=6,
        num_res_blocks=[1, 2],
        attention_resolutions=[8],
        channel_mult=(1, 2),
        num_head_channels=16,
        use_scale_shift_norm=True,
    )
    args.update(kw)
    torch.manual_seed(0)
    return UNetModel(**args)


def test_512_layout_matches_public_checkpoint(unet512, checkpoint_specs_dir):
    spec = json.loads((checkpoint_specs_dir / "difface_iddpm_ffhq512_unet.json").read_text())
    ours = {k: list(v.shape) for k, v in unet512.state_dict().items()}
    assert sorted(set(spec) - set(ours)) == [] and sorted(set(ours) - set(spec)) == []
    assert {k: v for k, v in ours.items() if spec[k] != v} == {}
    heads = {m.num_heads for m in unet512.modules() if isinstance(m, AttentionBlock)}
    assert heads == {4, 8}  # 256 and 512 channels with num_head_channels 64


def test_attention_at_feature_resolutions():
    model = tiny(image_size=32, channel_mult=(1, 2, 2), num_res_blocks=1, attention_resolutions=[16])
    with_attn = {
        name.split(".attention")[0].rsplit(".", 1)[0]
        for name, m in model.named_modules()
        if isinstance(m, AttentionBlock)
    }
    # 16 px maps are level 1 (ds 2): input block 3, output blocks 2..3, plus the middle block
    assert with_attn == {"input_blocks.3", "output_blocks.2", "output_blocks.3", "middle_block"}


def test_forward_shapes_and_bad_config():
    model = tiny()
    out = model(torch.randn(2, 3, 16, 16), torch.tensor([3, 700]))
    assert out.shape == (2, 6, 16, 16)
    with pytest.raises(ValueError, match="num_res_blocks"):
        tiny(num_res_blocks=[1, 2, 3])


@pytest.mark.parametrize("dtype, atol", [(torch.float16, 2e-2), (torch.bfloat16, 8e-2)])
def test_half_precision_roundtrip(dtype, atol):
    model = tiny().eval()
    with torch.no_grad():
        for p in model.parameters():  # zero-initialised output convs would hide differences
            p.add_(0.02 * torch.randn_like(p))
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([10, 900])
    ref_sd = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        ref = model(x, t)
        model.convert_to(dtype)
        assert model.dtype == dtype
        assert model.input_blocks[0][0].weight.dtype == dtype
        assert model.middle_block[1].qkv.weight.dtype == dtype
        assert model.time_embed[0].weight.dtype == torch.float32 and model.out[2].weight.dtype == torch.float32
        assert model.input_blocks[1][0].emb_layers[1].weight.dtype == torch.float32
        half = model(x, t)
        assert half.dtype == torch.float32
        torch.testing.assert_close(half, ref, rtol=0, atol=atol)
        model.convert_to(torch.float32)
        assert model.dtype == torch.float32 and all(v.dtype == torch.float32 for v in model.state_dict().values())
        convs = {
            n + "." + p
            for n, m in model.named_modules()
            if isinstance(m, torch.nn.Conv1d | torch.nn.Conv2d) and n.split(".")[0] != "out"
            for p in ("weight", "bias")
        }
        for k, v in model.state_dict().items():  # convs went through the half dtype once, the rest is untouched
            expected = ref_sd[k].to(dtype).float() if k in convs else ref_sd[k]
            torch.testing.assert_close(v, expected, rtol=0, atol=0)
        torch.testing.assert_close(model(x, t), ref, rtol=0, atol=atol)
    with pytest.raises(ValueError, match="float16, bfloat16 or float32"):
        model.convert_to(torch.float64)


def test_checkpointing_gives_same_gradients():
    x, t = torch.randn(1, 3, 16, 16), torch.tensor([500])
    grads = []
    for use_checkpoint in (False, True):
        model = tiny(use_checkpoint=use_checkpoint)
        model(x, t).square().mean().backward()
        grads.append(model.input_blocks[1][0].in_layers[2].weight.grad)
    torch.testing.assert_close(grads[0], grads[1])
