"""data/degradation.py: reproducibility, ranges over many draws, kernel vs BasicSR, config handling."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from basicsr.data.degradations import bivariate_Gaussian

import utils.basicsr_compat  # noqa: F401  (before basicsr)
from data.datasets import load_face
from data.degradation import DegradationConfig, degrade, gaussian_kernel2d, load_degradation_config, severity_config
from utils.config import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "degradation"


@pytest.fixture(scope="module")
def face32(celeba_faces):
    return load_face(celeba_faces[3], 32)


@pytest.fixture(scope="module")
def cfg():
    return load_degradation_config(CONFIGS / "difface_blind.yaml")


def test_yaml_configs_load(cfg):
    assert cfg.blur_sigma == [0.1, 15.0] and cfg.downsample_range == [0.8, 32.0]
    assert cfg.noise_range == [0.0, 20.0] and cfg.jpeg_range == [30.0, 100.0]
    assert cfg.kernel_list == ["iso", "aniso"] and cfg.blur_kernel_size == 41
    demo = load_degradation_config(CONFIGS / "demo64.yaml")
    assert demo.scale_range(64) == (0.8, 8.0)


def test_resolution_scaling(cfg):
    assert cfg.kernel_size(512) == 41 and cfg.kernel_size(64) == 5 and cfg.kernel_size(128) == 11
    assert cfg.sigma_range(512) == (0.1, 15.0)
    assert np.allclose(cfg.sigma_range(64), (0.0125, 1.875))
    assert cfg.scale_range(512) == (0.8, 32.0) and cfg.scale_range(64) == (0.8, 16.0)


def test_bad_configs(tmp_path):
    bad_key = tmp_path / "a.yaml"
    bad_key.write_text("blur_sigmaa: [1, 2]\n")
    with pytest.raises(ConfigError, match="blur_sigmaa"):
        load_degradation_config(bad_key)
    bad_range = tmp_path / "b.yaml"
    bad_range.write_text("noise_range: [5, 1]\n")
    with pytest.raises(ConfigError, match="noise_range"):
        load_degradation_config(bad_range)
    with pytest.raises(ConfigError, match="kernel_prob"):
        load_degradation_config({"kernel_prob": [0.3, 0.3]})


@pytest.mark.parametrize("sx,sy,theta", [(1.0, 1.0, 0.0), (2.5, 0.7, 0.6), (0.3, 4.0, -2.9)])
def test_kernel_matches_basicsr(sx, sy, theta):
    ours = gaussian_kernel2d(21, sx, sy, theta)
    ref = bivariate_Gaussian(21, sx, sy, theta, isotropic=False)
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_reproducible_from_seed(face32, cfg):
    a, pa = degrade(face32, np.random.default_rng(123), cfg)
    b, pb = degrade(face32, np.random.default_rng(123), cfg)
    c, pc = degrade(face32, np.random.default_rng(124), cfg)
    assert np.array_equal(a, b) and pa == pb
    assert not np.array_equal(a, c) and pa != pc


def test_ranges_over_many_draws(face32, cfg):
    cfg = DegradationConfig(**{**cfg.to_dict(), "gray_prob": 0.3})
    rng = np.random.default_rng(7)
    res = 32
    s_lo, s_hi = cfg.sigma_range(res)
    d_lo, d_hi = cfg.scale_range(res)
    kinds, grays = set(), 0
    for _ in range(200):
        lq, p = degrade(face32, rng, cfg)
        assert lq.shape == face32.shape and lq.dtype == np.float32
        assert lq.min() >= 0.0 and lq.max() <= 1.0
        assert s_lo <= p["sigma_x"] <= s_hi and s_lo <= p["sigma_y"] <= s_hi
        assert math.isclose(p["sigma_x_512"], p["sigma_x"] * 512 / res)
        assert -math.pi <= p["theta"] <= math.pi
        if p["kernel"] == "iso":
            assert p["sigma_x"] == p["sigma_y"] and p["theta"] == 0.0
        assert d_lo <= p["scale"] <= d_hi and min(p["lq_size"]) >= cfg.min_lq_size
        assert p["lq_size"] == [int(res // p["scale"])] * 2
        assert 0.0 <= p["noise"] <= 20.0 and 30 <= p["jpeg_quality"] <= 100
        kinds.add(p["kernel"])
        if p["gray"]:
            grays += 1
            assert np.array_equal(lq[..., 0], lq[..., 1]) and np.array_equal(lq[..., 1], lq[..., 2])
    assert kinds == {"iso", "aniso"}
    assert 30 <= grays <= 90  # Binomial(200, 0.3): mean 60, sd 6.5


def test_mild_degradation_is_close_to_identity(face32):
    cfg = DegradationConfig(
        kernel_list=["iso"],
        kernel_prob=[1.0],
        blur_sigma=[0.1, 0.1],
        downsample_range=[1.0, 1.0],
        noise_range=[0.0, 0.0],
        jpeg_range=[100, 100],
        gray_prob=0.0,
    )
    lq, _ = degrade(face32, np.random.default_rng(0), cfg)
    # remaining error: 8-bit quantisation and JPEG's 4:2:0 chroma subsampling (OpenCV default, even at q=100)
    assert np.abs(lq - face32).mean() < 4.0 / 255


def test_severity_thirds_partition_ranges(cfg):
    parts = [severity_config(cfg, 64, k) for k in range(3)]
    assert parts[0].blur_sigma[0] == 0.1 and math.isclose(parts[2].blur_sigma[1], 15.0)
    for lo, hi in zip(parts, parts[1:]):
        assert math.isclose(lo.blur_sigma[1], hi.blur_sigma[0])
        assert math.isclose(lo.downsample_range[1], hi.downsample_range[0])
        assert math.isclose(lo.noise_range[1], hi.noise_range[0])
        assert math.isclose(lo.jpeg_range[0], hi.jpeg_range[1])  # mild = high quality
    assert math.isclose(parts[2].downsample_range[1], 16.0) and parts[0].jpeg_range[1] == 100
    with pytest.raises(ValueError):
        severity_config(cfg, 64, 3)
