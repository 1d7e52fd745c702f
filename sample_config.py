"""Schema and loader of the sampling configs (configs/sample/*.yaml); the sampler itself is sampler.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence

from omegaconf import MISSING, DictConfig, OmegaConf

from faces.paste import PasteConfig, check_paste_config
from models.solvers import SOLVERS
from utils.config import ConfigError, ObjectNode, WeightsNode, load_config

METHODS = ("dynfacerestore", "difface", "rm0")
START_MODES = ("dsst", "fixed")
GUIDANCE_MODES = ("none", "global", "dgsa")
COMBINE_MODES = ("sharpest", "all")


@dataclass
class GuidanceConfig:
    mode: str = "dgsa"  # none | global | dgsa  ("off" would parse as a YAML boolean)
    lam: float = 0.05  # weight of ||x - x0_hat||^2 in the closed form (docs/method.md section 6)
    global_scale: float = 1.0  # s when mode == global
    combine: str = "sharpest"  # sharpest active level, or all active levels (sum of data terms)
    dgsa_every: int = 1  # evaluate DGSA every N steps of an image, reuse its map in between
    pad_sigma_512: float = 32.0  # reflect padding = kernel radius of this sigma (512-px units) or more
    reguide: bool = False  # guide again the x0 the update uses (after the solver); docs/steps.md


@dataclass
class CompileConfig:
    """``torch.compile`` of the UNet (docs/benchmarks.md). Shapes are static: the first call at a batch size
    compiles, and a mixed-start batch of ``--bs`` images meets at most ``--bs`` sizes (torch recompiles
    up to ``torch._dynamo.config.recompile_limit`` times, then runs that call uncompiled)."""

    enabled: bool = False
    backend: str = "inductor"
    mode: Optional[str] = None  # inductor: default | reduce-overhead (CUDA graphs) | max-autotune | ...


@dataclass
class SamplerConfig:
    method: str = "dynfacerestore"
    start: str = "dsst"  # dsst | fixed
    fixed_start_index: int = 100  # respaced index of the fixed start (DifFace: 100 of ddim250)
    eta: Any = "auto"  # "auto" (per image, sigma_512 / eta_sigma_divisor) or a number
    eta_sigma_divisor: float = 10.0
    difface_eta: float = 0.5  # eta of the DifFace baseline when eta is "auto"
    num_levels: Optional[int] = None  # use the first K DBLM levels (None: all)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    solver: str = "ddim"  # ddim | dpmpp_2m: the x0 the DDIM update uses (models/solvers.py)
    clip_denoised: bool = True
    channels_last: bool = False  # UNet weights in channels_last memory format (docs/benchmarks.md)
    x0_every: int = 0  # keep x0 predictions every N steps in the intermediates (0: none)
    compile: CompileConfig = field(default_factory=CompileConfig)


@dataclass
class DSSTNode:
    table_path: str = MISSING


@dataclass
class SampleConfig:
    """Schema of configs/sample/*.yaml."""

    resolution: int = MISSING
    diffusion: ObjectNode = MISSING
    model: WeightsNode = MISSING
    restorer: Optional[WeightsNode] = None
    dblm: Optional[Dict[str, Any]] = None
    dsst: Optional[DSSTNode] = None
    dgsa: Optional[WeightsNode] = None
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    paste: PasteConfig = field(default_factory=PasteConfig)  # whole photos (faces.paste)


def load_sample_config(path, overrides: Optional[Sequence[str]] = None) -> DictConfig:
    """Read and validate a sampling config; :class:`ConfigError` names a bad key or value."""
    cfg = load_config(path, SampleConfig, overrides)
    s = cfg.sampler
    for name, value, allowed in (
        ("sampler.method", s.method, METHODS),
        ("sampler.start", s.start, START_MODES),
        ("sampler.guidance.mode", s.guidance.mode, GUIDANCE_MODES),
        ("sampler.guidance.combine", s.guidance.combine, COMBINE_MODES),
        ("sampler.solver", s.solver, SOLVERS),
    ):
        if value not in allowed:
            raise ConfigError(f"{path}: {name} = {value!r}; allowed: {', '.join(allowed)}")
    if int(s.guidance.dgsa_every) < 1:
        raise ConfigError(f"{path}: sampler.guidance.dgsa_every = {s.guidance.dgsa_every}; must be >= 1")
    if not float(s.guidance.pad_sigma_512) >= 0:
        raise ConfigError(f"{path}: sampler.guidance.pad_sigma_512 = {s.guidance.pad_sigma_512}; must be >= 0")
    parse_eta(s.eta)
    unknown = sorted(set(cfg.paste.methods) - set(METHODS))
    if unknown:
        raise ConfigError(f"{path}: paste.methods.{unknown[0]}: not a method; allowed: {', '.join(METHODS)}")
    cfg.paste = OmegaConf.merge(cfg.paste, cfg.paste.methods.get(s.method, {}))  # this method's paste parameters
    try:
        check_paste_config(cfg.paste)
    except ValueError as err:
        raise ConfigError(f"{path}: {err}") from None
    if s.compile.enabled:
        from torch._dynamo import list_backends

        backends = list_backends(exclude_tags=())
        if s.compile.backend not in backends:
            raise ConfigError(
                f"{path}: sampler.compile.backend = {s.compile.backend!r}; allowed: {', '.join(backends)}"
            )
    return cfg


def parse_eta(value) -> Optional[float]:
    """``"auto"`` -> None (per image), otherwise a float in [0, 1]."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    try:
        eta = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"eta must be 'auto' or a number in [0, 1], got {value!r}") from None
    if not 0.0 <= eta <= 1.0:
        raise ConfigError(f"eta must be in [0, 1], got {eta}")
    return eta
