"""``--steps N``, ``--solver`` and ``--preset``: the step count and solver of a sampling config as overrides
(docs/steps.md).

``--steps N`` respaces as ``ddimN`` (:func:`models.respace.space_timesteps`); DifFace's fixed start keeps its
timestep. ``--preset NAME`` reads steps, solver and ``reguide`` from configs/presets/steps.yaml.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import yaml

from models.respace import space_timesteps
from models.solvers import SOLVERS
from sampler import load_sample_config
from utils.config import ConfigError
from utils.model_factory import resolve_path

PRESETS_FILE = "configs/presets/steps.yaml"


def presets() -> Dict[str, dict]:
    """The named step settings of configs/presets/steps.yaml: ``{name: {"steps": N, "solver": S,
    "reguide": bool}}`` (ConfigError, one line, for an entry that is not of this form)."""
    path = resolve_path(PRESETS_FILE)
    with open(path) as fh:
        table = yaml.safe_load(fh)
    for name, entry in table.items():
        if not (
            isinstance(entry, dict)
            and set(entry) == {"steps", "solver", "reguide"}
            and isinstance(entry["steps"], int)
            and entry["steps"] > 0
            and entry["solver"] in SOLVERS
            and isinstance(entry["reguide"], bool)
        ):
            raise ConfigError(
                f"{path}: preset {name!r} must be {{steps: positive int, solver: one of "
                f"{', '.join(SOLVERS)}, reguide: bool}}, got {entry!r}"
            )
    return table


def preset_overrides(config, overrides: Sequence[str], name: str) -> List[str]:
    """``overrides`` followed by those of the preset ``name`` (its steps, solver and guidance.reguide)."""
    preset = presets()[name]
    return steps_overrides(config, overrides, preset["steps"], preset["solver"]) + [
        f"sampler.guidance.reguide={str(preset['reguide']).lower()}"
    ]


def fixed_start_t(cfg) -> int:
    """The original timestep of the config's fixed start (``sampler.fixed_start_index`` of its respacing)."""
    params = cfg.diffusion.params
    kept = sorted(space_timesteps(int(params.steps), params.timestep_respacing or int(params.steps)))
    return kept[min(int(cfg.sampler.fixed_start_index), len(kept) - 1)]


def steps_overrides(
    config, overrides: Sequence[str] = (), steps: Optional[int] = None, solver: Optional[str] = None
) -> List[str]:
    """``overrides`` followed by those that set ``steps`` (ddimN, fixed start kept at its timestep) and
    ``solver``; ValueError (one line) when no integer stride gives exactly ``steps`` steps."""
    out = list(overrides)
    if steps is not None:
        cfg = load_sample_config(config, out)
        total = int(cfg.diffusion.params.steps)
        if not 1 <= int(steps) <= total:
            raise ValueError(f"--steps must be in [1, {total}], got {steps}")
        kept = sorted(space_timesteps(total, f"ddim{int(steps)}"))
        t_fixed = fixed_start_t(cfg)
        index = next((i for i, t in enumerate(kept) if t >= t_fixed), len(kept) - 1)
        out += [f"diffusion.params.timestep_respacing=ddim{int(steps)}", f"sampler.fixed_start_index={index}"]
    if solver is not None:
        out.append(f"sampler.solver={solver}")
    return out
