"""data/blur.py: Gaussian blur against a direct float64 2-D convolution, sigma* recovery on real faces."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from data.blur import default_sigma_max, gaussian_blur, gaussian_kernel1d, kernel_radius
from data.datasets import load_face
from data.degradation import DegradationConfig, degrade
from data.sigma_star import sigma_star, sigma_star_spatial


@pytest.fixture(scope="module")
def faces64(celeba_faces):
    return np.stack([load_face(p, 64) for p in celeba_faces[:4]])


@pytest.fixture(scope="module")
def faces128(celeba_faces):
    return np.stack([load_face(p, 128) for p in celeba_faces[10:12]])


def _nchw(batch: np.ndarray, dtype=torch.float32) -> torch.Tensor:
    return torch.from_numpy(batch).permute(0, 3, 1, 2).to(dtype)


def _reference_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Direct 2-D convolution (float64) with the sampled kernel, boundary scipy 'mirror' (= torch 'reflect')."""
    r = math.ceil(4 * sigma)
    k = np.exp(-(np.arange(-r, r + 1) ** 2) / (2 * sigma**2))
    k2 = np.outer(k, k)
    k2 /= k2.sum()
    return np.stack([ndimage.convolve(ch, k2, mode="mirror") for ch in img])


def test_kernel_radius_and_normalisation():
    assert kernel_radius(0.0) == 0
    assert kernel_radius(0.1) == 1
    assert kernel_radius(1.0) == 4
    assert kernel_radius(1.3) == 6
    for s in (0.2, 0.7, 2.5, 9.0):
        k = gaussian_kernel1d(s)
        assert k.dtype == torch.float64 and k.numel() == 2 * kernel_radius(s) + 1
        assert kernel_radius(s) >= 3 * s
        assert torch.isclose(k.sum(), torch.tensor(1.0, dtype=torch.float64))
        ref = np.exp(-(np.arange(-kernel_radius(s), kernel_radius(s) + 1) ** 2) / (2 * s * s))
        np.testing.assert_allclose(k.numpy(), ref / ref.sum(), rtol=1e-12)
    with pytest.raises(ValueError):
        kernel_radius(-1.0)


@settings(max_examples=15, deadline=None)
@given(sigma=st.floats(0.05, 12.0), crop=st.integers(6, 30), seed=st.integers(0, 3))
def test_blur_matches_direct_convolution(faces64, sigma, crop, seed):
    # crops as small as 6 px make the radius exceed the image: repeated reflection must match scipy
    img = faces64[seed, :crop, : crop + 3].transpose(2, 0, 1).astype(np.float64)
    out = gaussian_blur(torch.from_numpy(img)[None], sigma)[0].numpy()
    np.testing.assert_allclose(out, _reference_blur(img, sigma), atol=1e-12)


def test_blur_sigma_zero_dtype_and_batch(faces64):
    x = _nchw(faces64)
    assert torch.equal(gaussian_blur(x, 0.0), x)
    sigmas = torch.tensor([0.0, 0.8, 3.7, 1.9], dtype=torch.float64)
    batch = gaussian_blur(x.double(), sigmas)
    for i, s in enumerate(sigmas.tolist()):
        single = gaussian_blur(x[i : i + 1].double(), s)
        assert torch.allclose(batch[i : i + 1], single, atol=1e-13, rtol=0)
    assert torch.equal(batch[0], x[0].double())
    assert gaussian_blur(x, 1.5).dtype == torch.float32


@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_sigma_star_recovers_pure_blur(faces64, faces128, data):
    for faces in (faces64, faces128):
        res = faces.shape[1]
        top = default_sigma_max(res)
        sig = data.draw(st.lists(st.floats(0.4, top - 0.1), min_size=len(faces), max_size=len(faces)))
        hq = _nchw(faces)
        lq = gaussian_blur(hq, torch.tensor(sig, dtype=torch.float64))
        est = sigma_star(hq, lq)
        assert est.shape == (len(faces),) and est.dtype == torch.float32
        assert torch.all((est - torch.tensor(sig)).abs() < 0.1), (sig, est)


def test_sigma_star_identity_and_bad_input(faces64):
    hq = _nchw(faces64)
    assert torch.all(sigma_star_spatial(hq, hq) == 0)
    # below ~0.3 px the sampled kernel is the identity: every such sigma fits exactly, rounding picks one
    assert torch.all(sigma_star(hq, hq) < 0.3)
    for estimate in (sigma_star, sigma_star_spatial):
        with pytest.raises(ValueError):
            estimate(hq, hq[:, :, :32])


def _pipeline_config(blur_512: float, scale: float) -> DegradationConfig:
    return DegradationConfig(
        kernel_list=["iso"],
        kernel_prob=[1.0],
        blur_sigma=[blur_512, blur_512],
        downsample_range=[scale, scale],
        noise_range=[0.0, 0.0],
        jpeg_range=[100, 100],
        gray_prob=0.0,
    )


def _sigma_star_of_degradation(face: np.ndarray, cfg: DegradationConfig) -> float:
    lq, _ = degrade(face, np.random.default_rng(0), cfg)
    return sigma_star(_nchw(face[None]), _nchw(lq[None])).item()


@pytest.mark.parametrize("index", [0, 2])
def test_sigma_star_monotone_in_blur_and_downsampling(faces128, faces64, index):
    face = faces128[index % len(faces128)] if index else faces64[0]
    blur = [_sigma_star_of_degradation(face, _pipeline_config(s, 1.0)) for s in (2.0, 4.0, 8.0, 12.0, 15.0)]
    assert all(b > a for a, b in zip(blur, blur[1:])), blur
    down = [_sigma_star_of_degradation(face, _pipeline_config(0.1, s)) for s in (1.5, 2.0, 3.0, 4.0, 6.0)]
    assert all(b > a for a, b in zip(down, down[1:])), down
