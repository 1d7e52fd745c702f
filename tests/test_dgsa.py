"""DGSA (models/dgsa.py): the Laplace NLL against float64 closed forms, the guidance map's range and
monotonicity, shapes, initialisation and errors; the Spearman helper of trainers/dgsa.py against scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models.dgsa import DGSA, laplace_nll, scale_from_b
from tiny_setup import DGSA as TINY_DGSA_NODE
from trainers.dgsa import spearman
from utils.config import instantiate


def _tiny(**kw) -> DGSA:
    torch.manual_seed(0)
    return DGSA(model_channels=32, channel_mult=(1, 2), **kw)


def _perturb(model: DGSA) -> None:
    """Move every weight off its initialisation (zero-initialised residual branches and head included)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)


def test_laplace_nll_matches_float64_formula():
    rng = np.random.default_rng(0)
    r = rng.normal(0.0, 0.3, (2, 3, 5, 4))
    b = rng.uniform(0.01, 0.5, (2, 1, 5, 4))
    ref = np.abs(r) / b + np.log(b)  # (2, 3, 5, 4): b broadcast over channels
    rt, bt = torch.from_numpy(r).float(), torch.from_numpy(b).float()
    np.testing.assert_allclose(laplace_nll(rt, bt, reduction="none").numpy(), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        laplace_nll(rt, bt, reduction="per_image").numpy(), ref.reshape(2, -1).mean(1), rtol=1e-5
    )
    assert laplace_nll(rt, bt).item() == pytest.approx(ref.mean(), rel=1e-5)
    assert laplace_nll(torch.from_numpy(r), torch.from_numpy(b)).dtype == torch.float64


@settings(max_examples=20, deadline=None)
@given(st.lists(st.floats(-1.5, 1.5), min_size=12, max_size=12))
def test_laplace_nll_minimiser_is_mean_abs_residual(values):
    """For fixed residuals the NLL is minimised per pixel at b* = mean_c |r| (zero gradient there), and a
    brute-force search over b finds the same minimiser."""
    r = torch.tensor(values, dtype=torch.float64).reshape(1, 3, 2, 2)
    b_star = r.abs().mean(1, keepdim=True).clamp_min(1e-3)  # all-zero residuals: the minimum is at b -> 0
    b = b_star.clone().requires_grad_(True)
    laplace_nll(r, b).backward()
    nonzero = r.abs().mean(1, keepdim=True) > 1e-3
    assert torch.all(b.grad[nonzero].abs() < 1e-9)
    grid = torch.linspace(1e-3, 2.0, 4001, dtype=torch.float64)  # brute force, pixel by pixel
    for p in range(4):
        res = r.reshape(3, 4)[:, p]
        losses = (res.abs()[None, :] / grid[:, None] + torch.log(grid)[:, None]).sum(1)
        best = grid[losses.argmin()]
        if nonzero.reshape(-1)[p]:
            assert abs(best.item() - b_star.reshape(-1)[p].item()) <= 1e-3


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.floats(1e-3, 50.0), min_size=2, max_size=16, unique=True), st.floats(0.05, 1.0), st.floats(1e-3, 1.0)
)
def test_guidance_scale_range_and_monotonicity(bs, s_max, b_ref):
    b = torch.tensor(sorted(bs), dtype=torch.float64)
    s = scale_from_b(b, s_max, b_ref)
    np.testing.assert_allclose(s.numpy(), s_max / (1.0 + np.array(sorted(bs)) / b_ref), rtol=1e-12)
    assert torch.all(s > 0) and torch.all(s <= s_max)
    assert torch.all(s[1:] <= s[:-1])  # decreasing in b, strictly where b differs beyond rounding
    apart = b[1:] > b[:-1] * (1 + 1e-9)
    assert torch.all(s[1:][apart] < s[:-1][apart])
    assert scale_from_b(b_ref, s_max, b_ref) == pytest.approx(s_max / 2)


def test_dgsa_shapes_init_and_guidance_scale():
    model = _tiny(b_init=0.2, b_ref=0.05, s_max=0.8)
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    t = torch.tensor([0, 400, 999])
    b = model(x, x.flip(-1), x.flip(-2), t)
    assert b.shape == (3, 1, 32, 32)
    torch.testing.assert_close(b, torch.full_like(b, 0.2))  # zero head: b = b_init everywhere
    _perturb(model)
    b = model(x, x.flip(-1), x.flip(-2), t)
    assert torch.all(b >= model.b_min) and b.std() > 0
    s = model.guidance_scale(x, x.flip(-1), x.flip(-2), t)
    torch.testing.assert_close(s, scale_from_b(b, 0.8, 0.05))
    assert torch.all((s > 0) & (s <= 0.8))
    # the timestep conditions the output
    b_other = model(x, x.flip(-1), x.flip(-2), torch.tensor([999, 0, 400]))
    assert not torch.allclose(b, b_other)
    # every parameter receives a gradient
    laplace_nll(x, model(x, x.flip(-1), x.flip(-2), t)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def _bilinear_up(img: np.ndarray, f: int) -> np.ndarray:
    """Half-pixel bilinear upsampling of (H, W) by f with clamped edges (the align_corners=False rule)."""

    def axis(n):
        src = np.clip((np.arange(n * f) + 0.5) / f - 0.5, 0, n - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n - 1)
        return lo, hi, src - lo

    (r0, r1, wr), (c0, c1, wc) = axis(img.shape[0]), axis(img.shape[1])
    rows = img[r0] * (1 - wr)[:, None] + img[r1] * wr[:, None]
    return rows[:, c0] * (1 - wc) + rows[:, c1] * wc


@pytest.mark.parametrize("f", [2, 4])
def test_dgsa_map_downsample_is_the_pooled_network_upsampled(f):
    """b = b_min + softplus(up_f(logits of the same network on the f x f block means)); reference in numpy."""
    low = _tiny(b_init=0.2)
    _perturb(low)
    model = _tiny(b_init=0.2, map_downsample=f)
    model.load_state_dict(low.state_dict())  # same parameters: map_downsample changes no layout
    gen = torch.Generator().manual_seed(f)
    x0_hat, x0_tilde, y_k = (torch.rand(2, 3, 8 * f, 8 * f, generator=gen) * 2 - 1 for _ in range(3))
    t = torch.tensor([30, 700])
    pool = lambda x: x.reshape(2, 3, 8, f, 8, f).mean(dim=(3, 5))  # noqa: E731  block means
    with torch.no_grad():
        b_low = low(pool(x0_hat), pool(x0_tilde), pool(y_k), t)  # (2, 1, 8, 8)
        b = model(x0_hat, x0_tilde, y_k, t)
    logits = np.log(np.expm1((b_low.double() - low.b_min).numpy()))  # softplus^-1
    expected = np.stack([low.b_min + np.logaddexp(0.0, _bilinear_up(logits[i, 0], f)) for i in range(2)])[:, None]
    assert b.shape == (2, 1, 8 * f, 8 * f)
    np.testing.assert_allclose(b.numpy(), expected, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match=f"divisible by {2 * f}"):
        model(x0_hat[..., :-2, :-2], x0_tilde[..., :-2, :-2], y_k[..., :-2, :-2], t)


def test_tiny_setup_dgsa_node_instantiates():
    model = instantiate(TINY_DGSA_NODE)
    assert isinstance(model, DGSA)
    x = torch.zeros(1, 3, 32, 32)
    assert model(x, x, x, torch.tensor([10])).shape == (1, 1, 32, 32)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"model_channels": 8}, "multiples of 32"),
        ({"s_max": 1.5}, "s_max"),
        ({"b_min": 0.2, "b_init": 0.1}, "b_init"),
        ({"num_res_blocks": 0}, "num_res_blocks"),
        ({"map_downsample": 0}, "map_downsample"),
        ({"map_downsample": 1.5}, "map_downsample"),
    ],
)
def test_dgsa_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DGSA(**kwargs)


def test_dgsa_bad_inputs():
    model = _tiny()
    x = torch.zeros(2, 3, 31, 31)
    with pytest.raises(ValueError, match="divisible by 2"):
        model(x, x, x, torch.tensor([1, 2]))
    x = torch.zeros(2, 3, 32, 32)
    with pytest.raises(ValueError, match="three"):
        model(x, x[:, :1], x, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="one timestep per image"):
        model(x, x, x, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="reduction"):
        laplace_nll(x, x[:, :1], reduction="sum")
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        laplace_nll(x, x)


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(1)
    a = np.round(rng.normal(size=(3, 200)), 1)  # many ties
    b = a + np.round(rng.normal(size=(3, 200)), 1)
    got = spearman(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    ref = [scipy.stats.spearmanr(a[i], b[i]).statistic for i in range(3)]
    np.testing.assert_allclose(got, ref, rtol=1e-10)
    assert spearman(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3.0, 1.0, 2.0])).item() == pytest.approx(-0.5)
    assert spearman(torch.ones(5), torch.arange(5.0)).item() == 0.0  # constant: no rank information
