"""data/sigma_star.py: the Fourier loss against a direct float64 spatial loss, the fast search against the
spatial reference on really degraded faces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from data.blur import gaussian_blur
from data.datasets import load_face
from data.degradation import degrade, load_degradation_config
from data.sigma_star import FINE_STEP, BlurFit, sigma_star, sigma_star_spatial

BLIND = "configs/degradation/difface_blind.yaml"


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(2, 40),
    w=st.integers(2, 40),
    seed=st.integers(0, 2**16),
    steps=st.lists(st.integers(0, 6400), min_size=1, max_size=6),
)
def test_fourier_loss_equals_spatial_loss(h, w, seed, steps):
    # sigmas up to 64 px on images down to 2 px: kernels far wider than the image wrap around many times
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, h, w, generator=gen, dtype=torch.float64) * 2 - 1
    y = gaussian_blur(x, 1.7) + 0.1 * torch.randn(2, 3, h, w, generator=gen, dtype=torch.float64)
    cand = torch.tensor([steps, steps[::-1]])
    fast = BlurFit(x, y).loss(cand * FINE_STEP)
    ref = torch.stack(
        [
            torch.stack(
                [(gaussian_blur(x[i : i + 1], j * FINE_STEP) - y[i : i + 1]).pow(2).sum() for j in cand[i].tolist()]
            )
            for i in range(2)
        ]
    )
    assert fast.dtype == torch.float64 and fast.shape == cand.shape
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5 * float(y.pow(2).sum()) / y.numel())


@pytest.fixture(scope="module")
def degraded64(celeba_faces):
    """12 real faces at 64 px with the blind degradation (all severities), HQ and U(y), float32 [-1, 1]."""
    cfg = load_degradation_config(BLIND)
    rng = np.random.default_rng(7)
    hq = [load_face(p, 64) for p in celeba_faces[100:112]]
    lq = [degrade(face, rng, cfg)[0] for face in hq]
    return tuple(torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).float() * 2 - 1 for a in (hq, lq))


def test_fast_search_matches_spatial_reference(degraded64):
    hq, lq = degraded64
    fast, ref = sigma_star(hq, lq), sigma_star_spatial(hq, lq)
    assert fast.dtype == torch.float32 and fast.shape == (12,)
    assert ref.min() < 1.5 < 4.0 < ref.max()  # the set spans mild to severe
    # the same loss up to float rounding: the same grid value but for near-ties one fine step apart
    assert (fast - ref).abs().max() <= FINE_STEP + 1e-6, (fast, ref)


def test_batch_independence_and_bad_input(degraded64):
    hq, lq = degraded64
    together = sigma_star(hq[:4], lq[:4])
    alone = torch.cat([sigma_star(hq[i : i + 1], lq[i : i + 1]) for i in range(4)])
    assert torch.equal(together, alone)
    with pytest.raises(ValueError, match="at least 2 x 2"):
        sigma_star(hq[:, :, :1], lq[:, :, :1])
    with pytest.raises(ValueError, match="fine_step"):
        sigma_star(hq, lq, fine_step=0.0)
