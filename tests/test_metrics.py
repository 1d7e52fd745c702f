"""utils.metrics and utils.tensor_psnr against independent references: a hand-written LPIPS forward, the PSNR
formula, basicsr's PSNR, SSIM bounds."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.image_io import read_image
from utils.metrics import (
    LPIPS_WEIGHTS_ENV,
    METRIC_CONVENTIONS,
    LPIPSMetric,
    compute_metrics,
    csv_header,
    niqe,
    psnr,
    ssim,
)
from utils.tensor_psnr import psnr_tensor

SIZE = 128
# relu outputs that LPIPS v0.1 compares, as indices into torchvision ``features``
RELU_TAPS = {"alex": (1, 4, 7, 9, 11), "vgg": (3, 8, 15, 22, 29)}
NPZ = {"alex": "alexnet_features.npz", "vgg": "vgg16_features.npz"}
SHIFT = (-0.030, -0.088, -0.188)  # LPIPS ScalingLayer constants (Zhang et al. 2018, lpips v0.1)
SCALE = (0.458, 0.448, 0.450)


def _resized(path, size=SIZE):
    return cv2.resize(read_image(path), (size, size), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def pair(faces_hq_dir, real_lq_dir):
    hq = sorted((faces_hq_dir / "celebref512").glob("*/*.png"))[0]
    lq = sorted((real_lq_dir / "wider_like").glob("*.png"))[0]
    return _resized(hq), _resized(lq)


def reference_lpips(net: str, npz_path, a: np.ndarray, b: np.ndarray) -> float:
    """Independent LPIPS v0.1 forward in float64 from the npz (no lpips package code)."""
    features = (torchvision.models.alexnet() if net == "alex" else torchvision.models.vgg16()).features
    data = np.load(npz_path)
    features.load_state_dict(
        {k.removeprefix("features."): torch.from_numpy(data[k]) for k in data.files if k.startswith("features.")},
        strict=True,
    )
    features = features.double().eval()
    shift = torch.tensor(SHIFT, dtype=torch.float64).view(1, 3, 1, 1)
    scale = torch.tensor(SCALE, dtype=torch.float64).view(1, 3, 1, 1)

    def taps(img):
        x = torch.from_numpy(img.astype(np.float64)).permute(2, 0, 1)[None] * 2 - 1
        x = (x - shift) / scale
        outs = []
        for i, layer in enumerate(features):
            x = layer(x)
            if i in RELU_TAPS[net]:
                outs.append(x)
        return outs

    total = 0.0
    with torch.no_grad():
        for k, (fa, fb) in enumerate(zip(taps(a), taps(b))):
            na = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            nb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            head = torch.from_numpy(data[f"lin{k}.model.1.weight"]).double()
            total += float(F.conv2d((na - nb) ** 2, head).mean())
    return total


@pytest.fixture(scope="module")
def alex(lpips_weights_dir):
    return LPIPSMetric("alex", weights_dir=lpips_weights_dir)


def test_lpips_alex_matches_independent_forward(alex, pair, lpips_weights_dir):
    a, b = pair
    expected = reference_lpips("alex", lpips_weights_dir / NPZ["alex"], a, b)
    assert 0.05 < expected < 1.5
    assert alex(a, b) == pytest.approx(expected, abs=1e-5)
    assert alex(a, a) == 0.0


def test_lpips_vgg_matches_independent_forward(pair, lpips_weights_dir):
    a, b = (cv2.resize(x, (64, 64), interpolation=cv2.INTER_AREA) for x in pair)
    metric = LPIPSMetric("vgg", weights_dir=lpips_weights_dir)
    assert metric(a, b) == pytest.approx(reference_lpips("vgg", lpips_weights_dir / NPZ["vgg"], a, b), abs=1e-5)


def test_lpips_tensor_batch_and_env_var(alex, pair, lpips_weights_dir, monkeypatch):
    a, b = pair
    x = torch.from_numpy(np.stack([a, b])).permute(0, 3, 1, 2) * 2 - 1
    y = torch.from_numpy(np.stack([b, b])).permute(0, 3, 1, 2) * 2 - 1
    batch = alex(x, y)
    assert len(batch) == 2 and batch[1] == 0.0
    assert batch[0] == pytest.approx(alex(a, b), abs=1e-6)
    monkeypatch.setenv(LPIPS_WEIGHTS_ENV, str(lpips_weights_dir))
    assert LPIPSMetric("alex")(a, b) == pytest.approx(alex(a, b), abs=1e-7)


def test_lpips_weight_errors(tmp_path, lpips_weights_dir):
    with pytest.raises(FileNotFoundError, match="alexnet_features.npz"):
        LPIPSMetric("alex", weights_dir=tmp_path)
    data = dict(np.load(lpips_weights_dir / NPZ["alex"]))
    np.savez(tmp_path / NPZ["alex"], **{k: v for k, v in data.items() if k != "features.8.bias"})
    with pytest.raises(ValueError, match="features.8.bias"):
        LPIPSMetric("alex", weights_dir=tmp_path)
    data["features.8.bias"] = np.zeros(3, np.float32)
    np.savez(tmp_path / NPZ["alex"], **data)
    with pytest.raises(ValueError, match="shape"):
        LPIPSMetric("alex", weights_dir=tmp_path)
    with pytest.raises(ValueError, match="net must be one of"):
        LPIPSMetric("squeeze", weights_dir=tmp_path)


def test_psnr_matches_formula(pair):
    a, b = pair
    mse = np.mean((np.round(a.astype(np.float64) * 255) - np.round(b.astype(np.float64) * 255)) ** 2)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255.0**2 / mse), rel=1e-12)
    assert psnr(a, a) == math.inf
    with pytest.raises(ValueError, match="sizes differ"):
        psnr(a, a[:-1])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), size=st.integers(1, 9))
def test_psnr_tensor_equals_basicsr_on_the_uint8_grid(seed, size):
    """Per image of a batch, the float PSNR of [-1, 1] tensors is basicsr's uint8 PSNR when the images
    are already uint8 values (so quantising changes nothing)."""
    rng = np.random.default_rng(seed)
    a, b = (rng.integers(0, 256, (3, size, size, 3)) / 255.0 for _ in range(2))
    b[0] = a[0]
    b[0, 0, 0, 0] = 1.0 - a[0, 0, 0, 0]  # a pair that differs in one value only
    got = psnr_tensor(*(torch.from_numpy(x).permute(0, 3, 1, 2) * 2 - 1 for x in (a, b)))
    assert got.dtype == torch.float64 and got.shape == (3,)
    np.testing.assert_allclose(got.numpy(), [psnr(x, y) for x, y in zip(a, b)], rtol=1e-9)


def test_ssim_bounds(pair, rng):
    a, _ = pair
    noisy = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1).astype(np.float32)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert 0.0 < ssim(a, noisy) < 0.99
    assert ssim(a, np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)) < ssim(a, noisy)


def test_niqe_small_is_nan_large_is_finite(pair, faces_hq_dir):
    with pytest.warns(UserWarning, match="at least 2 whole 96x96 blocks"):
        assert math.isnan(niqe(pair[0]))
    big = read_image(sorted((faces_hq_dir / "celebref512").glob("*/*.png"))[0])[160:352, 160:352]
    assert 0.0 < niqe(big) < 100.0


def test_compute_metrics_and_header(alex, pair):
    a, b = pair
    out = compute_metrics(a, b, lpips_metric=alex)
    assert list(out) == ["psnr", "ssim", "lpips_alex"]
    assert out["psnr"] == psnr(a, b) and out["lpips_alex"] == alex(a, b)
    assert csv_header(list(out)) == [METRIC_CONVENTIONS[k] for k in out]
    assert METRIC_CONVENTIONS["psnr"].startswith("psnr_rgb[basicsr")
    with pytest.raises(KeyError, match="not_a_metric"):
        csv_header(["not_a_metric"])
