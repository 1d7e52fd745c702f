"""The public files the paper's evaluation needs, where they come from, and how each is checked.

``scripts/download_weights.py --eval`` fetches them into ``weights/metrics/``; a file is accepted when its
``check`` passes (a strict load into the facexlib / basicsr network, or the statistics' shapes).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional

import torch

from utils.arcface import arcface_layout
from utils.checkpoint import CheckpointError, load_checkpoint
from utils.config import first_line
from utils.feature_stats import load_stats
from utils.inception import FID_FEATURES, inception_layout
from utils.landmarks import awing_layout

DEFAULT_DIR = "weights/metrics"
DOWNLOAD_COMMAND = "python scripts/download_weights.py --eval"
FACEXLIB_URL = "https://github.com/xinntao/facexlib/releases/download/v0.1.0"
BASICSR_STATS_FOLDER = "https://drive.google.com/drive/folders/13cWIQyHX3iNmZRJ5v8v3kdyrT9RBTAi9"


class WeightsError(ValueError):
    """A weights or statistics file that is missing or wrong; the message is one line."""


def _strict_load(layout: Callable[[], torch.nn.Module]) -> Callable[[Path], None]:
    """A check that loads the file strictly into ``layout()`` (CheckpointError naming the first keys)."""
    return lambda path: load_checkpoint(layout(), path, strict=True)


def _check_ffhq_stats(path: Path) -> None:
    mu, _ = load_stats(path)
    if mu.shape != (FID_FEATURES,):
        raise WeightsError(
            f"{path.name}: statistics of {mu.shape[0]}-d features, the FID Inception gives {FID_FEATURES}"
        )


@dataclass(frozen=True)
class EvalWeight:
    name: str  # what it is for
    file: str  # file name under the weights folder
    url: Optional[str]  # direct download; None: fetched by hand from ``source``
    check: Callable[[Path], None]
    sha256_prefix: Optional[str] = None
    source: str = ""  # where to get it by hand when there is no direct URL

    def target(self, folder: Path) -> Path:
        return Path(folder) / self.file


EVAL_WEIGHTS: Dict[str, EvalWeight] = {
    w.name: w
    for w in (
        EvalWeight(
            "fid_inception",
            "pt_inception-2015-12-05-6726825d.pth",
            "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
            "pt_inception-2015-12-05-6726825d.pth",
            _strict_load(inception_layout),
            "6726825d",
        ),
        EvalWeight(
            "ffhq512_stats",
            "inception_FFHQ_512-f7b384ab.pth",
            None,
            _check_ffhq_stats,
            "f7b384ab",
            source=f"BasicSR's metrics data folder {BASICSR_STATS_FOLDER} (Google Drive, no direct link)",
        ),
        EvalWeight(
            "arcface",
            "recognition_arcface_ir_se50.pth",
            f"{FACEXLIB_URL}/recognition_arcface_ir_se50.pth",
            _strict_load(arcface_layout),
        ),
        EvalWeight(
            "awing", "alignment_WFLW_4HG.pth", f"{FACEXLIB_URL}/alignment_WFLW_4HG.pth", _strict_load(awing_layout)
        ),
    )
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_file(weight: EvalWeight, path: Path, with_hash: bool = False) -> None:
    """WeightsError (one line) unless ``path`` passes ``weight.check`` (and, ``with_hash``, its sha256 prefix)."""
    if with_hash and weight.sha256_prefix and not sha256_of(path).startswith(weight.sha256_prefix):
        raise WeightsError(f"{path.name}: sha256 does not start with {weight.sha256_prefix} (another file)")
    try:
        weight.check(path)
    except (CheckpointError, ValueError) as err:
        raise WeightsError(f"{path.name}: not the {weight.name} file: {first_line(err)}") from None


def missing_hint(weight: EvalWeight, folder: Path) -> str:
    """How to get a missing file: the download command, or where to fetch it by hand."""
    target = weight.target(folder)
    if weight.url is None:
        return f"{target} missing: get {weight.file} from {weight.source}"
    return f"{target} missing: run `{DOWNLOAD_COMMAND}`"


def find_weights(name: str, folder: Path) -> Path:
    """The checked file of ``EVAL_WEIGHTS[name]`` in ``folder``; WeightsError saying how to get it otherwise."""
    weight = EVAL_WEIGHTS[name]
    path = weight.target(folder)
    if not path.is_file():
        raise WeightsError(missing_hint(weight, folder))
    check_file(weight, path)
    return path
