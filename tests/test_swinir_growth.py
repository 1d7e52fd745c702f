"""models/swinir_growth.py: a SwinIR grown by whole residual groups equals the trained one (float64), still
learns in its added groups, refuses states that do not fit, and its CLI writes a loadable checkpoint."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from models.swinir import SwinIR
from models.swinir_growth import grow_depth, main, max_difference
from utils.checkpoint import CheckpointError, load_checkpoint

SMALL = dict(
    img_size=8,
    patch_size=1,
    in_chans=3,
    embed_dim=8,
    window_size=4,
    mlp_ratio=2,
    sf=2,
    img_range=1.0,
    upsampler="nearest+conv",
    resi_connection="1conv",
    unshuffle=True,
    unshuffle_scale=2,
    global_residual=True,
)


def trained(depths, seed=0, **kw):
    """A SwinIR whose every weight is random and non-zero (a stand-in for a trained one)."""
    torch.manual_seed(seed)
    net = SwinIR(**dict(SMALL, depths=depths, num_heads=[2] * len(depths), **kw))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    return net


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), added=st.integers(1, 2), resi=st.sampled_from(["1conv", "3conv"]))
def test_grown_network_equals_the_trained_one(seed, added, resi):
    small = trained([1, 2], seed, resi_connection=resi)
    grown = SwinIR(**dict(SMALL, depths=[1, 2] + [1] * added, num_heads=[2] * (2 + added), resi_connection=resi))
    assert grow_depth(grown, small.state_dict()) == list(range(2, 2 + added))
    assert max_difference(grown, small, 3, 16) == 0.0  # the added groups add exactly zero
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    assert not torch.equal(small(x), x)  # and the network itself is not the identity


def test_added_groups_learn_after_the_first_step():
    small = trained([1])
    grown = SwinIR(**dict(SMALL, depths=[1, 1], num_heads=[2, 2]))
    grown_state_before = {k: v.clone() for k, v in grown.state_dict().items()}
    grow_depth(grown, small.state_dict())
    opt = torch.optim.SGD(grown.parameters(), lr=0.1)
    x, y = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    for _ in range(2):
        opt.zero_grad()
        (grown(x) - y).pow(2).mean().backward()
        opt.step()
    block = grown.layers[1].residual_group.blocks[0].attn.qkv.weight
    assert block.grad is not None and block.grad.abs().max() > 0  # gradient flows once Conv_k left zero
    assert grown.layers[1].conv.weight.abs().max() > 0
    assert not torch.equal(grown_state_before["layers.1.conv.weight"], grown.layers[1].conv.weight)


def test_states_that_do_not_fit_are_refused():
    grown = SwinIR(**dict(SMALL, depths=[1, 1], num_heads=[2, 2]))
    wider = SwinIR(**dict(SMALL, depths=[1], num_heads=[2], embed_dim=16)).state_dict()
    with pytest.raises(CheckpointError, match="differ in name or shape"):
        grow_depth(grown, wider)
    same_depth = trained([1, 1]).state_dict()
    with pytest.raises(CheckpointError, match="adds whole residual groups"):
        grow_depth(grown, same_depth)
    no_first_group = {k: v for k, v in trained([1, 1]).state_dict().items() if not k.startswith("layers.0.")}
    with pytest.raises(CheckpointError, match="adds whole residual groups"):
        grow_depth(grown, no_first_group)
    no_tail = {k: v for k, v in trained([1]).state_dict().items() if not k.startswith("conv_after_body.")}
    with pytest.raises(CheckpointError, match=r"lacks 2 tensor\(s\) outside the added groups"):
        grow_depth(grown, no_tail)


def test_cli_writes_a_checkpoint_the_grown_config_loads(tmp_path):
    small = trained([1])
    torch.save(small.state_dict(), tmp_path / "small.pth")
    cfg = {
        "model": {"target": "models.swinir.SwinIR", "params": dict(SMALL, depths=[1], num_heads=[2])},
        "data": {"train": {"resolution": 16}},
    }
    OmegaConf.save(OmegaConf.create(cfg), tmp_path / "small.yaml")
    main(
        [
            "--config",
            str(tmp_path / "small.yaml"),
            "--init",
            str(tmp_path / "small.pth"),
            "--out",
            str(tmp_path / "grown.pth"),
            "model.params.depths=[1,1]",
            "model.params.num_heads=[2,2]",
        ]
    )
    grown = load_checkpoint(SwinIR(**dict(SMALL, depths=[1, 1], num_heads=[2, 2])), tmp_path / "grown.pth")
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(grown.eval()(x), small.eval()(x), rtol=0, atol=1e-6)


def test_cli_errors_are_one_line_and_write_nothing(tmp_path):
    torch.save(trained([1]).state_dict(), tmp_path / "small.pth")
    cfg = {
        "model": {"target": "models.swinir.SwinIR", "params": dict(SMALL, depths=[1], num_heads=[2])},
        "data": {"train": {"resolution": 16}},
    }
    OmegaConf.save(OmegaConf.create(cfg), tmp_path / "small.yaml")
    args = ["--config", str(tmp_path / "small.yaml"), "--out", str(tmp_path / "grown.pth")]
    with pytest.raises(SystemExit, match=r"^error: .*adds whole residual groups"):  # no depth override
        main([*args, "--init", str(tmp_path / "small.pth")])
    with pytest.raises(SystemExit, match=r"^error: checkpoint not found"):
        main(
            [
                *args,
                "--init",
                str(tmp_path / "missing.pth"),
                "model.params.depths=[1,1]",
                "model.params.num_heads=[2,2]",
            ]
        )
    assert not (tmp_path / "grown.pth").exists()
