"""The few-step solvers (models/solvers.py) through the real sampler loop.

Closed form: for data x0 ~ N(mu, s^2 I) the exact noise prediction is
eps(x_t) = sigma_t (x_t - alpha_t mu) / (alpha_t^2 s^2 + sigma_t^2), and the probability-flow ODE
(deterministic DDIM, eta = 0) carries x_t to mu + s (x_t - alpha_t mu) / sqrt(alpha_t^2 s^2 + sigma_t^2)
at t = 0; with eta > 0 the samples have the data's law N(mu, s^2). Both are written here in float64,
independently of the code under test; the sampler runs the analytic network in place of the UNet.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models.solvers import SOLVERS, MultistepX0, extrapolation_coefficients, half_log_snr
from sampler import FaceRestoreSampler, SamplerStep
from tiny_setup import RESOLUTION, make_tiny_setup
from utils.config import ConfigError
from utils.image_io import img2tensor, list_images, read_image

START_T = 600  # original timestep of every closed-form run (a multiple of each stride used)
DATA_STD = 0.25


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory, celeba_faces):
    return make_tiny_setup(tmp_path_factory.mktemp("tiny_solvers"), celeba_faces[:8], with_dgsa=True)


@pytest.fixture(scope="module")
def real_lq(real_lq_dir):
    paths = list_images(real_lq_dir / "wider_like")[:3]
    return img2tensor(
        [cv2.resize(read_image(p), (RESOLUTION, RESOLUTION), interpolation=cv2.INTER_AREA) for p in paths]
    )


def _alpha_bar() -> np.ndarray:
    """The linear schedule of the 1000-step process, written out in float64."""
    return np.cumprod(1.0 - np.linspace(1e-4, 0.02, 1000, dtype=np.float64))


class GaussianPrior:
    """The exact eps(x_t) of x0 ~ N(mu, s^2 I), in float64, with the learned-variance channels the
    sampler's diffusion expects (their values do not enter a DDIM step)."""

    def __init__(self, mu: torch.Tensor, std: float):
        self.mu, self.std, self.abar = mu.double(), std, torch.from_numpy(_alpha_bar())

    def __call__(self, x, t_orig, **kwargs):
        abar = self.abar[t_orig].view(-1, 1, 1, 1)
        alpha, sigma = abar.sqrt(), (1 - abar).sqrt()
        eps = sigma * (x.double() - alpha * self.mu[: x.shape[0]]) / (abar * self.std**2 + 1 - abar)
        return torch.cat([eps, torch.zeros_like(eps)], 1).to(x.dtype)

    def ode_solution(self, x_t: torch.Tensor, t: int) -> torch.Tensor:
        """The ODE's end point, clamped to [-1, 1] as the sampler's result is."""
        abar = float(self.abar[t])
        scale = self.std / np.sqrt(abar * self.std**2 + 1 - abar)
        mu = self.mu[: x_t.shape[0]]
        return (mu + scale * (x_t.double() - np.sqrt(abar) * mu)).clamp(-1, 1)


def _gaussian_run(config, mu, steps: int, solver: str, eta, seeds):
    """DifFace's loop (no guidance) from t = START_T with the analytic prior; returns (result, x_start)."""
    sampler = FaceRestoreSampler.from_config(
        config,
        [
            "sampler.method=difface",
            f"diffusion.params.timestep_respacing=ddim{steps}",
            f"sampler.solver={solver}",
            "sampler.clip_denoised=false",
            f"sampler.fixed_start_index={START_T * steps // 1000}",
        ],
    )
    assert int(sampler.timestep_map[sampler.scfg.fixed_start_index]) == START_T
    prior = GaussianPrior(mu, DATA_STD)
    sampler.denoiser = prior
    first = {}

    def keep_first(step: SamplerStep) -> None:
        first.setdefault("x_t", step.x_t.clone())

    n = mu.shape[0]
    eta_t = eta if isinstance(eta, torch.Tensor) else torch.full((n,), float(eta))
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    out = sampler._sample(mu.float(), torch.full((n,), sampler.scfg.fixed_start_index), eta_t, gens, None, keep_first)
    return out.images.double(), first["x_t"], prior


def _faces(real_lq, n=2):
    return real_lq[:n].double() * 0.25  # |mu| <= 0.25: the result is clamped only beyond 3 DATA_STD


def _ode_errors(config, mu, solver, step_counts):
    errors = []
    for steps in step_counts:
        result, x_start, prior = _gaussian_run(config, mu, steps, solver, 0.0, [1, 2])
        errors.append(float((result - prior.ode_solution(x_start, START_T)).abs().max()))
    return errors


def test_deterministic_solvers_converge_to_the_closed_form_at_their_order(tiny_config, real_lq):
    """Halving the step size divides DDIM's error by about 2 and 2M's by about 4 or more."""
    mu = _faces(real_lq)
    counts = (20, 40, 100, 200)
    ddim, two_m = (_ode_errors(tiny_config, mu, solver, counts) for solver in ("ddim", "dpmpp_2m"))
    for k in (0, 2):  # the doublings 20 -> 40 and 100 -> 200
        assert 1.6 < ddim[k] / ddim[k + 1] < 2.5, ddim
        assert two_m[k] / two_m[k + 1] > 3.0, two_m
    assert all(e2 < 0.75 * e1 for e1, e2 in zip(ddim, two_m)), (ddim, two_m)


@pytest.mark.parametrize("solver", SOLVERS)
def test_stochastic_steps_give_the_data_law(tiny_config, real_lq, solver):
    """eta = 1 (DDPM's posterior noise) with every step of the 1000-step process: the standardised result
    (x - mu) / s of every pixel is N(0, 1)."""
    mu = _faces(real_lq, 3)
    result, _, _ = _gaussian_run(tiny_config, mu, 1000, solver, 1.0, [3, 4, 5])
    z = ((result - mu) / DATA_STD).flatten()
    assert abs(float(z.mean())) < 0.03 and abs(float(z.std()) - 1.0) < 0.04, (float(z.mean()), float(z.std()))


def test_eta_is_per_image(tiny_config, real_lq):
    """A batch with eta 0 and eta 1 gives each image what a batch of its own eta gives."""
    mu = _faces(real_lq, 2)
    mixed, _, _ = _gaussian_run(tiny_config, mu, 20, "dpmpp_2m", torch.tensor([0.0, 1.0]), [1, 2])
    for j, eta in enumerate((0.0, 1.0)):
        alone, _, _ = _gaussian_run(tiny_config, mu, 20, "dpmpp_2m", eta, [1, 2])
        assert torch.allclose(mixed[j], alone[j], atol=1e-6)
    deterministic, _, _ = _gaussian_run(tiny_config, mu, 20, "dpmpp_2m", 0.0, [1, 2])
    assert not torch.allclose(mixed[1], deterministic[1], atol=1e-3), "eta 1 adds noise along the way"


def test_mixed_start_batch_equals_each_image_alone(tiny_config, real_lq):
    sampler = FaceRestoreSampler.from_config(tiny_config, ["sampler.solver=dpmpp_2m"])
    together = sampler.restore(real_lq, [5, 6, 7])
    assert len(set(together.start_index.tolist())) > 1, "the faces must start at different steps"
    assert len(set(together.eta.tolist())) > 1, "and have different (auto) etas"
    for j in range(real_lq.shape[0]):
        alone = sampler.restore(real_lq[j : j + 1], [5 + j]).images
        assert torch.allclose(together.images[j : j + 1], alone, atol=1e-5)


@pytest.mark.parametrize("eta", ["0", "auto"])
def test_two_m_converges_to_ddim_as_the_steps_grow(tiny_config, real_lq, eta):
    """DynFaceRestore (DSST starts, DGSA guidance toward the switching levels, per-image eta) with the
    analytic prior of the faces themselves: the 2M result approaches DDIM's as the steps grow."""
    gaps = []
    for steps in (100, 250, 1000):
        result = {}
        for solver in SOLVERS:
            sampler = FaceRestoreSampler.from_config(
                tiny_config,
                [f"diffusion.params.timestep_respacing=ddim{steps}", f"sampler.eta={eta}", f"sampler.solver={solver}"],
            )
            sampler.denoiser = GaussianPrior(real_lq.double() * 0.5, DATA_STD)
            result[solver] = sampler.restore(real_lq, [1, 2, 3]).images
        gaps.append(float((result["dpmpp_2m"] - result["ddim"]).abs().mean()))
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 0.5 * gaps[0], gaps


def test_callback_sees_every_step_and_the_guided_prediction(tiny_config, real_lq):
    sampler = FaceRestoreSampler.from_config(tiny_config, ["sampler.solver=dpmpp_2m"])
    steps = []
    out = sampler.restore(real_lq, [1, 2, 3], callback=steps.append)
    calls = torch.zeros(3, dtype=torch.long)
    for step in steps:
        calls[step.images] += 1
        assert step.x0.shape == step.x0_prior.shape == step.x_t.shape == step.sample.shape
        assert step.guidance_map.shape == (len(step.images), 1, RESOLUTION, RESOLUTION)
        assert step.t == int(sampler.timestep_map[step.index])
    assert torch.equal(calls, out.nfe)
    assert [s.index for s in steps] == list(range(int(out.start_index.max()), -1, -1))
    assert any(not torch.allclose(s.x0, s.x0_prior) for s in steps), "guidance changes the prediction"


def test_unknown_solver_is_a_config_error(tiny_config):
    with pytest.raises(ConfigError, match="sampler.solver"):
        FaceRestoreSampler.from_config(tiny_config, ["sampler.solver=euler"])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(1e-4, 0.9999), min_size=3, max_size=12, unique=True))
def test_extrapolation_coefficient_is_half_the_step_ratio(abar_values):
    """c_i = (lambda_{i-1} - lambda_i) / (2 (lambda_i - lambda_{i+1})) from a brute-force float64 lambda,
    0 for the last two steps and the largest index."""
    abar = np.sort(np.asarray(abar_values))[::-1].copy()  # index 0 is the least noisy
    prev = np.append(1.0, abar[:-1])
    coef = extrapolation_coefficients(abar, prev)
    lam = [0.5 * np.log(a / (1 - a)) for a in abar]
    assert coef[0] == coef[1] == coef[-1] == 0.0 and np.isinf(half_log_snr(prev)[0])
    for i in range(2, len(abar) - 1):
        assert coef[i] == pytest.approx((lam[i - 1] - lam[i]) / (2 * (lam[i] - lam[i + 1])), rel=1e-9)


def test_first_step_of_an_image_is_first_order():
    class Schedule:
        alphas_cumprod = np.array([0.99, 0.9, 0.5, 0.1])
        alphas_cumprod_prev = np.array([1.0, 0.99, 0.9, 0.5])

    solver = MultistepX0("dpmpp_2m", Schedule(), 2)
    x_first = torch.ones(2, 1, 2, 2)
    assert torch.equal(solver(x_first, torch.tensor([0, 1]), 3), x_first)
    x_second = torch.full((1, 1, 2, 2), 3.0)  # only image 1 runs; it extrapolates from its own last x0
    c = float(solver.coef[2])
    assert c > 0
    assert torch.allclose(solver(x_second, torch.tensor([1]), 2), x_second + c * (x_second - 1.0))


def test_reguide_pulls_the_update_closer_to_the_level(tiny_config, real_lq):
    """guidance.reguide guides the solver's x0 once more: blurring the result by sigma_1 reproduces y'_1
    better than one guidance per step (s = 1), for either solver; without guidance it changes nothing."""
    from data.blur import gaussian_blur

    base = ["sampler.num_levels=1", "sampler.eta=0"]

    def run(overrides):
        return FaceRestoreSampler.from_config(tiny_config, base + overrides).restore(real_lq, [0, 1, 2])

    def data_error(out):
        return (gaussian_blur(out.images, out.sigmas[:, 0]) - out.levels[0]).abs().mean().item()

    for solver in SOLVERS:
        once, twice = (
            run([f"sampler.solver={solver}", "sampler.guidance.mode=global", f"sampler.guidance.reguide={flag}"])
            for flag in ("false", "true")
        )
        assert data_error(twice) < 0.9 * data_error(once), solver
    plain, again = (
        run(["sampler.guidance.mode=none", f"sampler.guidance.reguide={flag}"]) for flag in ("false", "true")
    )
    assert torch.equal(plain.images, again.images)
