"""One sampler for RM0, DifFace and DynFaceRestore (docs/method.md section 9).

DifFace: x0 = RM0(y), x_k = q_sample(x0, k) at a fixed start (t = 400), DDIM with a fixed eta, no guidance.
DynFaceRestore, per image:
    DBLM:  levels (y'_k, sigma_k), sigma_1 = sigma_hat > sigma_2 > ...; DSST: t_k = table(sigma_k), start at
           the first respaced index with timestep >= t_1 from q_sample(y'_1, start);
    step:  x0_hat (prior) -> x0_tilde (closed form toward the sharpest active level, active once t <= t_k)
           -> x0 = x0_hat + s (x0_tilde - x0_hat), s none / global / DGSA map (fresh every ``dgsa_every``
           steps) -> solver's D (ddim | dpmpp_2m; guided again with ``reguide``) -> DDIM update -> callback;
    eta:   "auto" = clamp(sigma_512 / 10, 0, 1), or fixed.
A batch may mix starts: the UNet runs only on started images (start + 1 evaluations each); one noise
generator per image makes a result independent of its batch.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from omegaconf import DictConfig

from DiffBIR.dblm import DBLM
from DiffBIR.zero_shot import KIND as ZERO_SHOT
from DiffBIR.zero_shot import ZeroShotDBLM
from models.dsst import DSSTTable
from models.guidance import LevelSpectra, Scale, batch_pad, blend
from models.solvers import MultistepX0
from sample_config import load_sample_config, parse_eta
from utils.config import ConfigError, instantiate
from utils.model_factory import build_model, resolve_path

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}  # of the UNet trunk

WEIGHT_HINTS = {
    "model": "the DifFace prior iddpm_ffhq512_ema500000.pth (DifFace release V1.0) belongs at the ckpt_path "
    "of the config's model section: `python scripts/download_weights.py` fetches it (weights/README.md)",
    "restorer": "the DifFace restorer swinir_restoration512_L1.pth (DifFace release V1.0) belongs at the "
    "ckpt_path of the config's restorer section: `python scripts/download_weights.py` fetches it "
    "(weights/README.md)",
    "dgsa": "train DGSA with `torchrun main.py --cfg_path configs/training/uncertainty.yaml` (README, training)",
}


@dataclass
class SampleOutput:
    """Restored images (N,C,H,W in [-1,1]) and what each image went through."""

    images: torch.Tensor
    start_index: torch.Tensor  # (N,) respaced start index
    start_t: torch.Tensor  # (N,) original timestep of the start
    nfe: torch.Tensor  # (N,) UNet evaluations spent on each image
    eta: torch.Tensor  # (N,)
    sigma_hat: Optional[torch.Tensor] = None  # (N,) DBLM estimate
    sigmas: Optional[torch.Tensor] = None  # (N,K) level sigmas
    level_t: Optional[torch.Tensor] = None  # (N,K) DSST step of every level
    levels: Optional[List[torch.Tensor]] = None  # K tensors (N,C,H,W): blurred images y'_k
    source: Optional[torch.Tensor] = None  # the image that was diffused (RM0 output or y'_1)
    guidance_map: Optional[torch.Tensor] = None  # (N,1,H,W) mean scale s over the guided steps
    x0_history: List[Dict[str, torch.Tensor]] = field(default_factory=list)


@dataclass
class SamplerStep:
    """What a per-step callback of :meth:`FaceRestoreSampler.restore` receives, after the step from
    respaced ``index`` to ``index - 1`` (one UNet evaluation of each image in ``images``)."""

    index: int  # respaced index of the step
    t: int  # its original timestep
    images: torch.Tensor  # (M,) positions in the batch of the images that ran the step
    x_t: torch.Tensor  # (M,C,H,W) their samples before the step
    x0_prior: torch.Tensor  # the prior's clipped x0 prediction
    x0: torch.Tensor  # the guided x0 (the prior's without guidance), before the solver
    guidance_map: Optional[torch.Tensor]  # (M,1,H,W) the scale s of this step; None without guidance
    sample: torch.Tensor  # their samples after the step


StepCallback = Callable[[SamplerStep], None]


def auto_eta(sigma: torch.Tensor, resolution: int, divisor: float) -> torch.Tensor:
    """The paper's sample-wise eta: clamp(sigma_512 / divisor, 0, 1), sigma_512 = sigma * 512 / resolution."""
    return (sigma * (512.0 / resolution) / divisor).clamp(0.0, 1.0)


class FaceRestoreSampler:
    """Runs DifFace or DynFaceRestore (and their ablations) with the networks of one sampling config."""

    def __init__(self, cfg: DictConfig, device: torch.device | str = "cpu", precision: str = "fp32"):
        """``precision``: the UNet trunk's dtype (:data:`PRECISIONS`; models.unet.UNetModel.convert_to).
        fp16 and bf16 run on CUDA only (warned and sampled in float32 on the CPU); DBLM, DGSA and the
        guidance stay float32."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        self.cfg = cfg
        self.scfg = cfg.sampler
        self.device = torch.device(device)
        self.resolution = int(cfg.resolution)
        self.method = self.scfg.method
        self.diffusion = instantiate(cfg.diffusion)
        self.timestep_map = self.diffusion.on_device("timestep_map", self.device)
        self.model = build_model(cfg.model, self.device, WEIGHT_HINTS["model"])
        if precision != "fp32" and self.device.type != "cuda":
            warnings.warn(
                f"precision {precision} ignored: half precision runs on CUDA only; sampling in float32 "
                f"on the {self.device.type}",
                stacklevel=2,
            )
            precision = "fp32"
        self.precision = precision
        if precision != "fp32":
            self.model.convert_to(PRECISIONS[precision])
        self.restorer = self.dblm = self.dsst = self.dgsa = None
        if self.method in ("difface", "rm0"):
            if cfg.restorer is None:
                raise ConfigError(f"method {self.method} needs a 'restorer' section (RM0) in the config")
            self.restorer = build_model(cfg.restorer, self.device, WEIGHT_HINTS["restorer"])
        else:
            self._build_dynfacerestore_parts(cfg)
        if self.scfg.channels_last:  # the UNet's convolutions then run NHWC (same values up to float rounding)
            self.model.to(memory_format=torch.channels_last)
        compile_cfg = self.scfg.compile
        # what sampling calls: the UNet, or its compiled form (compiled lazily, on the first call per batch size)
        self.denoiser = (
            torch.compile(self.model, backend=compile_cfg.backend, mode=compile_cfg.mode, dynamic=False)
            if compile_cfg.enabled
            else self.model
        )

    @classmethod
    def from_config(cls, path, overrides: Optional[Sequence[str]] = None, device="cpu", precision="fp32"):
        return cls(load_sample_config(path, overrides), device=device, precision=precision)

    def _build_dynfacerestore_parts(self, cfg: DictConfig) -> None:
        if cfg.dblm is None:
            raise ConfigError("method dynfacerestore needs a 'dblm' section in the config")
        if cfg.dblm.get("kind", "learned") == ZERO_SHOT:  # the levels from RM0 alone (DiffBIR/zero_shot.py)
            if cfg.restorer is None:
                raise ConfigError("dblm.kind = zero_shot needs a 'restorer' section (RM0) in the config")
            self.restorer = build_model(cfg.restorer, self.device, WEIGHT_HINTS["restorer"])
            self.dblm = ZeroShotDBLM.from_config(cfg.dblm, self.restorer)
        else:
            self.dblm = DBLM.from_config(cfg.dblm).to(self.device).eval()
        needs_table = self.scfg.start == "dsst"
        if cfg.dsst is not None:
            self.dsst = DSSTTable.load(resolve_path(cfg.dsst.table_path))
        elif needs_table:
            raise ConfigError("sampler.start = dsst needs a 'dsst.table_path' in the config")
        if self.scfg.guidance.mode == "dgsa":
            if cfg.dgsa is None:
                raise ConfigError("sampler.guidance.mode = dgsa needs a 'dgsa' section in the config")
            self.dgsa = build_model(cfg.dgsa, self.device, WEIGHT_HINTS["dgsa"])

    # ------------------------------------------------------------------ public API
    @torch.no_grad()
    def restore(
        self, lq: torch.Tensor, seeds: Sequence[int], eta: Any = None, callback: Optional[StepCallback] = None
    ) -> SampleOutput:
        """Restore ``lq`` ((N,3,R,R) in [-1,1]) with one seed per image; ``eta`` overrides the config,
        ``callback(step)`` gets a :class:`SamplerStep` after every step."""
        if lq.ndim != 4 or lq.shape[1] != 3 or tuple(lq.shape[-2:]) != (self.resolution, self.resolution):
            raise ValueError(f"expected (N, 3, {self.resolution}, {self.resolution}) input, got {tuple(lq.shape)}")
        if len(seeds) != lq.shape[0]:
            raise ValueError(f"need one seed per image: {len(seeds)} seeds for {lq.shape[0]} images")
        lq = lq.to(self.device, torch.float32)
        gens = [torch.Generator(device=self.device).manual_seed(int(s)) for s in seeds]
        fixed_eta = parse_eta(self.scfg.eta if eta is None else eta)
        if self.method == "rm0":
            return self._restore_rm0(lq)
        if self.method == "difface":
            return self._restore_difface(lq, gens, fixed_eta, callback)
        return self._restore_dynamic(lq, gens, fixed_eta, callback)

    # ------------------------------------------------------------------ methods
    def _restore_rm0(self, lq) -> SampleOutput:
        restored = self.restorer.restore(lq).clamp(-1, 1)
        n = lq.shape[0]
        none = torch.full((n,), -1, dtype=torch.long, device=self.device)
        return SampleOutput(
            images=restored,
            start_index=none,
            start_t=none,
            nfe=torch.zeros_like(none),
            eta=torch.zeros(n, device=self.device),
            source=restored,
        )

    def _restore_difface(self, lq, gens, fixed_eta, callback) -> SampleOutput:
        source = self.restorer.restore(lq).clamp(-1, 1)
        n = lq.shape[0]
        start = torch.full((n,), self._check_index(self.scfg.fixed_start_index), dtype=torch.long, device=self.device)
        eta = torch.full((n,), self.scfg.difface_eta if fixed_eta is None else fixed_eta, device=self.device)
        out = self._sample(source, start, eta, gens, None, callback)
        out.source = source
        return out

    def _restore_dynamic(self, lq, gens, fixed_eta, callback) -> SampleOutput:
        levels_out = self.dblm(lq)
        k = levels_out.sigmas.shape[1] if self.scfg.num_levels is None else int(self.scfg.num_levels)
        if not 1 <= k <= levels_out.sigmas.shape[1]:
            raise ConfigError(f"sampler.num_levels = {k}, but DBLM gives {levels_out.sigmas.shape[1]} levels")
        sigmas = levels_out.sigmas[:, :k].float()
        levels = [img.float() for img in levels_out.images[:k]]
        level_t = self._level_steps(sigmas)
        n = lq.shape[0]
        if self.scfg.start == "dsst":
            start = self.dsst.respaced_index(level_t[:, 0], self.timestep_map)
        else:
            start = torch.full(
                (n,), self._check_index(self.scfg.fixed_start_index), dtype=torch.long, device=self.device
            )
        if fixed_eta is None:
            eta = auto_eta(levels_out.sigma_hat.float(), self.resolution, self.scfg.eta_sigma_divisor)
        else:
            eta = torch.full((n,), fixed_eta, device=self.device)
        guide = None if self.scfg.guidance.mode == "none" else _Guide(self, levels, sigmas, level_t)
        out = self._sample(levels[0], start, eta, gens, guide, callback)
        out.sigma_hat, out.sigmas, out.level_t, out.levels, out.source = (
            levels_out.sigma_hat,
            sigmas,
            level_t,
            levels,
            levels[0],
        )
        if guide is not None:
            out.guidance_map = guide.mean_map(out.nfe)
        return out

    # ------------------------------------------------------------------ the shared loop
    def _sample(
        self, source, start, eta, gens, guide: Optional["_Guide"], callback: Optional[StepCallback]
    ) -> SampleOutput:
        """DDIM from each image's own ``start`` (respaced index) down to 0 (module docstring). The images that
        run a step are chosen on the host from the start indices, read once: no device synchronisation."""
        n, starts, every = source.shape[0], start.tolist(), int(self.scfg.x0_every)
        x = self.diffusion.q_sample(source, start, noise=self._noise(gens, range(n), source.shape[1:]))
        nfe = torch.zeros(n, dtype=torch.long, device=self.device)
        index, solver, history = _IndexCache(self.device), MultistepX0(self.scfg.solver, self.diffusion, n), []
        for i in range(max(starts), -1, -1):
            running = [j for j in range(n) if starts[j] >= i]
            idx, t = index(running), torch.full((len(running),), i, dtype=torch.long, device=self.device)
            x_t, t_orig = x[idx], self.timestep_map[t]
            x0_prior = self.diffusion.model_x0(self.denoiser, x_t, t, self.scfg.clip_denoised)[2]
            x0, restart = x0_prior, None
            if guide is not None:
                x0_tilde = guide.closed_form(x0_prior, idx, i)
                fresh = [p for p, j in enumerate(running) if guide.due(starts[j] - i)]
                scale = guide.scale(x0_prior, x0_tilde, idx, i, t_orig, fresh)
                x0, restart = guided_x0(x0_prior, x0_tilde, scale), guide.switched(running, i)
            x0_update = solver(x0, idx, i, restart)
            if guide is not None and self.scfg.guidance.reguide:  # the step's scale, no new DGSA map
                x0_update = guided_x0(x0_update, guide.closed_form(x0_update, idx, i), scale)
            sample = self.diffusion.ddim_update(x_t, x0_update, t, eta[idx], self._noise(gens, running, x.shape[1:]))
            x[idx] = sample.to(x.dtype)
            nfe[idx] += 1
            if every > 0 and i % every == 0:
                history.append({"index": i, "images": idx.cpu(), "x0": x0.float().cpu()})
            if callback is not None:
                gmap = None if guide is None else guide.step_map(idx)
                callback(SamplerStep(i, int(self.timestep_map[i]), idx, x_t, x0_prior, x0, gmap, sample))
        out = SampleOutput(x.clamp(-1, 1), start, self.timestep_map[start], nfe, eta)
        out.x0_history = history
        return out

    def _noise(self, gens, indices, shape) -> torch.Tensor:
        return torch.stack([torch.randn(tuple(shape), generator=gens[j], device=self.device) for j in indices])

    def _level_steps(self, sigmas: torch.Tensor) -> torch.Tensor:
        """(N,K) original DSST step of every level; without a table every level is active from the start."""
        if self.dsst is None:
            return torch.full_like(sigmas, self.diffusion.original_num_steps, dtype=torch.long)
        return self.dsst.start_step(sigmas, resolution=self.resolution)

    def _check_index(self, index: int) -> int:
        if not 0 <= int(index) < self.timestep_map.numel():
            raise ConfigError(
                f"sampler.fixed_start_index = {index} outside [0, {self.timestep_map.numel() - 1}] for this respacing"
            )
        return int(index)


def guided_x0(x0_hat: torch.Tensor, x0_tilde: torch.Tensor, scale: Scale) -> torch.Tensor:
    """clamp(x0_hat + s (x0_tilde - x0_hat), -1, 1) in float32, in the dtype of ``x0_hat``."""
    return blend(x0_hat.float(), x0_tilde, scale).clamp(-1, 1).to(x0_hat.dtype)


class _IndexCache:
    """Device index tensors of host index lists, made once per distinct list (no copy per step)."""

    def __init__(self, device: torch.device):
        self.device, self.made = device, {}

    def __call__(self, positions: Sequence[int]) -> torch.Tensor:
        key = tuple(positions)
        if key not in self.made:
            self.made[key] = torch.tensor(key, dtype=torch.long, device=self.device)
        return self.made[key]


class _Guide:
    """Guidance of one batch: the levels' spectra and each image's guiding level per step (made once), DGSA maps
    (fresh on an image's first step and every ``guidance.dgsa_every`` steps, reused in between)."""

    def __init__(self, sampler: FaceRestoreSampler, levels, sigmas, level_t):
        self.sampler = sampler
        self.gcfg = sampler.scfg.guidance
        self.lam = float(self.gcfg.lam)
        self.levels = torch.stack(levels, dim=1)  # (N,K,C,H,W)
        pad = batch_pad(sigmas, sampler.resolution, float(self.gcfg.pad_sigma_512))
        self.spectra = LevelSpectra(self.levels.float(), sigmas, pad=pad)
        self.every = int(self.gcfg.dgsa_every)
        self.index = _IndexCache(sigmas.device)
        # (I, N, K): level k of image n guides at respaced index i once t_i <= its DSST step; level 1 always
        self.active = sampler.timestep_map.view(-1, 1, 1) <= level_t.unsqueeze(0)
        self.active[..., 0] = True
        self.sharpest = self.active.long().cumsum(-1).argmax(-1)  # (I, N): the last active level
        self.sharpest_host = self.sharpest.cpu()
        n, _, _, h, w = self.levels.shape
        self.last_map = torch.ones(n, 1, h, w, device=sigmas.device)  # the last DGSA map of every image
        self.map_sum = torch.zeros(n, 1, h, w, device=sigmas.device)  # sum over the steps each map serves

    def due(self, steps_done: int) -> bool:
        """Whether DGSA runs at an image's step ``steps_done`` (0 = its first step)."""
        return steps_done % self.every == 0

    def closed_form(self, x0_hat: torch.Tensor, idx: torch.Tensor, index: int) -> torch.Tensor:
        """x0_tilde (float32) of the images ``idx`` at respaced ``index``: argmin_x sum_k w_k ||G_k * x - y'_k||^2
        + lam ||x - x0_hat||^2 over their sharpest active level (or all active levels), models/guidance.py."""
        x0 = x0_hat.float()
        if self.gcfg.combine == "all":
            return self.spectra.solve(x0, self.active[index, idx].float(), self.lam, idx)
        return self.spectra.solve_level(x0, self.sharpest[index, idx], self.lam, idx)

    def scale(
        self,
        x0_hat: torch.Tensor,
        x0_tilde: torch.Tensor,
        idx: torch.Tensor,
        index: int,
        t_orig: torch.Tensor,
        fresh: Sequence[int],
    ) -> Scale:
        """s of the images ``idx``: the global scale, or their last DGSA maps (M,1,H,W), made anew for the
        positions ``fresh`` of ``idx`` (:meth:`due`); a new map serves its image's next min(every, index + 1)
        steps."""
        if self.gcfg.mode == "global":
            return float(self.gcfg.global_scale)
        if fresh:
            pick = self.index(fresh) if len(fresh) < idx.numel() else slice(None)
            images = idx[pick]
            new = self.sampler.dgsa.guidance_scale(
                x0_hat.float()[pick], x0_tilde[pick], self.levels[images, self.sharpest[index, images]], t_orig[pick]
            )
            self.last_map[images] = new
            self.map_sum[images] += min(self.every, index + 1) * new
        return self.last_map[idx]

    def switched(self, images: Sequence[int], index: int) -> torch.Tensor:
        """(M,) bool on the host: whether the sharpest active level of each of ``images`` at respaced
        ``index`` differs from the one at ``index + 1`` (the guided x0 jumps there)."""
        if index + 1 >= self.sharpest_host.shape[0]:
            return torch.zeros(len(images), dtype=torch.bool)
        rows = self.sharpest_host[index : index + 2, list(images)]
        return rows[0] != rows[1]

    def step_map(self, idx: torch.Tensor) -> torch.Tensor:
        """(M,1,H,W) the scale s that the images ``idx`` used at the step just taken."""
        if self.gcfg.mode == "global":
            return torch.full_like(self.last_map[idx], float(self.gcfg.global_scale))
        return self.last_map[idx]

    def mean_map(self, steps: torch.Tensor) -> torch.Tensor:
        """(N,1,H,W) each image's guidance scale s averaged over its ``steps`` (N,) guided steps (its NFE:
        the maps made for an image serve every one of its steps exactly once)."""
        if self.gcfg.mode == "global":
            return torch.full_like(self.map_sum, float(self.gcfg.global_scale))
        return self.map_sum / steps.clamp(min=1).view(-1, 1, 1, 1).to(self.map_sum.dtype)
