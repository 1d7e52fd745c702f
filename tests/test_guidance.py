"""Closed-form Fourier guidance (models/guidance.py) against dense float64 solves of the normal equations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from data.blur import gaussian_blur, kernel_spectrum1d
from models.guidance import LevelSpectra, batch_pad, blend, closed_form_guidance, closed_form_guidance_multi
from utils.image_io import img2tensor, read_image


def ref_kernel(sigma: float) -> np.ndarray:
    """Sampled Gaussian, radius ceil(4 sigma), normalised (written independently of data/blur.py)."""
    if sigma == 0:
        return np.ones(1)
    r = math.ceil(4 * sigma - 1e-9)
    k = np.exp(-(np.arange(-r, r + 1) ** 2) / (2 * sigma**2))
    return k / k.sum()


def circulant(sigma: float, n: int) -> np.ndarray:
    """Dense n x n periodic convolution matrix: (C x)[i] = sum_k g[k] x[(i - k) mod n]."""
    g = ref_kernel(sigma)
    r = (len(g) - 1) // 2
    c = np.zeros((n, n))
    for i in range(n):
        for k in range(-r, r + 1):
            c[i, (i - k) % n] += g[k + r]
    return c


def blur_matrix(sigma: float, h: int, w: int) -> np.ndarray:
    """2-D periodic blur on row-major flattened h x w images: kron(C_h, C_w)."""
    return np.kron(circulant(sigma, h), circulant(sigma, w))


def dense_solve(x0, ys, sigmas, lam, weights=None):
    """Per image and channel: solve (sum_k w_k A_k^T A_k + lam I) x = sum_k w_k A_k^T y_k + lam x0 (float64)."""
    x0 = x0.double().numpy()
    ys = [y.double().numpy() for y in ys]
    n, c, h, w = x0.shape
    weights = weights or [np.ones(n)] * len(ys)
    lam = np.broadcast_to(np.asarray(lam, dtype=np.float64), (n,))
    out = np.empty_like(x0)
    for i in range(n):
        mats = [blur_matrix(float(s[i]), h, w) for s in sigmas]
        lhs = lam[i] * np.eye(h * w) + sum(float(wk[i]) * a.T @ a for a, wk in zip(mats, weights))
        for ch in range(c):
            rhs = lam[i] * x0[i, ch].ravel() + sum(
                float(wk[i]) * a.T @ y[i, ch].ravel() for a, y, wk in zip(mats, ys, weights)
            )
            out[i, ch] = np.linalg.solve(lhs, rhs).reshape(h, w)
    return torch.from_numpy(out)


def rand(shape, seed):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1


@pytest.mark.parametrize("h,w", [(8, 8), (12, 12), (8, 12)])
def test_periodic_matches_dense_solve(h, w):
    x0, y = rand((3, 2, h, w), 0), rand((3, 2, h, w), 1)
    sigma = torch.tensor([0.0, 0.8, 1.7], dtype=torch.float64)  # 1.7: radius 7, wraps around 8 px
    lam = torch.tensor([0.05, 0.3, 2.0], dtype=torch.float64)
    got = closed_form_guidance(x0, y, sigma, lam, periodic=True)
    assert got.dtype == torch.float64 and got.shape == x0.shape
    torch.testing.assert_close(got, dense_solve(x0, [y], [sigma], lam), rtol=0, atol=1e-6)


@settings(max_examples=15, deadline=None)
@given(
    sigma=st.one_of(st.just(0.0), st.floats(0.05, 3.0)),
    lam=st.floats(1e-3, 10.0),
    h=st.integers(5, 11),
    w=st.integers(5, 11),
    seed=st.integers(0, 1000),
)
def test_periodic_matches_dense_solve_property(sigma, lam, h, w, seed):
    x0, y = rand((1, 1, h, w), seed), rand((1, 1, h, w), seed + 1)
    s = torch.tensor([sigma], dtype=torch.float64)
    got = closed_form_guidance(x0, y, s, lam, periodic=True)
    torch.testing.assert_close(got, dense_solve(x0, [y], [s], lam), rtol=0, atol=1e-6)


def test_small_lam_gives_data_consistency():
    h = w = 12
    sigma = 0.6  # |G| >= exp(-sigma^2 pi^2 / 2) = 0.17: invertible
    a = blur_matrix(sigma, h, w)
    x_true = rand((1, 1, h, w), 3)
    y = torch.from_numpy((a @ x_true.numpy().ravel()).reshape(1, 1, h, w))
    x = closed_form_guidance(rand((1, 1, h, w), 4), y, torch.tensor([sigma]), 1e-10, periodic=True)
    residual = a @ x.numpy().ravel() - y.numpy().ravel()
    assert np.linalg.norm(residual) / np.linalg.norm(y.numpy()) < 1e-6
    torch.testing.assert_close(x, x_true, rtol=0, atol=1e-6)


@pytest.mark.parametrize("periodic", [True, False])
def test_large_lam_gives_x0_hat(periodic):
    x0, y = rand((2, 3, 16, 16), 5), rand((2, 3, 16, 16), 6)
    got = closed_form_guidance(x0, y, torch.tensor([1.0, 3.0]), 1e10, periodic=periodic)
    torch.testing.assert_close(got, x0, rtol=0, atol=1e-8)


def test_sigma_zero_is_weighted_mean():
    x0, y = rand((2, 3, 10, 10), 7), rand((2, 3, 10, 10), 8)
    got = closed_form_guidance(x0, y, torch.zeros(2), 0.25)
    torch.testing.assert_close(got, (y + 0.25 * x0) / 1.25, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kwargs", [dict(periodic=True), dict(pad=6)])
def test_batch_with_different_sigmas_equals_per_image(kwargs):
    x0, y = rand((3, 3, 14, 10), 9), rand((3, 3, 14, 10), 10)
    sigma = torch.tensor([0.5, 0.0, 1.4], dtype=torch.float64)
    lam = torch.tensor([0.1, 1.0, 0.01], dtype=torch.float64)
    got = closed_form_guidance(x0, y, sigma, lam, **kwargs)
    for i in range(3):
        one = closed_form_guidance(x0[i : i + 1], y[i : i + 1], sigma[i : i + 1], float(lam[i]), **kwargs)
        torch.testing.assert_close(got[i : i + 1], one, rtol=0, atol=1e-12)


def test_multi_one_level_equals_single():
    x0, y = rand((2, 3, 12, 12), 11), rand((2, 3, 12, 12), 12)
    sigma = torch.tensor([0.7, 2.0], dtype=torch.float64)
    single = closed_form_guidance(x0, y, sigma, 0.3)
    multi = closed_form_guidance_multi(x0, [y], [sigma], 0.3)
    torch.testing.assert_close(multi, single, rtol=0, atol=1e-12)


def test_multi_matches_dense_solve_and_zero_weight_drops_a_level():
    x0, y1, y2 = rand((2, 1, 8, 10), 13), rand((2, 1, 8, 10), 14), rand((2, 1, 8, 10), 15)
    s1 = torch.tensor([1.2, 2.0], dtype=torch.float64)
    s2 = torch.tensor([0.9, 0.0], dtype=torch.float64)
    weights = [torch.tensor([1.0, 0.5], dtype=torch.float64), torch.tensor([2.0, 0.0], dtype=torch.float64)]
    got = closed_form_guidance_multi(x0, [y1, y2], [s1, s2], 0.2, weights=weights, periodic=True)
    want = dense_solve(x0, [y1, y2], [s1, s2], 0.2, [w.numpy() for w in weights])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    # image 1 has weight 0 on level 2: same as level 1 alone with weight 0.5
    alone = closed_form_guidance_multi(x0[1:], [y1[1:]], [s1[1:]], 0.2, weights=[0.5], periodic=True)
    torch.testing.assert_close(got[1:], alone, rtol=0, atol=1e-12)


def test_reflect_padding_hides_the_periodic_boundary(celeba_faces):
    """Deblurring y = gaussian_blur(x) of real faces: the default padding beats the periodic solve."""
    x = img2tensor([read_image(p) for p in celeba_faces[:2]]).double()  # 128 px real faces
    sigma = torch.tensor([0.8, 1.2], dtype=torch.float64)
    y = gaussian_blur(x, sigma)
    padded = closed_form_guidance(torch.zeros_like(x), y, sigma, 1e-3)
    periodic = closed_form_guidance(torch.zeros_like(x), y, sigma, 1e-3, periodic=True)
    err_padded = (padded - x).abs().mean().item()
    err_periodic = (periodic - x).abs().mean().item()
    assert err_padded < 0.015, err_padded
    assert err_padded < 0.3 * err_periodic, (err_padded, err_periodic)
    assert (gaussian_blur(padded, sigma) - y).abs().mean().item() < 2e-3


def test_one_mirror_period_of_padding_is_exactly_consistent_with_project_blur(celeba_faces):
    """pad = H/2 - 1 makes the padded domain one period of gaussian_blur's mirror continuation."""
    x = img2tensor([read_image(p) for p in celeba_faces[2:4]]).double()
    sigma = torch.tensor([1.2, 0.8], dtype=torch.float64)
    y = gaussian_blur(x, sigma)
    got = closed_form_guidance(torch.zeros_like(x), y, sigma, 1e-9, pad=x.shape[-1] // 2 - 1)
    assert (gaussian_blur(got, sigma) - y).abs().max().item() < 1e-5


def test_float32_inputs_compute_in_float32_and_match_float64():
    x0, y = rand((2, 3, 20, 20), 16), rand((2, 3, 20, 20), 17)
    sigma, lam = torch.tensor([1.0, 2.5]), torch.tensor([0.05, 0.5])
    got = closed_form_guidance(x0.float(), y.float(), sigma, lam)
    assert got.dtype == torch.float32
    torch.testing.assert_close(
        got.double(), closed_form_guidance(x0, y, sigma.double(), lam.double()), rtol=0, atol=1e-4
    )


def test_spectrum_cache_is_reused():
    x0, y = rand((1, 1, 9, 9), 18), rand((1, 1, 9, 9), 19)
    closed_form_guidance(x0, y, torch.tensor([1.3]), 0.1, periodic=True)
    hits = kernel_spectrum1d.cache_info().hits
    closed_form_guidance(x0, y, torch.tensor([1.3]), 0.1, periodic=True)
    assert kernel_spectrum1d.cache_info().hits >= hits + 2


def test_bad_inputs_raise_clear_errors():
    x0 = torch.zeros(2, 3, 8, 8)
    with pytest.raises(ValueError, match="sigma"):
        closed_form_guidance(x0, x0, torch.tensor([1.0, -1.0]), 0.1)
    with pytest.raises(ValueError, match="one value per image"):
        closed_form_guidance(x0, x0, torch.tensor([1.0, 1.0, 1.0]), 0.1)
    with pytest.raises(ValueError, match="lam"):
        closed_form_guidance(x0, x0, torch.ones(2), 0.0)
    with pytest.raises(ValueError, match="shape"):
        closed_form_guidance(x0, torch.zeros(2, 3, 8, 9), torch.ones(2), 0.1)


def test_blend_shapes_and_endpoints():
    a, b = rand((2, 3, 4, 4), 20), rand((2, 3, 4, 4), 21)
    torch.testing.assert_close(blend(a, b, 0.0), a)
    torch.testing.assert_close(blend(a, b, 1.0), b)
    s = torch.tensor([0.25, 0.75], dtype=torch.float64)
    want = torch.stack([a[0] + 0.25 * (b[0] - a[0]), a[1] + 0.75 * (b[1] - a[1])])
    torch.testing.assert_close(blend(a, b, s), want)
    smap = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(blend(a, b, smap), a * (1 - smap) + b * smap)
    sfull = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(blend(a, b, sfull), a * (1 - sfull) + b * sfull)


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 3),
    k=st.integers(1, 3),
    h=st.integers(5, 8),
    w=st.integers(5, 8),
    pad=st.integers(0, 4),
    lam=st.floats(0.01, 2.0),
    seed=st.integers(0, 10**6),
    data=st.data(),
)
def test_level_spectra_subset_matches_dense_solve_of_the_padded_problem(n, k, h, w, pad, lam, seed, data):
    """Precomputed spectra, any level weights and any subset of images = the dense float64 solve on the
    mirror-padded images, cropped (the padding written with numpy, independently of data/blur.py)."""
    gen = np.random.default_rng(seed)
    levels = torch.from_numpy(gen.uniform(-1, 1, (n, k, 2, h, w)))
    sigmas = torch.from_numpy(gen.uniform(0, 1.5, (n, k)))
    spectra = LevelSpectra(levels, sigmas, pad=pad)
    subset = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
    idx = torch.tensor(subset)
    x0 = torch.from_numpy(gen.uniform(-1, 1, (len(subset), 2, h, w)))
    weights = torch.from_numpy(gen.uniform(0, 2, (len(subset), k)))
    got = spectra.solve(x0, weights, lam, idx)

    def padded(t):
        return torch.from_numpy(np.pad(t.numpy(), ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="reflect"))

    want = dense_solve(
        padded(x0),
        [padded(levels[idx, j]) for j in range(k)],
        [sigmas[idx, j] for j in range(k)],
        lam,
        [weights[:, j].numpy() for j in range(k)],
    )[..., pad : pad + h, pad : pad + w]
    torch.testing.assert_close(got, want, rtol=0, atol=1e-8)


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 3),
    k=st.integers(1, 3),
    h=st.integers(5, 8),
    w=st.integers(5, 8),
    pad=st.integers(0, 4),
    lam=st.floats(0.01, 2.0),
    seed=st.integers(0, 10**6),
    data=st.data(),
)
def test_solve_level_matches_dense_solve_toward_each_images_level(n, k, h, w, pad, lam, seed, data):
    """``solve_level`` (one level per image, all images or a subset, lam a number or one per image) = the
    dense float64 solve toward that level on the mirror-padded images (numpy padding), cropped."""
    gen = np.random.default_rng(seed)
    levels = torch.from_numpy(gen.uniform(-1, 1, (n, k, 2, h, w)))
    sigmas = torch.from_numpy(gen.uniform(0, 1.5, (n, k)))
    spectra = LevelSpectra(levels, sigmas, pad=pad)
    subset = data.draw(st.one_of(st.none(), st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True)))
    images = torch.arange(n) if subset is None else torch.tensor(subset)
    level = torch.tensor(data.draw(st.lists(st.integers(0, k - 1), min_size=len(images), max_size=len(images))))
    lams = gen.uniform(0.01, 2.0, len(images)) if data.draw(st.booleans()) else lam
    x0 = torch.from_numpy(gen.uniform(-1, 1, (len(images), 2, h, w)))
    got = spectra.solve_level(
        x0, level, torch.from_numpy(np.asarray(lams)) if np.ndim(lams) else lams, None if subset is None else images
    )

    def padded(t):
        return torch.from_numpy(np.pad(t.numpy(), ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="reflect"))

    want = dense_solve(padded(x0), [padded(levels[images, level])], [sigmas[images, level]], lams)
    torch.testing.assert_close(got, want[..., pad : pad + h, pad : pad + w], rtol=0, atol=1e-8)


def test_solve_level_refuses_a_level_count_that_does_not_match_the_images():
    spectra = LevelSpectra(rand((2, 3, 1, 6, 6), 3), torch.ones(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="3 levels for 2 images"):
        spectra.solve_level(rand((2, 1, 6, 6), 4), torch.tensor([0, 1, 2]), 0.1)
    with pytest.raises(ValueError, match="lam"):
        spectra.solve_level(rand((2, 1, 6, 6), 4), torch.tensor([0, 1]), 0.0)


def test_level_spectra_one_hot_weights_equal_guiding_toward_that_level():
    levels, sigmas = (
        rand((3, 3, 3, 12, 12), 21),
        torch.tensor([[2.0, 1.5, 1.0], [1.0, 0.5, 0.2], [3.0, 2.0, 0.0]], dtype=torch.float64),
    )
    x0 = rand((2, 3, 12, 12), 22)
    idx, chosen = torch.tensor([2, 0]), torch.tensor([1, 2])
    got = LevelSpectra(levels, sigmas, pad=9).solve(x0, torch.eye(3, dtype=torch.float64)[chosen], 0.05, idx)
    want = closed_form_guidance(x0, levels[idx, chosen], sigmas[idx, chosen], 0.05, pad=9)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_batch_pad_is_fixed_unless_a_sigma_needs_more():
    assert batch_pad(torch.tensor([[1.0, 0.5]]), 512, 32.0) == 128  # kernel radius ceil(4 * 32)
    assert batch_pad(torch.tensor([[1.0], [3.0]]), 64, 32.0) == 16  # 32 at 512 px = 4 px at 64 px
    assert batch_pad(torch.tensor([[6.0]]), 64, 32.0) == 24  # a larger sigma gets its own radius
    assert batch_pad(torch.tensor([[0.3]]), 64, 0.0) == 2
    with pytest.raises(ValueError, match="pad_sigma_512"):
        batch_pad(torch.tensor([[1.0]]), 64, -1.0)
    with pytest.raises(ValueError, match="finite"):
        LevelSpectra(rand((1, 1, 3, 8, 8), 1), torch.tensor([[float("nan")]]))
