"""Shared fixtures: real face data from ../shared/data (skipped with a reason when absent), small threads."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DYNFACE_SHARED", REPO_ROOT.parent / "shared"))
SHARED_DATA = SHARED / "data"
FACES_HQ = SHARED_DATA / "faces_hq"
REAL_LQ = SHARED_DATA / "real_lq"
LPIPS_WEIGHTS = SHARED / "weights" / "lpips"
CHECKPOINT_SPECS = REPO_ROOT / "configs" / "checkpoint_specs"  # the repository's copy of the public layouts

# One intra-op thread: many tests start 2-process torchrun/accelerate jobs beside the test process, and
# 2 threads per process on a 2-core machine oversubscribe it (measured several times slower).
torch.set_num_threads(1)


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data not available: {path} (set DYNFACE_SHARED to the shared/ folder)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _require(SHARED)


@pytest.fixture(scope="session")
def faces_hq_dir() -> Path:
    return _require(FACES_HQ)


@pytest.fixture(scope="session")
def real_lq_dir() -> Path:
    return _require(REAL_LQ)


@pytest.fixture(scope="session")
def checkpoint_specs_dir() -> Path:
    return _require(CHECKPOINT_SPECS)


@pytest.fixture(scope="session")
def lpips_weights_dir() -> Path:
    return _require(LPIPS_WEIGHTS)


@pytest.fixture(scope="session")
def celeba_faces(faces_hq_dir) -> list[Path]:
    """The 900 training names of celeba128 as paths (list order)."""
    names = (faces_hq_dir / "celeba128_train.txt").read_text().split()
    return [faces_hq_dir / n for n in names]


@pytest.fixture(scope="session")
def celeba_val_faces(faces_hq_dir) -> list[Path]:
    names = (faces_hq_dir / "celeba128_val.txt").read_text().split()
    return [faces_hq_dir / n for n in names]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
