"""Gaussian diffusion (Ho et al. 2020; Nichol & Dhariwal 2021) and DDIM (Song et al. 2021), DifFace-compatible.

Schedules are float64 numpy arrays gathered per image, so a batch may hold images at different timesteps.
A sampling step is :meth:`GaussianDiffusion.model_x0` then :meth:`GaussianDiffusion.ddim_update`.
"""

from __future__ import annotations

import collections
import enum
import math
from typing import Callable, Dict, Iterator, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from models.losses import NATS_PER_BIT, discretized_gaussian_log_likelihood, normal_kl
from models.nn import mean_flat


def get_named_beta_schedule(schedule_name: str, num_diffusion_timesteps: int) -> np.ndarray:
    """float64 betas of a named schedule.

    ``linear``: Ho et al., linspace(1e-4 s, 0.02 s, T) with s = 1000 / T (so any T matches T=1000).
    ``cosine``: Nichol & Dhariwal eq. 17, abar(t) = cos^2(((t/T) + 0.008) / 1.008 * pi/2), beta <= 0.999."""
    if schedule_name == "linear":
        scale = 1000 / num_diffusion_timesteps
        return np.linspace(scale * 0.0001, scale * 0.02, num_diffusion_timesteps, dtype=np.float64)
    if schedule_name == "cosine":
        return betas_for_alpha_bar(num_diffusion_timesteps, lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2)
    raise ValueError(f"unknown beta schedule: {schedule_name!r} (expected 'linear' or 'cosine')")


def betas_for_alpha_bar(
    num_diffusion_timesteps: int, alpha_bar: Callable[[float], float], max_beta: float = 0.999
) -> np.ndarray:
    """Betas with prod(1 - beta) = alpha_bar(t/T) at t = 1..T: beta_i = min(1 - abar(i+1)/abar(i), max_beta)."""
    t = np.arange(num_diffusion_timesteps, dtype=np.float64)
    T = num_diffusion_timesteps
    ratio = np.array([alpha_bar((i + 1) / T) / alpha_bar(i / T) for i in t])
    return np.minimum(1 - ratio, max_beta)


class ModelMeanType(enum.Enum):
    """What the network predicts."""

    PREVIOUS_X = enum.auto()  # the posterior mean x_{t-1}
    START_X = enum.auto()  # x_0
    EPSILON = enum.auto()  # the noise


class ModelVarType(enum.Enum):
    """How the reverse-process variance is chosen (LEARNED_RANGE: Nichol & Dhariwal eq. 15)."""

    LEARNED = enum.auto()
    FIXED_SMALL = enum.auto()
    FIXED_LARGE = enum.auto()
    LEARNED_RANGE = enum.auto()


class LossType(enum.Enum):
    MSE = enum.auto()  # MSE (+ VB term when the variance is learned)
    RESCALED_MSE = enum.auto()  # same, VB term scaled by T/1000 (improved-diffusion's rescale_learned_sigmas)
    KL = enum.auto()  # the variational bound
    RESCALED_KL = enum.auto()  # the bound times T

    def is_vb(self) -> bool:
        return self in (LossType.KL, LossType.RESCALED_KL)


def extract_into_tensor(arr: torch.Tensor, timesteps: torch.Tensor, broadcast_shape: Sequence[int]) -> torch.Tensor:
    """``arr[timesteps]`` as float32 broadcast to ``broadcast_shape``; ``arr`` is a schedule on the device
    of ``timesteps`` (:meth:`GaussianDiffusion.on_device`)."""
    res = arr[timesteps].float()
    return res.reshape(res.shape + (1,) * (len(broadcast_shape) - res.ndim)).expand(broadcast_shape)


def ddim_step(
    x_t: torch.Tensor,
    pred_xstart: torch.Tensor,
    alpha_bar_t: torch.Tensor,
    alpha_bar_prev: torch.Tensor,
    eta: Union[float, torch.Tensor],
    noise: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """One DDIM update x_t -> x_prev (Song et al. 2021, eq. 12), a pure function.

        eps   = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)
        sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev)
        x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma noise

    ``alpha_bar_*`` and ``eta`` broadcast against ``x_t``; ``noise`` None only where sigma = 0."""
    eps = (x_t - torch.sqrt(alpha_bar_t) * pred_xstart) / torch.sqrt(1 - alpha_bar_t)
    sigma = eta * torch.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) * torch.sqrt(1 - alpha_bar_t / alpha_bar_prev)
    x_prev = torch.sqrt(alpha_bar_prev) * pred_xstart + torch.sqrt((1 - alpha_bar_prev - sigma**2).clamp(min=0)) * eps
    if noise is None:
        return x_prev
    return x_prev + sigma * noise


class GaussianDiffusion:
    """Forward process, reverse-process parameterisation, samplers and losses; ``betas`` float64 in (0, 1],
    ``rescale_timesteps`` feeds t * 1000 / T to the model."""

    def __init__(
        self,
        *,
        betas,
        model_mean_type: ModelMeanType,
        model_var_type: ModelVarType,
        loss_type: LossType,
        rescale_timesteps: bool = False,
    ):
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or not ((betas > 0).all() and (betas <= 1).all()):
            raise ValueError("betas must be a 1-D array with values in (0, 1]")
        self.model_mean_type = model_mean_type
        self.model_var_type = model_var_type
        self.loss_type = loss_type
        self.rescale_timesteps = rescale_timesteps
        self.betas = betas
        self.num_timesteps = int(betas.shape[0])
        # Original timestep of each step of this schedule (identity here; set by SpacedDiffusion).
        self.timestep_map = np.arange(self.num_timesteps, dtype=np.int64)

        alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(alphas, axis=0)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.alphas_cumprod_next = np.append(self.alphas_cumprod[1:], 0.0)
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.log_one_minus_alphas_cumprod = np.log(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1)
        # q(x_{t-1} | x_t, x_0) (Ho et al. eq. 6-7)
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        # the variance is 0 at t = 0: the log is clipped to the value at t = 1
        self.posterior_log_variance_clipped = np.log(np.append(self.posterior_variance[1], self.posterior_variance[1:]))
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - self.alphas_cumprod)
        # further per-step tables the methods index (kept, so that each is copied to a device once)
        self.one_minus_alphas_cumprod = 1.0 - self.alphas_cumprod
        self.log_betas = np.log(betas)
        self.fixed_large_variance = np.append(self.posterior_variance[1], betas[1:])
        self.fixed_large_log_variance = np.log(self.fixed_large_variance)
        self.recip_posterior_mean_coef1 = 1.0 / self.posterior_mean_coef1
        self.posterior_mean_coef2_over_coef1 = self.posterior_mean_coef2 / self.posterior_mean_coef1
        self._device_tables: Dict[Tuple[str, torch.device], torch.Tensor] = {}

    def on_device(self, name: str, device: torch.device) -> torch.Tensor:
        """The schedule array ``self.<name>`` as a tensor on ``device``, cached per device (no host-to-device copy
        per step)."""
        key = (name, torch.device(device))
        if key not in self._device_tables:
            self._device_tables[key] = torch.from_numpy(np.ascontiguousarray(getattr(self, name))).to(key[1])
        return self._device_tables[key]

    def extract(self, name: str, t: torch.Tensor, broadcast_shape: Sequence[int]) -> torch.Tensor:
        """:func:`extract_into_tensor` of the schedule ``self.<name>`` through the device cache."""
        return extract_into_tensor(self.on_device(name, t.device), t, broadcast_shape)

    # ----------------------------------------------------------------- forward process
    def q_mean_variance(self, x_start: torch.Tensor, t: torch.Tensor):
        """Mean, variance and log-variance of q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)."""
        mean = self.extract("sqrt_alphas_cumprod", t, x_start.shape) * x_start
        variance = self.extract("one_minus_alphas_cumprod", t, x_start.shape)
        log_variance = self.extract("log_one_minus_alphas_cumprod", t, x_start.shape)
        return mean, variance, log_variance

    def q_sample(self, x_start: torch.Tensor, t: torch.Tensor, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Draw x_t ~ q(x_t | x_0): sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise (t: (N,) step indices)."""
        if noise is None:
            noise = torch.randn_like(x_start)
        if noise.shape != x_start.shape:
            raise ValueError(f"noise shape {tuple(noise.shape)} != x_start shape {tuple(x_start.shape)}")
        return (
            self.extract("sqrt_alphas_cumprod", t, x_start.shape) * x_start
            + self.extract("sqrt_one_minus_alphas_cumprod", t, x_start.shape) * noise
        )

    def q_posterior_mean_variance(self, x_start: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0) (Ho et al. eq. 7)."""
        mean = (
            self.extract("posterior_mean_coef1", t, x_t.shape) * x_start
            + self.extract("posterior_mean_coef2", t, x_t.shape) * x_t
        )
        variance = self.extract("posterior_variance", t, x_t.shape)
        log_variance = self.extract("posterior_log_variance_clipped", t, x_t.shape)
        return mean, variance, log_variance

    # ----------------------------------------------------------------- reverse process
    def _scale_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        return t.float() * (1000.0 / self.num_timesteps) if self.rescale_timesteps else t

    def p_mean_variance(
        self,
        model,
        x: torch.Tensor,
        t: torch.Tensor,
        clip_denoised: bool = True,
        denoised_fn: Optional[Callable] = None,
        model_kwargs: Optional[dict] = None,
    ) -> dict:
        """Apply the model and return p(x_{t-1} | x_t) as a dict.

        Keys: ``mean``, ``variance``, ``log_variance``, ``pred_xstart`` (after denoised_fn and clipping),
        ``model_output`` (the raw output with the variance channels removed). For LEARNED_RANGE the model's
        extra channels v give log var = frac max_log + (1 - frac) min_log, frac = (v + 1) / 2, with min_log
        the clipped posterior log variance and max_log = log beta_t (Nichol & Dhariwal eq. 15)."""
        model_output, model_var_values, pred_xstart = self.model_x0(
            model, x, t, clip_denoised, denoised_fn, model_kwargs
        )
        if self.model_var_type == ModelVarType.LEARNED:
            model_log_variance = model_var_values
            model_variance = torch.exp(model_log_variance)
        elif self.model_var_type == ModelVarType.LEARNED_RANGE:
            min_log = self.extract("posterior_log_variance_clipped", t, x.shape)
            max_log = self.extract("log_betas", t, x.shape)
            frac = (model_var_values + 1) / 2
            model_log_variance = frac * max_log + (1 - frac) * min_log
            model_variance = torch.exp(model_log_variance)
        elif self.model_var_type == ModelVarType.FIXED_LARGE:
            # beta_t, with the first entry set to the posterior variance for a better decoder NLL
            model_variance = self.extract("fixed_large_variance", t, x.shape)
            model_log_variance = self.extract("fixed_large_log_variance", t, x.shape)
        else:
            model_variance = self.extract("posterior_variance", t, x.shape)
            model_log_variance = self.extract("posterior_log_variance_clipped", t, x.shape)

        if self.model_mean_type == ModelMeanType.PREVIOUS_X:
            model_mean = model_output
        else:
            model_mean, _, _ = self.q_posterior_mean_variance(pred_xstart, x, t)
        return {
            "mean": model_mean,
            "variance": model_variance,
            "log_variance": model_log_variance,
            "pred_xstart": pred_xstart,
            "model_output": model_output,
        }

    def model_x0(
        self,
        model,
        x: torch.Tensor,
        t: torch.Tensor,
        clip_denoised: bool = True,
        denoised_fn: Optional[Callable] = None,
        model_kwargs: Optional[dict] = None,
    ):
        """``(model_output, variance channels or None, x0)`` of the network at (x, t), x0 after ``denoised_fn`` and
        clipping: what a DDIM step needs."""
        model_output = model(x, self._scale_timesteps(t), **(model_kwargs or {}))
        model_var_values = None
        if self.model_var_type in (ModelVarType.LEARNED, ModelVarType.LEARNED_RANGE):
            channels = x.shape[1]
            if model_output.shape[1] != 2 * channels:
                raise ValueError(
                    f"learned variance needs {2 * channels} output channels, the model gives {model_output.shape[1]}"
                )
            model_output, model_var_values = torch.split(model_output, channels, dim=1)

        if self.model_mean_type == ModelMeanType.PREVIOUS_X:
            x0 = self._predict_xstart_from_xprev(x, t, model_output)
        elif self.model_mean_type == ModelMeanType.START_X:
            x0 = model_output
        else:
            x0 = self._predict_xstart_from_eps(x, t, model_output)
        if denoised_fn is not None:
            x0 = denoised_fn(x0)
        if clip_denoised:
            x0 = x0.clamp(-1, 1)
        return model_output, model_var_values, x0

    def _predict_xstart_from_eps(self, x_t, t, eps):
        return (
            self.extract("sqrt_recip_alphas_cumprod", t, x_t.shape) * x_t
            - self.extract("sqrt_recipm1_alphas_cumprod", t, x_t.shape) * eps
        )

    def _predict_xstart_from_xprev(self, x_t, t, xprev):
        return (
            self.extract("recip_posterior_mean_coef1", t, x_t.shape) * xprev
            - self.extract("posterior_mean_coef2_over_coef1", t, x_t.shape) * x_t
        )

    def _predict_eps_from_xstart(self, x_t, t, pred_xstart):
        return (self.extract("sqrt_recip_alphas_cumprod", t, x_t.shape) * x_t - pred_xstart) / self.extract(
            "sqrt_recipm1_alphas_cumprod", t, x_t.shape
        )

    # ----------------------------------------------------------------- ancestral sampling
    def p_sample(
        self,
        model,
        x: torch.Tensor,
        t: torch.Tensor,
        clip_denoised: bool = True,
        denoised_fn: Optional[Callable] = None,
        model_kwargs: Optional[dict] = None,
        noise: Optional[torch.Tensor] = None,
    ) -> dict:
        """One ancestral step x_{t-1} = mean + exp(log_var / 2) noise (none at t = 0): ``{"sample", "pred_xstart"}``."""
        out = self.p_mean_variance(model, x, t, clip_denoised, denoised_fn, model_kwargs)
        if noise is None:
            noise = torch.randn_like(x)
        nonzero_mask = (t != 0).float().reshape(-1, *([1] * (x.ndim - 1)))
        sample = out["mean"] + nonzero_mask * torch.exp(0.5 * out["log_variance"]) * noise
        return {"sample": sample, "pred_xstart": out["pred_xstart"]}

    def p_sample_loop(self, model, shape, **kwargs) -> torch.Tensor:
        """Final sample of :meth:`p_sample_loop_progressive` (same arguments)."""
        return _last(self.p_sample_loop_progressive(model, shape, **kwargs))["sample"]

    def p_sample_loop_progressive(
        self,
        model,
        shape,
        noise: Optional[torch.Tensor] = None,
        start_index: Optional[int] = None,
        x_start_t: Optional[torch.Tensor] = None,
        clip_denoised: bool = True,
        denoised_fn: Optional[Callable] = None,
        model_kwargs: Optional[dict] = None,
        device=None,
        progress: bool = False,
    ) -> Iterator[dict]:
        """Yield the output of :meth:`p_sample` at every step (see :meth:`_progressive` for the start)."""

        def step(img, t):
            return self.p_sample(model, img, t, clip_denoised, denoised_fn, model_kwargs)

        yield from self._progressive(step, shape, noise, start_index, x_start_t, device, progress)

    # ----------------------------------------------------------------- DDIM sampling
    def ddim_update(
        self,
        x: torch.Tensor,
        x0: torch.Tensor,
        t: torch.Tensor,
        eta: Union[float, torch.Tensor] = 0.0,
        noise: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """:func:`ddim_step` from step index ``t`` ((N,) long, may differ per image) to ``t - 1`` with the given
        ``x0``; ``eta`` a float or an (N,) tensor (one eta per image), ``noise`` N(0, I) when not given."""
        if isinstance(eta, torch.Tensor):
            if eta.numel() != x.shape[0]:
                raise ValueError(f"eta has {eta.numel()} values for a batch of {x.shape[0]} images")
            eta = eta.to(device=x.device, dtype=torch.float32).reshape(-1, *([1] * (x.ndim - 1)))
        if noise is None:
            noise = torch.randn_like(x)
        return ddim_step(
            x,
            x0,
            self.extract("alphas_cumprod", t, x.shape),
            self.extract("alphas_cumprod_prev", t, x.shape),
            eta,
            noise,
        )

    def ddim_sample(
        self,
        model,
        x: torch.Tensor,
        t: torch.Tensor,
        clip_denoised: bool = True,
        denoised_fn: Optional[Callable] = None,
        model_kwargs: Optional[dict] = None,
        eta: Union[float, torch.Tensor] = 0.0,
        noise: Optional[torch.Tensor] = None,
    ) -> dict:
        """One DDIM step: :meth:`model_x0` then :meth:`ddim_update`. Returns ``{"sample", "pred_xstart"}``."""
        x0 = self.model_x0(model, x, t, clip_denoised, denoised_fn, model_kwargs)[2]
        return {"sample": self.ddim_update(x, x0, t, eta, noise), "pred_xstart": x0}

    def ddim_sample_loop(self, model, shape, **kwargs) -> torch.Tensor:
        """Final sample of :meth:`ddim_sample_loop_progressive` (same arguments)."""
        return _last(self.ddim_sample_loop_progressive(model, shape, **kwargs))["sample"]

    def ddim_sample_loop_progressive(
        self,
        model,
        shape,
        noise: Optional[torch.Tensor] = None,
        start_index: Optional[int] = None,
        x_start_t: Optional[torch.Tensor] = None,
        clip_denoised: bool = True,
        denoised_fn: Optional[Callable] = None,
        model_kwargs: Optional[dict] = None,
        device=None,
        progress: bool = False,
        eta: Union[float, torch.Tensor] = 0.0,
    ) -> Iterator[dict]:
        """Yield the output of :meth:`ddim_sample` at every step (see :meth:`_progressive` for the start)."""

        def step(img, t):
            return self.ddim_sample(model, img, t, clip_denoised, denoised_fn, model_kwargs, eta)

        yield from self._progressive(step, shape, noise, start_index, x_start_t, device, progress)

    def _progressive(self, step, shape, noise, start_index, x_start_t, device, progress) -> Iterator[dict]:
        """Sampling loop over step indices start_index, ..., 0: from ``noise`` at T - 1, or from ``x_start_t`` at
        ``start_index`` = k of this (respaced) schedule with exactly k + 1 model evaluations; each dict carries ``t``.
        """
        if start_index is None:
            if x_start_t is not None:
                raise ValueError("x_start_t is given without start_index (the step it was drawn at)")
            start_index = self.num_timesteps - 1
            img = noise
        else:
            if x_start_t is None:
                raise ValueError("start_index needs x_start_t, the sample at that step")
            if noise is not None:
                raise ValueError("give either noise (start at T - 1) or start_index + x_start_t, not both")
            img = x_start_t
        if not 0 <= int(start_index) < self.num_timesteps:
            raise ValueError(f"start_index {start_index} outside [0, {self.num_timesteps - 1}]")
        if device is None:
            device = img.device if img is not None else torch.device("cpu")
        if img is None:
            img = torch.randn(*shape, device=device)
        if tuple(img.shape) != tuple(shape):
            raise ValueError(f"starting sample has shape {tuple(img.shape)}, expected {tuple(shape)}")
        indices = range(int(start_index), -1, -1)
        if progress:
            from tqdm.auto import tqdm

            indices = tqdm(indices)
        for i in indices:
            t = torch.full((shape[0],), i, device=device, dtype=torch.long)
            with torch.no_grad():
                out = step(img, t)
            out["t"] = t
            yield out
            img = out["sample"]

    # ----------------------------------------------------------------- training
    def _vb_terms_bpd(
        self,
        model,
        x_start: torch.Tensor,
        x_t: torch.Tensor,
        t: torch.Tensor,
        clip_denoised: bool = True,
        model_kwargs: Optional[dict] = None,
    ) -> dict:
        """Term of the variational bound at t, in bits per dimension: KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t))
        for t > 0 and the discretised decoder NLL -log p(x_0|x_1) at t = 0.

        Returns ``{"output": (N,) bpd, "pred_xstart": ...}``."""
        true_mean, _, true_log_variance = self.q_posterior_mean_variance(x_start, x_t, t)
        out = self.p_mean_variance(model, x_t, t, clip_denoised=clip_denoised, model_kwargs=model_kwargs)
        kl = mean_flat(normal_kl(true_mean, true_log_variance, out["mean"], out["log_variance"])) / NATS_PER_BIT
        decoder_nll = -discretized_gaussian_log_likelihood(
            x_start, means=out["mean"], log_scales=0.5 * out["log_variance"]
        )
        decoder_nll = mean_flat(decoder_nll) / NATS_PER_BIT
        return {"output": torch.where(t == 0, decoder_nll, kl), "pred_xstart": out["pred_xstart"]}

    def training_losses(
        self,
        model,
        x_start: torch.Tensor,
        t: torch.Tensor,
        model_kwargs: Optional[dict] = None,
        noise: Optional[torch.Tensor] = None,
    ) -> dict:
        """Per-image losses at step indices ``t`` (Nichol & Dhariwal 2021, L_hybrid): ``mse`` against eps / x_0 / the
        posterior mean, plus ``vb`` for a learned variance with the mean detached (x T/1000 for RESCALED_MSE), or the
        bound (x T for RESCALED_KL); a dict of (N,) tensors with ``loss``."""
        model_kwargs = model_kwargs or {}
        if noise is None:
            noise = torch.randn_like(x_start)
        x_t = self.q_sample(x_start, t, noise=noise)
        terms = {}
        if self.loss_type.is_vb():
            terms["loss"] = self._vb_terms_bpd(model, x_start, x_t, t, clip_denoised=False, model_kwargs=model_kwargs)[
                "output"
            ]
            if self.loss_type == LossType.RESCALED_KL:
                terms["loss"] = terms["loss"] * self.num_timesteps
            return terms

        model_output = model(x_t, self._scale_timesteps(t), **model_kwargs)
        if self.model_var_type in (ModelVarType.LEARNED, ModelVarType.LEARNED_RANGE):
            C = x_t.shape[1]
            if model_output.shape[1] != 2 * C:
                raise ValueError(
                    f"learned variance needs {2 * C} output channels, the model gives {model_output.shape[1]}"
                )
            model_output, model_var_values = torch.split(model_output, C, dim=1)
            frozen_out = torch.cat([model_output.detach(), model_var_values], dim=1)
            terms["vb"] = self._vb_terms_bpd(lambda *args, **kwargs: frozen_out, x_start, x_t, t, clip_denoised=False)[
                "output"
            ]
            if self.loss_type == LossType.RESCALED_MSE:
                terms["vb"] = terms["vb"] * (self.num_timesteps / 1000.0)
        if self.model_mean_type == ModelMeanType.PREVIOUS_X:
            target = self.q_posterior_mean_variance(x_start, x_t, t)[0]
        elif self.model_mean_type == ModelMeanType.START_X:
            target = x_start
        else:
            target = noise
        terms["mse"] = mean_flat((target - model_output) ** 2)
        terms["loss"] = terms["mse"] + terms.get("vb", 0.0)
        return terms


def _last(iterator: Iterator[dict]) -> dict:
    last = collections.deque(iterator, maxlen=1)
    if not last:
        raise RuntimeError("the sampling loop produced no step")
    return last[0]
