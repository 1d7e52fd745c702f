"""Run a script of the repository's root from inside DiffBIR/, where the paper's README runs its training:
``cd DiffBIR && accelerate launch train_SDE.py --config configs/train/train_SDE.yaml`` (likewise train_DBLM.py)."""

import runpy
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_root_script(name: str) -> None:
    """Run ``<repository>/<name>`` as ``__main__``, with the repository instead of DiffBIR/ first on sys.path."""
    sys.path[0] = str(REPO_ROOT)
    runpy.run_path(str(REPO_ROOT / name), run_name="__main__")
