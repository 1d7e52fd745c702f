"""utils/checkpoint.py: wrappers and prefixes accepted, anything that does not fit refused clearly."""

import os

import pytest
import torch
from torch import nn

from models.swinir import SwinIR
from utils.checkpoint import CheckpointError, extract_state_dict, load_checkpoint, save_checkpoint

SMALL = dict(
    img_size=16,
    embed_dim=16,
    depths=[2],
    num_heads=[2],
    window_size=4,
    mlp_ratio=2,
    sf=4,
    upsampler="nearest+conv",
    unshuffle=True,
    unshuffle_scale=4,
)


def make(seed):
    torch.manual_seed(seed)
    return SwinIR(**SMALL).eval()


@pytest.fixture(scope="module")
def x():
    return torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"state_dict": {"module." + k: v for k, v in sd.items()}},
        lambda sd: sd,
        lambda sd: {"params_ema": sd, "params": {k: torch.zeros_like(v) for k, v in sd.items()}},
        lambda sd: {"model": {k: torch.zeros_like(v) for k, v in sd.items()}, "ema": sd, "step": 7},
        lambda sd: {"model": {"_orig_mod." + k: v for k, v in sd.items()}},
        lambda sd: {"module._orig_mod." + k: v for k, v in sd.items()},
    ],
    ids=["state_dict+module", "plain", "params_ema-first", "ema-before-model", "compiled", "ddp+compiled"],
)
def test_roundtrip_through_file_gives_identical_outputs(tmp_path, x, wrap):
    src, dst = make(0), make(1)
    with torch.no_grad():
        want = src(x)
        assert not torch.allclose(dst(x), want)
    path = save_checkpoint(tmp_path / "ckpt" / "m.pth", wrap(src.state_dict()))
    assert load_checkpoint(dst, path) is dst
    with torch.no_grad():
        assert torch.equal(dst(x), want)
    assert [p.name for p in path.parent.iterdir()] == ["m.pth"]  # atomic save leaves no temp file


def test_explicit_key_selects_raw_weights():
    src = make(0)
    zeros = {k: torch.zeros_like(v) for k, v in src.state_dict().items()}
    dst = load_checkpoint(make(1), {"ema": src.state_dict(), "model": zeros}, key="model")
    assert all(torch.count_nonzero(v) == 0 for v in dst.state_dict().values())
    with pytest.raises(CheckpointError, match="no entry 'opt'.*top-level keys: ema, model"):
        load_checkpoint(make(1), {"ema": src.state_dict(), "model": zeros}, key="opt")


def test_shape_mismatch_refused_with_names_and_shapes(tmp_path):
    state = make(0).state_dict()
    state["conv_last.weight"] = torch.zeros(3, 32, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(make(1), path)
    msg = str(err.value)
    assert str(path) in msg and "SwinIR" in msg and "1 shape mismatch" in msg
    assert "conv_last.weight: model (3, 64, 3, 3) vs file (3, 32, 3, 3)" in msg
    with pytest.raises(CheckpointError, match="shape mismatch"):  # even when not strict
        load_checkpoint(make(1), path, strict=False)


def test_missing_and_unexpected_keys(tmp_path):
    state = make(0).state_dict()
    removed = state.pop("conv_hr.bias")
    path = tmp_path / "missing.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"missing\.pth .*1 missing key\(s\): conv_hr\.bias"):
        load_checkpoint(make(1), path)
    model = load_checkpoint(make(1), path, strict=False)  # allowed, the rest is loaded
    assert torch.equal(model.conv_last.weight, state["conv_last.weight"])
    assert not torch.equal(model.conv_hr.bias, removed)
    state.update({"conv_hr.bias": removed, "extra.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r"1 unexpected key\(s\): extra\.weight"):
        load_checkpoint(make(1), state)


def test_rebuilt_buffers_are_optional_and_ignored():
    src = make(0)
    state = dict(src.state_dict())
    assert not any(k.endswith(("attn_mask", "relative_position_index")) for k in state)
    names = [k for k, _ in src.named_buffers() if k.endswith(("attn_mask", "relative_position_index"))]
    assert names  # the small model has a shifted block
    bogus = {k: torch.full_like(dict(src.named_buffers())[k], 7) for k in names}
    dst = load_checkpoint(make(1), {**state, **bogus})
    for k in names:
        assert torch.equal(dict(dst.named_buffers())[k], dict(src.named_buffers())[k])


def test_missing_file_message_with_hint(tmp_path):
    path = tmp_path / "nope.pth"
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(make(0), path, hint="download it from the DifFace release page")
    assert str(err.value) == f"checkpoint not found: {path}; download it from the DifFace release page"
    with pytest.raises(CheckpointError, match=r"^checkpoint not found: .*nope\.pth$"):
        load_checkpoint(make(0), os.fspath(path))


def test_unreadable_and_wrong_content(tmp_path):
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pth: cannot read checkpoint"):
        load_checkpoint(make(0), bad)
    with pytest.raises(CheckpointError, match="no state dict found.*keys: step, lr"):
        extract_state_dict({"step": 3, "lr": 0.1}, name="x.pth")
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(CheckpointError, match="expected a dict of tensors, found Tensor"):
        load_checkpoint(nn.Linear(1, 1), tmp_path / "tensor.pth")


def test_prefix_not_stripped_unless_on_every_key():
    lin = nn.Sequential()
    lin.add_module("module", nn.Linear(2, 2))
    state = {k: torch.ones_like(v) for k, v in lin.state_dict().items()}  # keys: module.weight, module.bias
    wrapped = {"module." + k: v for k, v in state.items()}
    assert extract_state_dict(wrapped, model_keys=state) == state  # the model's own name kept
    assert list(extract_state_dict(wrapped)) == ["weight", "bias"]  # without a model: all levels
    load_checkpoint(lin, wrapped)
    assert torch.equal(lin.module.weight, torch.ones(2, 2))
