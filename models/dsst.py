"""DSST table (docs/method.md section 5): blur sigma -> start timestep t, built by models/dsst_build.py.

:meth:`DSSTTable.start_step`: a sigma between grid points takes the t of the next larger one, above the grid
the last t; t is non-decreasing in sigma (checked on load).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from utils.image_io import write_bytes_atomic

SigmaLike = Union[float, int, np.ndarray, torch.Tensor, Sequence[float]]


class DSSTTableError(ValueError):
    """A DSST table file that cannot be trusted; the message names the file and the field."""


def convert_sigma(sigma: SigmaLike, from_resolution: int, to_resolution: int):
    """The same blur in pixels at another resolution: ``sigma * to_resolution / from_resolution``."""
    if isinstance(sigma, (list, tuple)):
        sigma = np.asarray(sigma, dtype=np.float64)
    return sigma * (float(to_resolution) / float(from_resolution))


_REQUIRED = {
    "sigmas": list,
    "t_values": list,
    "tau": (int, float),
    "resolution": int,
    "noise_schedule": str,
    "num_steps": int,
    "num_images": int,
    "file_list_hash": str,
}


@dataclass
class DSSTTable:
    """Start steps per blur level: sigmas ascending in pixels at ``resolution``, t 0-based original steps;
    ``residuals`` r(sigma), optional, for audits and rebuilds at another tau."""

    sigmas: List[float]
    t_values: List[int]
    tau: float
    resolution: int
    noise_schedule: str
    num_steps: int
    num_images: int
    file_list_hash: str
    residuals: Optional[List[float]] = None
    provenance: Optional[Dict[str, Any]] = None  # how the table was built (command, image folders, checks)

    # ---- persistence ----

    def save(self, path: Union[str, Path]) -> Path:
        """Write the table as JSON, atomically."""
        self.validate(str(path))
        text = json.dumps(dataclasses.asdict(self), indent=1)
        return write_bytes_atomic(path, (text + "\n").encode("utf-8"))

    @classmethod
    def load(cls, path: Union[str, Path]) -> "DSSTTable":
        """Read and validate a table; :class:`DSSTTableError` names the file and the bad/missing field."""
        path = Path(path)
        if not path.is_file():
            raise DSSTTableError(f"{path}: DSST table file not found")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DSSTTableError(f"{path}: not a valid JSON DSST table ({err})") from None
        if not isinstance(data, dict):
            raise DSSTTableError(f"{path}: expected a JSON object, got {type(data).__name__}")
        for key, kind in _REQUIRED.items():
            if key not in data:
                raise DSSTTableError(f"{path}: missing field '{key}'")
            if not isinstance(data[key], kind) or isinstance(data[key], bool):
                raise DSSTTableError(f"{path}: field '{key}' has type {type(data[key]).__name__}")
        unknown = sorted(set(data) - set(_REQUIRED) - {"residuals", "provenance"})
        if unknown:
            raise DSSTTableError(f"{path}: unknown field(s) {unknown}")
        table = cls(**data)
        table.validate(str(path))
        return table

    def validate(self, where: str = "DSST table") -> None:
        """Check the invariants lookup relies on; raise :class:`DSSTTableError` naming the field."""

        def bad(key: str, why: str) -> DSSTTableError:
            return DSSTTableError(f"{where}: field '{key}' {why}")

        sig, ts = self.sigmas, self.t_values
        if len(sig) == 0:
            raise bad("sigmas", "is empty")
        if not all(isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) for s in sig):
            raise bad("sigmas", "must hold finite numbers")
        if sig[0] < 0 or any(b <= a for a, b in zip(sig, sig[1:])):
            raise bad("sigmas", "must be >= 0 and strictly increasing")
        if len(ts) != len(sig):
            raise bad("t_values", f"has {len(ts)} entries for {len(sig)} sigmas")
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in ts):
            raise bad("t_values", "must hold integers")
        if self.num_steps < 1:
            raise bad("num_steps", "must be >= 1")
        if ts[0] < 0 or ts[-1] >= self.num_steps or any(b < a for a, b in zip(ts, ts[1:])):
            raise bad("t_values", f"must be non-decreasing within [0, {self.num_steps - 1}]")
        if not (math.isfinite(self.tau) and self.tau > 0):
            raise bad("tau", "must be > 0")
        if self.resolution < 1:
            raise bad("resolution", "must be >= 1")
        if self.num_images < 1:
            raise bad("num_images", "must be >= 1")
        if len(self.file_list_hash) != 64 or any(c not in "0123456789abcdef" for c in self.file_list_hash):
            raise bad("file_list_hash", "must be a sha256 hex digest")
        if self.residuals is not None and len(self.residuals) != len(sig):
            raise bad("residuals", f"has {len(self.residuals)} entries for {len(sig)} sigmas")

    # ---- lookup ----

    def start_step(self, sigma: SigmaLike, resolution: Optional[int] = None):
        """Start step (0-based original t) per sigma: the t of the next larger grid sigma (t_0 below, the last above).

        ``sigma`` in pixels at ``resolution`` (default the table's; else converted at equal sigma_512). Tensor in ->
        int64 tensor on its device; otherwise an int64 numpy array (a plain int for a scalar)."""
        if resolution is not None and resolution != self.resolution:
            sigma = convert_sigma(sigma, resolution, self.resolution)
        return _lookup(self.sigmas, self.t_values, sigma, "sigma")

    @staticmethod
    def respaced_index(t: SigmaLike, timestep_map: SigmaLike):
        """Smallest respaced index whose original timestep (``timestep_map``, ascending) is >= t, the last beyond it;
        return types as :meth:`start_step`."""
        steps = (
            timestep_map.detach().cpu().tolist()
            if isinstance(timestep_map, torch.Tensor)
            else np.asarray(timestep_map).reshape(-1).tolist()
        )
        if len(steps) == 0 or any(b <= a for a, b in zip(steps, steps[1:])):
            raise ValueError("timestep_map must be non-empty and strictly increasing")
        return _lookup(steps, list(range(len(steps))), t, "t")

    def start_index(self, sigma: SigmaLike, timestep_map: SigmaLike, resolution: Optional[int] = None):
        """``respaced_index(start_step(sigma), timestep_map)``: the respaced index to start sampling at."""
        return self.respaced_index(self.start_step(sigma, resolution), timestep_map)

    def format(self) -> str:
        """Human-readable table: sigma, sigma_512, t."""
        lines = [
            f"DSST table: resolution {self.resolution}, {self.noise_schedule} x {self.num_steps}, "
            f"tau {self.tau:g}, {self.num_images} images, files sha256 {self.file_list_hash[:12]}",
            f"{'sigma':>8} {'sigma_512':>10} {'t':>5}",
        ]
        for s, t in zip(self.sigmas, self.t_values):
            lines.append(f"{s:8.4f} {convert_sigma(s, self.resolution, 512):10.3f} {t:5d}")
        return "\n".join(lines)


def _lookup(grid: Sequence[float], values: Sequence[int], query: SigmaLike, name: str):
    """values[i] for the first grid point >= query (clamped to the last); type follows ``query``."""
    if isinstance(query, torch.Tensor):
        dtype = torch.float64 if query.device.type != "mps" else torch.float32
        q = query.detach().to(dtype)
        if bool(torch.isnan(q).any()) or bool((q < 0).any()):
            raise ValueError(f"{name} must be >= 0 (got negative or NaN values)")
        grid_t = torch.as_tensor(grid, dtype=dtype, device=q.device)
        values_t = torch.as_tensor(values, dtype=torch.int64, device=q.device)
        idx = torch.searchsorted(grid_t, q.contiguous(), right=False).clamp_(max=len(grid) - 1)
        return values_t[idx]
    q = np.asarray(query, dtype=np.float64)
    if np.isnan(q).any() or (q < 0).any():
        raise ValueError(f"{name} must be >= 0, got {query}")
    idx = np.minimum(np.searchsorted(np.asarray(grid, dtype=np.float64), q, side="left"), len(grid) - 1)
    out = np.asarray(values, dtype=np.int64)[idx]
    return int(out) if out.ndim == 0 else out
