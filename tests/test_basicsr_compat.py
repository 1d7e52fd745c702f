"""utils/basicsr_compat.py makes basicsr 1.4.2 importable; its metrics and kernels are what we expect."""

import math
import sys

import numpy as np
import pytest
import torch
from basicsr.data import degradations
from basicsr.metrics import calculate_psnr, calculate_ssim
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import correlate2d

import utils.basicsr_compat  # noqa: F401  (must precede basicsr)

SSIM_C1 = (0.01 * 255) ** 2  # constants of Wang et al. 2004 for 8-bit images


def test_alias_provides_rgb_to_grayscale():
    alias = sys.modules["torchvision.transforms.functional_tensor"]
    img = torch.rand(3, 4, 5)
    want = 0.2989 * img[0] + 0.587 * img[1] + 0.114 * img[2]  # ITU-R 601-2 luma, torchvision's rounding
    torch.testing.assert_close(alias.rgb_to_grayscale(img)[0], want)
    assert degradations.random_add_gaussian_noise_pt is not None  # the module body ran to the end


def test_install_is_idempotent():
    before = sys.modules["torchvision.transforms.functional_tensor"]
    utils.basicsr_compat.install()
    assert sys.modules["torchvision.transforms.functional_tensor"] is before


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 40))
def test_psnr_closed_form(seed, amplitude):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, size=(16, 24, 3)).astype(np.float64)
    b = np.clip(a + rng.integers(-amplitude, amplitude + 1, size=a.shape), 0, 255)
    mse = np.mean((a - b) ** 2)
    want = float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)
    assert calculate_psnr(a, b, crop_border=0) == pytest.approx(want, rel=1e-9)
    inner = np.mean((a[2:-2, 2:-2] - b[2:-2, 2:-2]) ** 2)
    if inner > 0:
        assert calculate_psnr(a, b, crop_border=2) == pytest.approx(10 * math.log10(255.0**2 / inner), rel=1e-9)


@pytest.mark.parametrize("m1,m2", [(100.0, 100.0), (100.0, 120.0), (30.0, 200.0)])
def test_ssim_closed_form_on_constant_images(m1, m2):
    # zero variances: SSIM = (2 m1 m2 + C1) / (m1^2 + m2^2 + C1) * (C2 / C2)
    a, b = np.full((32, 32, 3), m1), np.full((32, 32, 3), m2)
    want = (2 * m1 * m2 + SSIM_C1) / (m1**2 + m2**2 + SSIM_C1)
    assert calculate_ssim(a, b, crop_border=0) == pytest.approx(want, rel=1e-9)


def reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. 2004 in float64: 11x11 Gaussian (sigma 1.5) statistics over the valid region."""
    r = np.arange(11) - 5.0
    g = np.exp(-(r**2) / (2 * 1.5**2))
    win = np.outer(g, g) / np.outer(g, g).sum()
    c2 = (0.03 * 255) ** 2

    def filt(x):
        return correlate2d(x, win, mode="valid")

    scores = []
    for c in range(a.shape[2]):
        x, y = a[:, :, c], b[:, :, c]
        mx, my = filt(x), filt(y)
        vx, vy, cxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
        ssim_map = (2 * mx * my + SSIM_C1) * (2 * cxy + c2) / ((mx**2 + my**2 + SSIM_C1) * (vx + vy + c2))
        scores.append(ssim_map.mean())
    return float(np.mean(scores))


def test_ssim_against_float64_reference(rng):
    a = rng.integers(0, 256, size=(32, 40, 3)).astype(np.float64)
    assert calculate_ssim(a, a, crop_border=0) == pytest.approx(1.0, abs=1e-12)
    b = np.clip(a + rng.normal(0, 25, a.shape), 0, 255)
    got = calculate_ssim(a, b, crop_border=0)
    assert got == pytest.approx(reference_ssim(a, b), abs=1e-6) and got < 0.99


@pytest.mark.parametrize("size,sigma", [(21, 2.0), (7, 0.8), (41, 9.5)])
def test_isotropic_bivariate_gaussian_matches_closed_form(size, sigma):
    k = degradations.bivariate_Gaussian(size, sigma, sigma, 0.0, isotropic=True)
    r = np.arange(size) - (size - 1) / 2
    want = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    np.testing.assert_allclose(k, want / want.sum(), rtol=1e-10, atol=1e-14)


def test_random_mixed_kernels_and_circular_lowpass_are_normalised():
    np.random.seed(0)
    kinds = ["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"]
    for _ in range(12):
        k = degradations.random_mixed_kernels(kinds, [1 / 6] * 6, kernel_size=21)
        assert k.shape == (21, 21) and k.min() >= 0 and k.sum() == pytest.approx(1.0, abs=1e-6)
    for cutoff in (np.pi / 3, np.pi / 2, np.pi):
        k = degradations.circular_lowpass_kernel(cutoff, 13, pad_to=21)
        assert k.shape == (21, 21) and k.sum() == pytest.approx(1.0, abs=1e-6)
        np.testing.assert_allclose(k, k.T, atol=1e-12)  # rotationally symmetric sinc
