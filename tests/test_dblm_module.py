"""DBLM networks, DBLM chaining/floor, training-side sampling and configs (in-process, CPU, tiny)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from DiffBIR.dblm import DBLM
from DiffBIR.sde import SigmaEstimator
from DiffBIR.transform import RefinementModel, TransformModel
from models.swinir import SwinIR
from trainers.base import load_training_config
from trainers.transform import TrainerRM, batch_psnr
from utils.checkpoint import CheckpointError
from utils.config import ConfigError
from utils.distributed import DistInfo, ShardedInfiniteSampler

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "train" / "tiny"
SWIN = dict(
    img_size=8,
    patch_size=1,
    embed_dim=8,
    depths=[1],
    num_heads=[2],
    window_size=4,
    mlp_ratio=2,
    sf=2,
    img_range=1.0,
    upsampler="nearest+conv",
    resi_connection="1conv",
    unshuffle=True,
    unshuffle_scale=2,
)


def tiny_tm(**kw):
    torch.manual_seed(0)
    return TransformModel(swinir=SWIN, **kw)


# ---------------------------------------------------------------------------------------------- SDE


def test_sde_positive_log_consistent_and_init():
    torch.manual_seed(0)
    net = SigmaEstimator(channels=[4, 8], blocks_per_stage=1, log_sigma_init=math.log(2.5))
    y = torch.rand(3, 3, 16, 16) * 2 - 1
    sigma, log_sigma = net(y), net(y, log=True)
    assert sigma.shape == (3,) and (sigma > 0).all()
    torch.testing.assert_close(sigma.log(), log_sigma)
    # zero-initialised output layer: the initial prediction is exactly the configured one
    torch.testing.assert_close(sigma, torch.full((3,), 2.5))


# ---------------------------------------------------------------------------------------------- TM / RM


def test_condition_is_sigma_512_normalised():
    tm = tiny_tm(sigma_scale_512=16.0)
    for h, sigma in ((16, 0.5), (32, 1.0), (64, 2.0)):  # the same sigma_512 = 16 at every size
        c = tm.condition(sigma, torch.zeros(2, 3, h, h))
        torch.testing.assert_close(c, torch.ones(2, 1))
    c = tm.condition(torch.tensor([1.0, 3.0]), torch.zeros(2, 3, 32, 32))
    torch.testing.assert_close(c, torch.tensor([[1.0], [3.0]]))


def test_residual_form_is_base_plus_change():
    tm = tiny_tm()
    rm = RefinementModel(swinir=SWIN)
    for net in (tm, rm):  # a backbone whose last conv outputs 0 predicts "no change"
        torch.nn.init.zeros_(net.backbone.conv_last.weight)
        torch.nn.init.zeros_(net.backbone.conv_last.bias)
    y, yb = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(tm(y, 1.0), y)
    torch.testing.assert_close(rm(y, yb, 0.5), yb)
    plain = TransformModel(swinir=SWIN, residual=False)
    torch.nn.init.zeros_(plain.backbone.conv_last.weight)
    torch.nn.init.zeros_(plain.backbone.conv_last.bias)
    mean = plain.backbone.out_mean  # SwinIR adds its RGB mean: output 2 * mean - 1 everywhere
    torch.testing.assert_close(plain(y, 1.0), (2 * mean - 1).expand_as(y))


def test_tm_rm_shapes_and_sigma_conditioning():
    tm, rm = tiny_tm(), RefinementModel(swinir=SWIN)
    y = torch.rand(2, 3, 16, 16) * 2 - 1
    out1, out2 = tm(y, 0.5), tm(y, torch.tensor([3.0, 3.0]))
    assert out1.shape == y.shape and not torch.allclose(out1, out2)
    assert rm(y, out1, torch.tensor([0.2, 0.3])).shape == y.shape
    with pytest.raises(ValueError, match="one sigma per image"):
        tm(y, torch.ones(3))
    with pytest.raises(ValueError, match="set by the wrapper"):
        TransformModel(swinir=dict(SWIN, in_chans=4))


def tiny_restorer(seed: int = 1):
    """A one-image global-residual SwinIR of SWIN's size (the shape of RM0), with a non-zero last conv."""
    torch.manual_seed(seed)
    net = SwinIR(in_chans=3, global_residual=True, **SWIN)
    torch.nn.init.normal_(net.conv_last.weight, std=0.05)
    torch.nn.init.normal_(net.conv_last.bias, std=0.05)
    return net.eval()


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), sigma=st.floats(0.0, 4.0))
def test_warm_started_tm_is_the_restorer(seed, sigma):
    """TM(y, sigma) = RM0(y) (SwinIR.restore without clamping) for every sigma after warm_start."""
    restorer = tiny_restorer(seed)
    tm = tiny_tm().eval()
    tm.warm_start(restorer.state_dict(), image=0)
    y = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(tm(y, sigma), restorer.restore(y, clamp=False), rtol=0, atol=1e-5)


def test_warm_started_rm_reads_the_chosen_image_with_the_mean_folded_into_the_bias():
    """RM's first convolution equals the restorer's on image 1 (y_blur): the same features, away from the
    zero-padded border, although RM (6 channels) does not subtract SwinIR's RGB mean and RM0 does."""
    restorer = tiny_restorer()
    rm = RefinementModel(swinir=SWIN)
    rm.warm_start(restorer.state_dict(), image=1)
    y, y_blur = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        source = restorer._shallow((y_blur + 1) / 2 - restorer.mean, None)
        ours = rm.backbone._shallow((torch.cat([y, y_blur], 1) + 1) / 2 - rm.backbone.mean, rm.condition(0.7, y))
    torch.testing.assert_close(ours[..., 1:-1, 1:-1], source[..., 1:-1, 1:-1], rtol=0, atol=1e-5)
    own, src = rm.backbone.state_dict(), restorer.state_dict()
    assert all(torch.equal(own[k], src[k]) for k in src if not k.startswith("conv_first"))


def test_warm_start_errors_name_the_problem():
    restorer = tiny_restorer()
    with pytest.raises(ValueError, match="image must be in"):
        tiny_tm().warm_start(restorer.state_dict(), image=1)
    wider = SwinIR(in_chans=3, global_residual=True, **dict(SWIN, embed_dim=16)).state_dict()
    with pytest.raises(ValueError, match="conv_first.1.weight must have shape"):
        tiny_tm().warm_start(wider, image=0)
    deeper = SwinIR(in_chans=3, global_residual=True, **dict(SWIN, depths=[2], num_heads=[2])).state_dict()
    with pytest.raises(CheckpointError, match="unexpected key"):
        tiny_tm().warm_start(deeper, image=0)


# ---------------------------------------------------------------------------------------------- DBLM


class StubSDE(torch.nn.Module):
    def __init__(self, values):
        super().__init__()
        self.values = torch.as_tensor(values, dtype=torch.float32)

    def forward(self, y):
        return self.values


class StubTM(torch.nn.Module):
    """Returns y * 0 + sigma / 100 (a known function of sigma)."""

    def forward(self, y, sigma):
        return torch.zeros_like(y) + sigma[:, None, None, None] / 100


class StubRM(torch.nn.Module):
    """Returns y_blur / 2 + sigma' / 100 and counts the images it is evaluated on."""

    def __init__(self):
        super().__init__()
        self.seen = 0

    def forward(self, y, y_blur, sigma):
        self.seen += y.shape[0]
        return y_blur / 2 + sigma[:, None, None, None] / 100


def test_dblm_chain_and_floor_reference():
    sigma_hat = [4.0, 1.0, 0.05]  # at H = 64 the floor 0.5 (512 units) is 0.0625 px
    rm = StubRM()
    dblm = DBLM(StubSDE(sigma_hat), StubTM(), rm, num_levels=3, rho=0.5, sigma_min_512=0.5)
    out = dblm(torch.zeros(3, 3, 64, 64))
    floor = 0.5 * 64 / 512
    ref = np.array([[max(s * 0.5**k, floor) for k in range(3)] for s in sigma_hat])
    np.testing.assert_allclose(out.sigmas.numpy(), ref, rtol=1e-6)
    torch.testing.assert_close(out.sigma_hat, torch.tensor(sigma_hat))
    assert len(out.images) == 3 and all(im.shape == (3, 3, 64, 64) for im in out.images)
    # reference chain in float64: y'_1 = s1/100, y'_k = y'_(k-1)/2 + s_k/100, copied once at the floor
    for i in range(3):
        level = ref[i, 0] / 100
        for k in range(3):
            if k > 0 and ref[i, k] < ref[i, k - 1]:
                level = level / 2 + ref[i, k] / 100
            assert float(out.images[k][i].mean()) == pytest.approx(level, rel=1e-5)
    # RM runs for images 0 and 1 at k = 2, 3; image 2 starts at the floor and is only copied
    assert rm.seen == 2 + 2


@settings(max_examples=20, deadline=None)
@given(
    st.lists(st.floats(0.0, 40.0), min_size=1, max_size=4),
    st.floats(0.05, 0.95),
    st.integers(1, 5),
    st.floats(0.0, 8.0),
)
def test_dblm_sigmas_property(sigma_hat, rho, k, floor_512):
    dblm = DBLM(StubSDE(sigma_hat), StubTM(), StubRM(), num_levels=k, rho=rho, sigma_min_512=floor_512)
    sigmas = dblm.level_sigmas(torch.tensor(sigma_hat), dblm.sigma_floor(torch.zeros(1, 3, 512, 512)))
    assert sigmas.shape == (len(sigma_hat), k)
    assert (sigmas[:, 1:] <= sigmas[:, :-1]).all()
    assert (sigmas >= floor_512 - 1e-6).all()
    above = sigmas[:, 1:] > floor_512 * (1 + 1e-6)
    assert (sigmas[:, 1:][above] < sigmas[:, :-1][above]).all()  # strictly decreasing above the floor
    torch.testing.assert_close(sigmas[:, 0], torch.tensor(sigma_hat).clamp(min=floor_512))


def _dblm_node(tmp_path, sde, tm, rm):
    paths = {}
    for name, net in (("sde", sde), ("tm", tm), ("rm", rm)):
        paths[name] = tmp_path / f"{name}.pth"
        torch.save(net.state_dict(), paths[name])
    return OmegaConf.create(
        {
            "num_levels": 2,
            "rho": 0.75,
            "sigma_min_512": 0.5,
            "sde": {
                "target": "DiffBIR.sde.SigmaEstimator",
                "params": {"channels": [4, 8]},
                "ckpt_path": str(paths["sde"]),
            },
            "tm": {
                "target": "DiffBIR.transform.TransformModel",
                "params": {"swinir": SWIN},
                "ckpt_path": str(paths["tm"]),
            },
            "rm": {
                "target": "DiffBIR.transform.RefinementModel",
                "params": {"swinir": SWIN},
                "ckpt_path": str(paths["rm"]),
            },
        }
    )


def test_from_config_loads_weights_and_reports_errors(tmp_path):
    torch.manual_seed(1)
    sde, tm, rm = SigmaEstimator(channels=[4, 8]), TransformModel(swinir=SWIN), RefinementModel(swinir=SWIN)
    node = _dblm_node(tmp_path, sde, tm, rm)
    dblm = DBLM.from_config(node)
    for a, b in ((dblm.sde, sde), (dblm.tm, tm), (dblm.rm, rm)):
        for k, v in b.state_dict().items():
            torch.testing.assert_close(a.state_dict()[k], v)
    out = dblm(torch.rand(2, 3, 16, 16) * 2 - 1)
    assert out.sigmas.shape == (2, 2) and len(out.images) == 2
    bad = node.copy()
    bad.rm.ckpt_path = str(tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="rm.ckpt_path"):
        DBLM.from_config(bad)
    wrong = node.copy()
    wrong.rm.ckpt_path = str(tmp_path / "tm.pth")  # a TM checkpoint does not fit RM (6 input channels)
    with pytest.raises(CheckpointError, match="does not fit"):
        DBLM.from_config(wrong)
    with pytest.raises(ConfigError, match="levels"):
        DBLM.from_config(OmegaConf.merge(node, {"levels": 3}))


# ---------------------------------------------------------------------------------------------- training pieces


def test_batch_psnr_matches_project_metric():
    from utils.image_io import tensor2img
    from utils.metrics import psnr

    gen = torch.Generator().manual_seed(0)
    a = torch.rand(3, 3, 20, 20, generator=gen) * 2 - 1
    b = (a + 0.1 * torch.randn(3, 3, 20, 20, generator=gen)).clamp(-1.2, 1.2)
    ours = batch_psnr(a, b)
    ref = [psnr(x, y) for x, y in zip(tensor2img(a), tensor2img(b))]
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-9)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.floats(0.0, 10.0), min_size=1, max_size=6),
    st.floats(0.0, 1.0),
    st.floats(0.0, 2.0),
    st.floats(0.0, 4.0),
    st.floats(0.05, 0.95),
)
def test_training_sigma_sampling_bounds(sigma_star, margin, offset_512, min_512, ratio):
    _, cfg = load_training_config(
        TINY / "train_DBLM_RM_tiny.yaml",
        [f"sigma.log_margin={margin}", f"sigma.offset_512={offset_512}", f"sigma.min_512={min_512}"],
    )
    task = TrainerRM(cfg, "unused", dist_info=DistInfo(0, 1, 0, torch.device("cpu")))  # nothing built yet
    s = torch.tensor(sigma_star)
    sigma = task.sample_sigma(s)
    px = 32 / 512
    lo = torch.clamp(s * math.exp(-margin), min=min_512 * px)
    hi = torch.clamp(s * math.exp(margin) + offset_512 * px, min=min_512 * px)
    assert (sigma >= lo * (1 - 1e-5) - 1e-7).all() and (sigma <= hi * (1 + 1e-5) + 1e-7).all()
    target = task.target_sigma(sigma, torch.full_like(sigma, ratio))
    assert (target <= sigma).all() and (target >= min(min_512 * px, float(sigma.min())) - 1e-7).all()
    expected = torch.minimum(sigma, (sigma * ratio).clamp(min=min_512 * px))
    torch.testing.assert_close(target, expected)


def test_epoch_indexed_sampler_resumes_the_same_stream():
    it = iter(ShardedInfiniteSampler(5, 1, 2, seed=3, with_epoch=True))
    stream = [divmod(next(it), 5) for _ in range(9)]  # rank 1 of 2 on 5 items: 2 items per epoch
    assert [e for e, _ in stream] == [0, 0, 1, 1, 2, 2, 3, 3, 4]
    shard = ShardedInfiniteSampler(5, 1, 2, seed=3)
    for epoch in range(4):
        assert [i for e, i in stream if e == epoch] == shard._shard(epoch)
    resumed = iter(ShardedInfiniteSampler(5, 1, 2, seed=3, start=3, with_epoch=True))
    assert [divmod(next(resumed), 5) for _ in range(6)] == stream[3:9]


@pytest.mark.parametrize(
    "name",
    ["train_SDE", "train_DBLM_TM", "train_DBLM_RM", "train_SDE_demo64", "train_DBLM_TM_demo64", "train_DBLM_RM_demo64"],
)
def test_shipped_configs_validate(name):
    path = REPO / "configs" / "train" / f"{name}.yaml"
    demo = "demo64" in name
    _, cfg = load_training_config(path, [] if demo else ["data.train.source=path/to/ffhq512"])
    assert cfg.data.train.resolution == cfg.data.val.resolution == (64 if demo else 512)
    assert (REPO / cfg.degradation).is_file()
    if demo:
        assert cfg.data.train.source.endswith("celeba128_train.txt")
        assert cfg.data.val.source.endswith("celeba128_val.txt")


def test_bad_config_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match="train.bach"):
        load_training_config(TINY / "train_SDE_tiny.yaml", ["train.bach=3"])
    with pytest.raises(ConfigError, match="trainer.target must be one of"):
        load_training_config(TINY / "train_SDE_tiny.yaml", [], ["trainers.transform.TrainerTM"])
    with pytest.raises(ConfigError, match="rho_range"):
        load_training_config(TINY / "train_DBLM_RM_tiny.yaml", ["rho_range=[0.9,0.5]"])
    with pytest.raises(ConfigError, match="sigma.log_margin"):
        load_training_config(TINY / "train_DBLM_TM_tiny.yaml", ["sigma.log_margin=-1"])
    with pytest.raises(ConfigError, match="'data.val.resolution' must equal"):
        load_training_config(TINY / "train_SDE_tiny.yaml", ["data.val.resolution=64"])
