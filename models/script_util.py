"""Factory of the diffusion process from configuration keys (improved-diffusion / DifFace names)."""

from __future__ import annotations

from models import gaussian_diffusion as gd
from models.respace import SpacedDiffusion, space_timesteps


def create_gaussian_diffusion(
    *,
    steps: int = 1000,
    learn_sigma: bool = False,
    sigma_small: bool = False,
    noise_schedule: str = "linear",
    use_kl: bool = False,
    predict_xstart: bool = False,
    rescale_timesteps: bool = False,
    rescale_learned_sigmas: bool = False,
    timestep_respacing="",
) -> SpacedDiffusion:
    """A :class:`SpacedDiffusion` from ``diffusion.params``: ``learn_sigma`` -> LEARNED_RANGE (else FIXED_SMALL /
    FIXED_LARGE by ``sigma_small``), ``predict_xstart``, loss RESCALED_KL (``use_kl``) / RESCALED_MSE
    (``rescale_learned_sigmas``) / MSE, ``timestep_respacing`` as :func:`models.respace.space_timesteps`."""
    betas = gd.get_named_beta_schedule(noise_schedule, steps)
    if use_kl:
        loss_type = gd.LossType.RESCALED_KL
    elif rescale_learned_sigmas:
        loss_type = gd.LossType.RESCALED_MSE
    else:
        loss_type = gd.LossType.MSE
    if not timestep_respacing:
        timestep_respacing = [steps]
    if learn_sigma:
        var_type = gd.ModelVarType.LEARNED_RANGE
    else:
        var_type = gd.ModelVarType.FIXED_SMALL if sigma_small else gd.ModelVarType.FIXED_LARGE
    return SpacedDiffusion(
        use_timesteps=space_timesteps(steps, timestep_respacing),
        betas=betas,
        model_mean_type=gd.ModelMeanType.START_X if predict_xstart else gd.ModelMeanType.EPSILON,
        model_var_type=var_type,
        loss_type=loss_type,
        rescale_timesteps=rescale_timesteps,
    )
