"""TrainerDGSA: the dynamic guidance-scaling adjuster (docs/method.md section 7; models/dgsa.py).

    torchrun --nproc_per_node=8 main.py --cfg_path configs/training/uncertainty.yaml --save_dir DIR

The frozen prior, DBLM, DSST table and guidance come from one sampling config (``sample_config``). A pair
(:class:`GuidedPairSampler`): y = degrade(x), levels (y'_k, sigma_k) = DBLM(y), k ~ U{1..K}, a respaced
index i at which the sampler guides with level k, x_t = q_sample(x or y'_1, i), x0_tilde =
closed_form_guidance(x0_hat, y'_k, sigma_k, lam), b = DGSA(x0_hat, x0_tilde, y'_k, t);
loss = laplace_nll(x - x0_tilde, b).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
from omegaconf import MISSING, DictConfig
from torch import nn
from torch.utils.data import DataLoader, Dataset

from data.datasets import FaceDataset
from data.degradation import load_degradation_config
from DiffBIR.dblm import DBLM
from models.dgsa import laplace_nll, scale_from_b
from models.dsst import DSSTTable, DSSTTableError
from models.guidance import batch_pad, blend, closed_form_guidance
from sampler import load_sample_config
from trainers.base import TrainerBase, TrainerConfig
from utils.config import ConfigError, instantiate
from utils.model_factory import build_model, resolve_path
from utils.tensor_psnr import psnr_tensor

PRIOR_HINT = "'model.ckpt_path' of the sample config must be the diffusion prior the sampler uses (weights/README.md)"


# ----------------------------------------------------------------------------------------- schema
@dataclass
class PairsSection:
    """How training pairs are drawn (module docstring); lam and clipping come from the sample config."""

    p_from_blur: float = 0.2  # probability of diffusing y'_1 instead of x


@dataclass
class DGSATrainerConfig(TrainerConfig):
    degradation: str = MISSING  # DegradationConfig YAML (blind degradation of the HQ faces)
    sample_config: str = MISSING  # configs/sample/*.yaml: the frozen diffusion, prior, dblm, dsst, lam
    sample_overrides: List[str] = field(default_factory=list)  # dot-list entries applied to sample_config
    pairs: PairsSection = field(default_factory=PairsSection)


# ----------------------------------------------------------------------------------------- pairs
@dataclass
class GuidedPair:
    """One batch of DGSA inputs and its target; images (N, C, H, W) in [-1, 1]."""

    x: torch.Tensor  # clean faces
    x0_hat: torch.Tensor  # prior's clipped prediction at x_t
    x0_tilde: torch.Tensor  # closed-form guided image
    y_k: torch.Tensor  # the level that guided
    sigma_k: torch.Tensor  # (N,) its blur
    level: torch.Tensor  # (N,) 0-based level index k - 1
    index: torch.Tensor  # (N,) respaced index i
    t: torch.Tensor  # (N,) original timestep timestep_map[i] (DGSA's input)
    from_blur: torch.Tensor  # (N,) bool: x_t diffused from y'_1

    @property
    def residual(self) -> torch.Tensor:
        return self.x - self.x0_tilde


class GuidedPairSampler:
    """The frozen prior, DBLM and DSST table, and the draw of training pairs (module docstring)."""

    def __init__(
        self,
        diffusion,
        prior: nn.Module,
        dblm: nn.Module,
        dsst,
        resolution: int,
        lam: float,
        p_from_blur: float,
        clip_denoised: bool = True,
        pad_sigma_512: float = 32.0,
    ):
        if not 0.0 <= p_from_blur <= 1.0:
            raise ConfigError(f"pairs.p_from_blur must be in [0, 1], got {p_from_blur}")
        if not lam > 0:
            raise ConfigError(f"the guidance weight lam (sampler.guidance.lam) must be > 0, got {lam}")
        self.diffusion, self.prior, self.dblm, self.dsst = diffusion, prior, dblm, dsst
        self.resolution, self.lam, self.p_from_blur = int(resolution), float(lam), float(p_from_blur)
        self.clip_denoised, self.pad_sigma_512 = clip_denoised, float(pad_sigma_512)
        device = next(prior.parameters()).device
        self.timestep_map = diffusion.on_device("timestep_map", device)

    @classmethod
    def from_config(cls, cfg: DictConfig, device: torch.device | str = "cpu") -> "GuidedPairSampler":
        """Build from a :class:`DGSATrainerConfig`: the frozen parts from the sample config named by
        ``sample_config`` (module docstring), ``pairs`` and ``data.train.resolution``."""
        device = torch.device(device)
        path = resolve_path(cfg.sample_config)
        sample = load_sample_config(path, list(cfg.get("sample_overrides") or []))
        missing = [key for key in ("dblm", "dsst") if sample.get(key) is None]
        if missing:
            raise ConfigError(f"{path}: DGSA training needs the section(s) {missing} of the sampler")
        if sample.sampler.guidance.combine != "sharpest":
            raise ConfigError(
                f"{path}: sampler.guidance.combine = {sample.sampler.guidance.combine!r}; "
                f"DGSA pairs guide with the sharpest active level only ('sharpest')"
            )
        if int(cfg.data.train.resolution) != int(sample.resolution):
            raise ConfigError(
                f"data.train.resolution = {cfg.data.train.resolution} differs from the resolution "
                f"{sample.resolution} of {path}"
            )
        try:
            diffusion = instantiate(sample.diffusion)
        except (ConfigError, ValueError) as err:
            raise ConfigError(f"{path}: diffusion: {err}") from None
        prior = build_model(sample.model, device, PRIOR_HINT)
        try:
            dblm = DBLM.from_config(sample.dblm, device=device).requires_grad_(False)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None
        try:
            table = DSSTTable.load(resolve_path(sample.dsst.table_path))
        except DSSTTableError as err:
            raise ConfigError(f"{path}: dsst.table_path: {err}") from None
        return cls(
            diffusion,
            prior,
            dblm,
            table,
            sample.resolution,
            sample.sampler.guidance.lam,
            cfg.pairs.p_from_blur,
            sample.sampler.clip_denoised,
            sample.sampler.guidance.pad_sigma_512,
        )

    def max_index(self, t_level: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """(N,) largest respaced index at which the sampler guides with ``level`` (0-based) of DSST step t_level."""
        start = self.dsst.respaced_index(t_level, self.timestep_map)  # level 1: the sampler's start index
        active = torch.searchsorted(self.timestep_map, t_level, right=True) - 1  # map[i] <= t_level
        return torch.where(level == 0, start, active).clamp(min=0)

    @torch.no_grad()
    def draw(self, x: torch.Tensor, lq: torch.Tensor, generator: Optional[torch.Generator] = None) -> GuidedPair:
        """A pair per face: ``x`` HQ and ``lq`` its degraded version, (N, 3, R, R) in [-1, 1]. Randomness
        from ``generator`` (default: the global torch RNG)."""
        n, device = x.shape[0], x.device
        levels = self.dblm(lq)
        images = torch.stack([img.float() for img in levels.images], dim=1)  # (N, K, C, H, W)
        sigmas = levels.sigmas.float()
        rows = torch.arange(n, device=device)
        level = torch.randint(0, sigmas.shape[1], (n,), generator=generator, device=device)
        sigma_k, y_k = sigmas[rows, level], images[rows, level]
        t_level = self.dsst.start_step(sigma_k, resolution=self.resolution)
        upper = self.max_index(t_level, level)
        index = (torch.rand(n, generator=generator, device=device) * (upper + 1)).long().clamp(max=upper)
        from_blur = torch.rand(n, generator=generator, device=device) < self.p_from_blur
        noise = torch.randn(x.shape, generator=generator, device=device, dtype=torch.float32)
        source = torch.where(from_blur.view(-1, 1, 1, 1), images[:, 0], x.float())
        x_t = self.diffusion.q_sample(source, index, noise=noise)
        x0_hat = self.diffusion.p_mean_variance(self.prior, x_t, index, clip_denoised=self.clip_denoised)[
            "pred_xstart"
        ].float()
        x0_tilde = closed_form_guidance(
            x0_hat, y_k, sigma_k, self.lam, pad=batch_pad(sigma_k, self.resolution, self.pad_sigma_512)
        )
        return GuidedPair(
            x=x.float(),
            x0_hat=x0_hat,
            x0_tilde=x0_tilde,
            y_k=y_k,
            sigma_k=sigma_k,
            level=level,
            index=index,
            t=self.timestep_map[index],
            from_blur=from_blur,
        )


def average_ranks(v: torch.Tensor) -> torch.Tensor:
    """1-based ranks of the 1-D tensor ``v`` in float64, tied values sharing the mean of their ranks."""
    _, inverse, counts = torch.unique(v, sorted=True, return_inverse=True, return_counts=True)
    last = counts.cumsum(0).double()
    return (last - (counts.double() - 1.0) / 2.0)[inverse]


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation along the last axis of (..., M) arrays, M >= 2: the Pearson correlation of the
    tie-averaged ranks, float64; 0 for a constant row."""
    if a.shape != b.shape or a.ndim == 0 or a.shape[-1] < 2:
        raise ValueError(f"spearman: need two equal shapes (..., M >= 2), got {tuple(a.shape)} and {tuple(b.shape)}")
    flat_a, flat_b = a.detach().reshape(-1, a.shape[-1]), b.detach().reshape(-1, b.shape[-1])
    ra = torch.stack([average_ranks(row) for row in flat_a])
    rb = torch.stack([average_ranks(row) for row in flat_b])
    ra, rb = ra - ra.mean(-1, keepdim=True), rb - rb.mean(-1, keepdim=True)
    denom = (ra.pow(2).sum(-1) * rb.pow(2).sum(-1)).sqrt()
    rho = torch.where(denom > 0, (ra * rb).sum(-1) / denom.clamp_min(1e-300), torch.zeros_like(denom))
    return rho.reshape(a.shape[:-1])


def pair_metrics(dgsa: nn.Module, pair: GuidedPair) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
    """Per-image validation metrics of ``dgsa`` on ``pair`` (module docstring) and its b (N, 1, H, W)."""
    b = dgsa(pair.x0_hat, pair.x0_tilde, pair.y_k, pair.t).float()
    scale = scale_from_b(b, dgsa.s_max, dgsa.b_ref)
    err = pair.residual.abs().mean(1, keepdim=True)
    metrics = {
        "nll": laplace_nll(pair.residual, b, reduction="per_image"),
        "psnr_blend": psnr_tensor(blend(pair.x0_hat, pair.x0_tilde, scale), pair.x),
        "psnr_hat": psnr_tensor(pair.x0_hat, pair.x),
        "psnr_tilde": psnr_tensor(pair.x0_tilde, pair.x),
        "scale": scale.flatten(1).mean(1),
        "spearman": spearman(b.flatten(1), err.flatten(1)).float(),
    }
    return metrics, b


# ----------------------------------------------------------------------------------------- trainer
class TrainerDGSA(TrainerBase):
    """DGSA trained with the Laplace NLL on pairs from the frozen prior, DBLM and DSST (module docstring)."""

    config_schema = DGSATrainerConfig

    def build_extras(self) -> None:
        self.degradation = self.degradation_config()
        self.pairs = GuidedPairSampler.from_config(self.cfg, self.device)

    def build_dataset(self, split: str) -> Optional[Dataset]:
        return self.face_dataset(split, degradation=self.degradation)

    def compute_loss(self, model: nn.Module, batch: Dict[str, Any]) -> Tuple[torch.Tensor, Dict[str, float]]:
        pair = self.pairs.draw(batch["hq"], batch["lq"])
        b = model(pair.x0_hat, pair.x0_tilde, pair.y_k, pair.t)
        loss = laplace_nll(pair.residual, b)
        return loss, {
            "nll": float(loss.detach()),
            "b_mean": float(b.detach().mean()),
            "abs_residual": float(pair.residual.abs().mean()),
        }

    def val_metrics(self, model: nn.Module, batch: Dict[str, Any], batch_idx: int) -> Dict[str, torch.Tensor]:
        pair = self.pairs.draw(batch["hq"], batch["lq"], generator=self.val_generator(batch_idx))
        return pair_metrics(model, pair)[0]


# ----------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate_rank_correlation(
    cfg: DictConfig,
    dgsa: nn.Module,
    num_images: int,
    device: torch.device | str = "cpu",
    seed: int = 0,
    batch_size: int = 8,
    pairs: Optional[GuidedPairSampler] = None,
) -> Dict[str, float]:
    """Spearman rank correlation between DGSA's b and mean_c |x - x0_tilde| on the first ``num_images`` faces of
    ``data.val``: ``spearman`` (pooled over all pixels), ``spearman_per_image`` (mean) and the means of
    :func:`pair_metrics`; pairs and degradations seeded by ``seed``."""
    if cfg.data.get("val") is None:
        raise ConfigError("data.val: the evaluation needs held-out faces (a data.val section)")
    device = torch.device(device)
    pairs = pairs or GuidedPairSampler.from_config(cfg, device)
    node = cfg.data.val
    source = resolve_path(node.source) if isinstance(node.source, str) else [resolve_path(p) for p in node.source]
    dataset = FaceDataset(
        source,
        resolution=node.resolution,
        flip=False,
        length=num_images,
        seed=seed,
        degradation=load_degradation_config(resolve_path(cfg.degradation)),
    )
    gen = torch.Generator(device=device).manual_seed(seed)
    dgsa = dgsa.to(device).eval()
    b_all, err_all, sums = [], [], {}
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        pair = pairs.draw(batch["hq"].to(device), batch["lq"].to(device), generator=gen)
        metrics, b = pair_metrics(dgsa, pair)
        for k, v in metrics.items():
            sums[k] = sums.get(k, 0.0) + float(v.double().sum())
        b_all.append(b.flatten().cpu())
        err_all.append(pair.residual.abs().mean(1).flatten().cpu())
    out = {k: v / len(dataset) for k, v in sums.items()}
    out["spearman_per_image"] = out.pop("spearman")
    out["spearman"] = float(spearman(torch.cat(b_all), torch.cat(err_all)))
    out["num_images"] = float(len(dataset))
    return out
