"""Diffusion maths against independent float64 references (closed forms written here, not the code's arrays)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models import gaussian_diffusion as gd
from models.losses import discretized_gaussian_log_likelihood, normal_kl
from models.respace import space_timesteps
from models.script_util import create_gaussian_diffusion


def ref_linear_betas(T):
    s = 1000.0 / T
    return np.array([s * 1e-4 + (s * 0.02 - s * 1e-4) * i / (T - 1) for i in range(T)], dtype=np.float64)


def ref_alpha_bar(betas, t):
    """prod_{s<=t} (1 - beta_s), by an explicit loop."""
    out = 1.0
    for s in range(t + 1):
        out *= 1.0 - float(betas[s])
    return out


def ref_posterior(x0, xt, ab_prev, alpha):
    """Bayes: prior N(sqrt(ab_prev) x0, 1 - ab_prev) times likelihood N(x_t; sqrt(alpha) x, 1 - alpha)."""
    beta = 1.0 - alpha
    precision = 1.0 / (1.0 - ab_prev) + alpha / beta
    var = 1.0 / precision
    mean = var * (math.sqrt(ab_prev) * x0 / (1.0 - ab_prev) + math.sqrt(alpha) * xt / beta)
    return mean, var


class ConstEps:
    """A fake model returning a fixed output and recording the timesteps it is called with."""

    def __init__(self, out):
        self.out, self.calls = out, []

    def __call__(self, x, t, **kwargs):
        self.calls.append(t.clone())
        return self.out.to(x)


@pytest.fixture(scope="module")
def base():
    return create_gaussian_diffusion(steps=1000, learn_sigma=True, noise_schedule="linear")


@pytest.fixture(scope="module")
def ddim250():
    return create_gaussian_diffusion(
        steps=1000, learn_sigma=True, noise_schedule="linear", timestep_respacing="ddim250"
    )


def test_linear_schedule_and_alpha_bar(base):
    assert base.betas.dtype == np.float64 and base.alphas_cumprod.dtype == np.float64
    np.testing.assert_allclose(gd.get_named_beta_schedule("linear", 1000), ref_linear_betas(1000), rtol=1e-12)
    for t in (0, 1, 399, 400, 999):
        assert base.alphas_cumprod[t] == pytest.approx(ref_alpha_bar(ref_linear_betas(1000), t), rel=1e-10)
    assert base.alphas_cumprod_prev[0] == 1.0


def test_cosine_schedule_matches_closed_form():
    T = 1000
    betas = gd.get_named_beta_schedule("cosine", T)

    def f(t):
        return math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2

    for t in (0, 100, 500, 900):
        assert ref_alpha_bar(betas, t) == pytest.approx(f(t + 1) / f(0), rel=1e-9)
    assert betas.max() <= 0.999
    with pytest.raises(ValueError, match="unknown beta schedule"):
        gd.get_named_beta_schedule("quadratic", 10)


def test_q_sample_statistics(base):
    torch.manual_seed(0)
    t = torch.tensor([0, 100, 400, 999])
    x0 = torch.tensor([0.8, -0.5, 0.3, 1.0]).reshape(4, 1, 1, 1).expand(4, 1, 256, 256).contiguous()
    xt = base.q_sample(x0, t).double()
    betas = ref_linear_betas(1000)
    for i in range(4):
        ab = ref_alpha_bar(betas, int(t[i]))
        n = xt[i].numel()
        assert xt[i].mean().item() == pytest.approx(
            math.sqrt(ab) * float(x0[i, 0, 0, 0]), abs=5 * math.sqrt((1 - ab) / n) + 1e-6
        )
        assert xt[i].var().item() == pytest.approx(1 - ab, rel=0.03, abs=1e-6)
    mean, var, logvar = base.q_mean_variance(x0[:, :, :1, :1], t)
    for i in range(4):
        ab = ref_alpha_bar(betas, int(t[i]))
        assert var[i].item() == pytest.approx(1 - ab, rel=1e-5)
        assert logvar[i].item() == pytest.approx(math.log(1 - ab), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("which", ["base", "ddim250"])
def test_posterior_mean_variance_bayes(which, request):
    diff = request.getfixturevalue(which)
    x0, xt = torch.full((3, 1, 1, 1), 0.4), torch.full((3, 1, 1, 1), -0.7)
    idx = torch.tensor([1, 50, diff.num_timesteps - 1])
    mean, var, _ = diff.q_posterior_mean_variance(x0, xt, idx)
    betas = ref_linear_betas(1000)
    for i, k in enumerate(idx.tolist()):
        s, s_prev = int(diff.timestep_map[k]), int(diff.timestep_map[k - 1])
        ab, ab_prev = ref_alpha_bar(betas, s), ref_alpha_bar(betas, s_prev)
        m_ref, v_ref = ref_posterior(0.4, -0.7, ab_prev, ab / ab_prev)
        assert mean[i].item() == pytest.approx(m_ref, rel=1e-5, abs=1e-6)
        assert var[i].item() == pytest.approx(v_ref, rel=1e-5)


def test_respacing(base, ddim250):
    assert ddim250.num_timesteps == 250 and ddim250.original_num_steps == 1000
    np.testing.assert_array_equal(ddim250.timestep_map, np.arange(0, 1000, 4))
    betas = ref_linear_betas(1000)
    for k in (0, 1, 100, 249):
        assert ddim250.alphas_cumprod[k] == pytest.approx(ref_alpha_bar(betas, 4 * k), rel=1e-10)
    assert space_timesteps(1000, "25") == set(int(round(i * 999 / 24)) for i in range(25))
    assert space_timesteps(1000, 25) == space_timesteps(1000, [25]) == space_timesteps(1000, "25")  # a YAML int
    steps = sorted(space_timesteps(100, "10,5"))
    assert len(steps) == 15 and steps[0] == 0 and steps[-1] == 99 and max(steps[:10]) == 49
    assert len(space_timesteps(1000, "ddim50")) == 50
    with pytest.raises(ValueError):
        space_timesteps(1000, "ddim999")
    with pytest.raises(ValueError):
        space_timesteps(1000, "abc")
    model = ConstEps(torch.zeros(1, 6, 1, 1))
    ddim250.p_mean_variance(model, torch.zeros(1, 3, 1, 1), torch.tensor([100]))
    assert model.calls[-1].tolist() == [400]  # the model sees original timesteps


def test_schedules_are_copied_to_a_device_once(ddim250):
    """on_device: the numpy schedule as a tensor, one cached copy per (name, device), values unchanged."""
    first = ddim250.on_device("alphas_cumprod", torch.device("cpu"))
    assert first is ddim250.on_device("alphas_cumprod", "cpu")
    np.testing.assert_array_equal(first.numpy(), ddim250.alphas_cumprod)
    t = torch.tensor([0, 100, 249])
    np.testing.assert_array_equal(
        ddim250.extract("log_betas", t, (3, 1)).numpy()[:, 0], np.log(ddim250.betas[[0, 100, 249]]).astype(np.float32)
    )
    assert ddim250.on_device("timestep_map", "cpu")[t].tolist() == [0, 400, 996]


@pytest.mark.parametrize("v", [-1.0, -0.3, 0.5, 1.0])
def test_learned_range_interpolation(ddim250, v):
    k = torch.tensor([3, 100])
    out = torch.cat([torch.zeros(2, 3, 1, 1), torch.full((2, 3, 1, 1), v)], 1)
    res = ddim250.p_mean_variance(ConstEps(out), torch.zeros(2, 3, 1, 1), k)
    betas = ref_linear_betas(1000)
    frac = (v + 1) / 2
    for i, kk in enumerate(k.tolist()):
        ab, ab_prev = ref_alpha_bar(betas, 4 * kk), ref_alpha_bar(betas, 4 * kk - 4)
        beta = 1 - ab / ab_prev
        post = beta * (1 - ab_prev) / (1 - ab)
        assert res["log_variance"][i, 0, 0, 0].item() == pytest.approx(
            frac * math.log(beta) + (1 - frac) * math.log(post), rel=1e-5
        )


def ref_ddim(xt, eps, ab, ab_prev, eta, z):
    x0 = (xt - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
    sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
    return math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev - sigma**2) * eps + sigma * z, sigma


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_sample_against_reference(ddim250, eta):
    k = torch.tensor([100, 20])
    xt = torch.tensor([0.3, -0.2]).reshape(2, 1, 1, 1).expand(2, 3, 2, 2).contiguous()
    eps = torch.tensor([0.5, -1.1]).reshape(2, 1, 1, 1).expand(2, 3, 2, 2)
    z = torch.tensor([0.7, 0.2]).reshape(2, 1, 1, 1).expand(2, 3, 2, 2).contiguous()
    model = ConstEps(torch.cat([eps, torch.zeros_like(eps)], 1))
    out = ddim250.ddim_sample(model, xt, k, clip_denoised=False, eta=eta, noise=z)
    betas = ref_linear_betas(1000)
    for i, kk in enumerate(k.tolist()):
        ab, ab_prev = ref_alpha_bar(betas, 4 * kk), ref_alpha_bar(betas, 4 * kk - 4)
        ref, sigma = ref_ddim(float(xt[i, 0, 0, 0]), float(eps[i, 0, 0, 0]), ab, ab_prev, eta, float(z[i, 0, 0, 0]))
        assert out["sample"][i, 0, 0, 0].item() == pytest.approx(ref, rel=1e-4, abs=1e-5)
        if eta == 1.0:  # DDPM: sigma^2 is the posterior variance
            _, v_post = ref_posterior(0.0, 0.0, ab_prev, ab / ab_prev)
            assert sigma**2 == pytest.approx(v_post, rel=1e-10)
            s = (
                out["sample"]
                - ddim250.ddim_sample(model, xt, k, clip_denoised=False, eta=eta, noise=torch.zeros_like(z))["sample"]
            ) / z
            assert s[i, 0, 0, 0].item() ** 2 == pytest.approx(v_post, rel=1e-3)


def test_per_image_eta_tensor_equals_scalar_calls(ddim250):
    torch.manual_seed(1)
    xt, z = torch.randn(3, 3, 4, 4), torch.randn(3, 3, 4, 4)
    eps = torch.randn(3, 6, 4, 4)
    k, etas = torch.tensor([200, 100, 3]), [0.0, 0.5, 1.0]
    batched = ddim250.ddim_sample(ConstEps(eps), xt, k, eta=torch.tensor(etas), noise=z)["sample"]
    for i, e in enumerate(etas):
        single = ddim250.ddim_sample(ConstEps(eps[i : i + 1]), xt[i : i + 1], k[i : i + 1], eta=e, noise=z[i : i + 1])[
            "sample"
        ]
        torch.testing.assert_close(batched[i : i + 1], single, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="eta has 2 values"):
        ddim250.ddim_sample(ConstEps(eps), xt, k, eta=torch.tensor([0.1, 0.2]))


@pytest.mark.parametrize("loop", ["ddim_sample_loop_progressive", "p_sample_loop_progressive"])
def test_loop_from_start_index(ddim250, loop):
    model = ConstEps(torch.zeros(2, 6, 4, 4))
    x = torch.randn(2, 3, 4, 4)
    steps = list(getattr(ddim250, loop)(model, (2, 3, 4, 4), start_index=100, x_start_t=x))
    assert len(model.calls) == 101 == len(steps)
    assert model.calls[0].tolist() == [400, 400] and model.calls[-1].tolist() == [0, 0]
    assert [int(s["t"][0]) for s in steps] == list(range(100, -1, -1))
    with pytest.raises(ValueError, match="x_start_t"):
        next(getattr(ddim250, loop)(model, (2, 3, 4, 4), start_index=5))


def test_a_ddim_step_is_the_models_x0_then_the_update(ddim250):
    """model_x0: the network at the ORIGINAL timesteps and its clipped x0; ddim_update: DDIM with any given x0."""
    torch.manual_seed(2)
    xt, z, eps = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), 3 * torch.randn(2, 6, 4, 4)
    k = torch.tensor([150, 10])
    model = ConstEps(eps)
    x0 = ddim250.model_x0(model, xt, k)[2]
    assert model.calls[-1].tolist() == [600, 40]
    betas = ref_linear_betas(1000)
    ab = torch.tensor([ref_alpha_bar(betas, 4 * kk) for kk in k.tolist()]).reshape(2, 1, 1, 1)
    ab_prev = torch.tensor([ref_alpha_bar(betas, 4 * kk - 4) for kk in k.tolist()]).reshape(2, 1, 1, 1)
    ref_x0 = ((xt.double() - (1 - ab).sqrt() * eps[:, :3].double()) / ab.sqrt()).clamp(-1, 1)
    torch.testing.assert_close(x0.double(), ref_x0, rtol=0, atol=1e-5)
    given_x0 = torch.full_like(xt, 0.25)
    ref = gd.ddim_step(xt.double(), given_x0.double(), ab, ab_prev, 0.5, z.double())
    torch.testing.assert_close(ddim250.ddim_update(xt, given_x0, k, 0.5, z).double(), ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(
        ddim250.ddim_sample(model, xt, k, eta=0.5, noise=z)["sample"],
        ddim250.ddim_update(xt, x0, k, 0.5, z),
        rtol=0,
        atol=0,
    )


@settings(max_examples=20, deadline=None)
@given(t=st.integers(1, 999), x0=st.floats(-1, 1), e=st.floats(-3, 3))
def test_ddim_eta0_follows_the_forward_trajectory(t, x0, e):
    """With the true x0 (hence the true eps), deterministic DDIM maps q's x_t to q's x_{t-1} with the same eps."""
    betas = ref_linear_betas(1000)
    ab, ab_prev = ref_alpha_bar(betas, t), ref_alpha_bar(betas, t - 1)

    def d(v):
        return torch.tensor([v], dtype=torch.float64)

    xt = math.sqrt(ab) * x0 + math.sqrt(1 - ab) * e
    out = gd.ddim_step(d(xt), d(x0), d(ab), d(ab_prev), 0.0)
    assert out.item() == pytest.approx(math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev) * e, abs=1e-9)


def test_normal_kl_and_discretized_likelihood():
    m1, lv1, m2, lv2 = torch.tensor([0.3]), torch.tensor([-1.0]), torch.tensor([-0.2]), torch.tensor([0.5])
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(0.3, math.exp(-0.5)), torch.distributions.Normal(-0.2, math.exp(0.25))
    )
    assert normal_kl(m1, lv1, m2, lv2).item() == pytest.approx(ref.item(), rel=1e-5)
    bins = torch.linspace(-1, 1, 256)  # the 256 pixel values: the bin probabilities sum to 1
    for mean, log_scale in ((0.1, -2.0), (0.9, -1.0), (-0.5, -4.0)):
        ll = discretized_gaussian_log_likelihood(
            bins, means=torch.full_like(bins, mean), log_scales=torch.full_like(bins, log_scale)
        )
        assert ll.exp().sum().item() == pytest.approx(1.0, abs=2e-3)


def test_training_losses_finite_and_vb_stop_grad(ddim250):
    torch.manual_seed(3)
    x0 = torch.rand(2, 3, 4, 4) * 2 - 1
    param = torch.zeros(1, 6, 4, 4, requires_grad=True)

    def model(x, t):
        return param.expand(x.shape[0], -1, -1, -1)

    for diff in (ddim250, create_gaussian_diffusion(steps=100, learn_sigma=True, rescale_learned_sigmas=True)):
        terms = diff.training_losses(model, x0, torch.tensor([0, diff.num_timesteps - 1]))
        assert set(terms) == {"loss", "mse", "vb"} and torch.isfinite(terms["loss"]).all()
        torch.testing.assert_close(terms["loss"], terms["mse"] + terms["vb"])
        (grad,) = torch.autograd.grad(terms["vb"].sum(), param)
        assert grad[:, :3].abs().max() == 0 and grad[:, 3:].abs().max() > 0  # the VB term trains only the variance
    fixed = create_gaussian_diffusion(steps=50)
    terms = fixed.training_losses(lambda x, t: torch.zeros_like(x), x0, torch.tensor([5, 9]), noise=torch.ones_like(x0))
    torch.testing.assert_close(terms["loss"], torch.ones(2))  # eps target, zero prediction
