"""Build a network from a config node ``{target, params, ckpt_path}`` and load its weights.

A missing or mismatched checkpoint raises ``utils.checkpoint.CheckpointError`` at start-up; a relative
``ckpt_path`` is resolved against the current directory, then the repository root.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import nn

from utils.checkpoint import CheckpointError, load_checkpoint
from utils.config import instantiate

REPO_ROOT = Path(__file__).resolve().parents[1]


def resolve_path(path: str | Path) -> Path:
    """``path`` as given if it exists (or is absolute), else relative to the repository root."""
    path = Path(path).expanduser()
    if path.is_absolute() or path.exists():
        return path
    candidate = REPO_ROOT / path
    return candidate if candidate.exists() else path


def build_model(
    node, device: torch.device | str = "cpu", hint: Optional[str] = None, load_weights: bool = True
) -> nn.Module:
    """Instantiate ``node`` and load ``node.ckpt_path``; eval mode, on ``device``, gradients off."""
    model = instantiate(node)
    ckpt = node.get("ckpt_path", None)
    if load_weights:
        if not ckpt:
            raise CheckpointError(f"{node['target']}: the config gives no ckpt_path" + (f"; {hint}" if hint else ""))
        load_checkpoint(model, resolve_path(ckpt), hint=hint)
    model.eval().requires_grad_(False)
    return model.to(device)
