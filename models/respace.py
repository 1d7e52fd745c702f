"""Timestep respacing (Nichol & Dhariwal 2021, Sec. 4): run a T-step diffusion on a subset of its steps.

The respaced process keeps the original alpha_bar at the kept steps: with kept steps s_0 < s_1 < ...,
beta'_i = 1 - abar(s_i) / abar(s_{i-1}). The model still sees ORIGINAL timesteps: the wrapper maps a
respaced index i to ``timestep_map[i] = s_i``.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Sequence, Set, Union

import numpy as np
import torch

from models.gaussian_diffusion import GaussianDiffusion


def space_timesteps(num_timesteps: int, section_counts: Union[str, int, Sequence[int]]) -> Set[int]:
    """The original timesteps to keep: ``"ddimN"`` (stride s giving exactly N steps 0, s, 2s, ...), or ``N`` /
    ``"N1,N2,..."`` / a list (equal sections of [0, T), Ni evenly spaced steps from section i, ends included)."""
    if isinstance(section_counts, int) and not isinstance(section_counts, bool):
        section_counts = [section_counts]
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            desired = int(section_counts[len("ddim") :])
            for stride in range(1, num_timesteps):
                if len(range(0, num_timesteps, stride)) == desired:
                    return set(range(0, num_timesteps, stride))
            raise ValueError(f"cannot create exactly {desired} steps with an integer stride out of {num_timesteps}")
        try:
            section_counts = [int(x) for x in section_counts.split(",")]
        except ValueError:
            raise ValueError(
                f"bad timestep_respacing {section_counts!r}: expected 'ddimN', 'N' or 'N1,N2,...'"
            ) from None
    size_per = num_timesteps // len(section_counts)
    extra = num_timesteps % len(section_counts)
    start_idx = 0
    all_steps = []
    for i, section_count in enumerate(section_counts):
        size = size_per + (1 if i < extra else 0)
        if not 1 <= section_count <= size:
            raise ValueError(f"cannot take {section_count} steps from a section of {size} steps")
        frac_stride = 1 if section_count <= 1 else (size - 1) / (section_count - 1)
        cur_idx = 0.0
        for _ in range(section_count):
            all_steps.append(start_idx + round(cur_idx))
            cur_idx += frac_stride
        start_idx += size
    return set(all_steps)


class SpacedDiffusion(GaussianDiffusion):
    """A :class:`GaussianDiffusion` on ``use_timesteps`` of the base ``betas``: methods take respaced indices, the
    model receives original timesteps (``timestep_map``); ``original_num_steps`` is the base T."""

    def __init__(self, use_timesteps, **kwargs):
        use_timesteps = sorted(set(int(t) for t in use_timesteps))
        base_betas = np.asarray(kwargs["betas"], dtype=np.float64)
        self.original_num_steps = len(base_betas)
        if not use_timesteps or use_timesteps[0] < 0 or use_timesteps[-1] >= self.original_num_steps:
            raise ValueError(f"use_timesteps must be a non-empty subset of [0, {self.original_num_steps - 1}]")
        base_alphas_cumprod = np.cumprod(1.0 - base_betas)
        kept = base_alphas_cumprod[use_timesteps]
        kwargs["betas"] = 1.0 - kept / np.append(1.0, kept[:-1])
        super().__init__(**kwargs)
        self.use_timesteps = set(use_timesteps)
        self.timestep_map = np.asarray(use_timesteps, dtype=np.int64)

    def model_x0(self, model, *args, **kwargs):  # every sampling step evaluates the model through here
        return super().model_x0(self._wrap_model(model), *args, **kwargs)

    def training_losses(self, model, *args, **kwargs):
        return super().training_losses(self._wrap_model(model), *args, **kwargs)

    def _wrap_model(self, model):
        if isinstance(model, _WrappedModel):
            return model
        return _WrappedModel(
            model, partial(self.on_device, "timestep_map"), self.rescale_timesteps, self.original_num_steps
        )

    def _scale_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        return t  # scaling happens in the wrapper, after mapping to original timesteps


class _WrappedModel:
    """Calls ``model(x, map[t] (* 1000 / T if rescale), **kwargs)`` for respaced indices t."""

    def __init__(
        self,
        model,
        timestep_map: Callable[[torch.device], torch.Tensor],
        rescale_timesteps: bool,
        original_num_steps: int,
    ):
        """``timestep_map(device)``: the original timestep of every respaced index, on that device."""
        self.model = model
        self.timestep_map = timestep_map
        self.rescale_timesteps = rescale_timesteps
        self.original_num_steps = original_num_steps

    def __call__(self, x: torch.Tensor, ts: torch.Tensor, **kwargs) -> torch.Tensor:
        new_ts = self.timestep_map(ts.device)[ts]
        if self.rescale_timesteps:
            new_ts = new_ts.float() * (1000.0 / self.original_num_steps)
        return self.model(x, new_ts, **kwargs)
