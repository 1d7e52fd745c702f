"""Random weights saved at the real layouts and names of the evaluation's weight files (tests only)."""

from __future__ import annotations

from pathlib import Path

import torch

from utils.arcface import arcface_layout
from utils.eval_weights import EVAL_WEIGHTS
from utils.inception import inception_layout
from utils.landmarks import awing_layout


def save_random_eval_weights(folder: Path) -> Path:
    """FID Inception, ArcFace IR-SE50 and AWing (wrapped in ``state_dict`` as released) with seeded random weights."""
    torch.manual_seed(0)
    torch.save(inception_layout().state_dict(), EVAL_WEIGHTS["fid_inception"].target(folder))
    torch.save(arcface_layout().state_dict(), EVAL_WEIGHTS["arcface"].target(folder))
    torch.save({"state_dict": awing_layout().state_dict()}, EVAL_WEIGHTS["awing"].target(folder))
    return folder
