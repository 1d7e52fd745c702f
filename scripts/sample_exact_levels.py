"""DynFaceRestore with a perfect DBLM: the sampler with every level y'_k replaced by the exact G_sigma_k * x.

    python scripts/sample_exact_levels.py --testset results/eval/testset [--config CONFIG] [--limit N]

Both runs use the same seeds, sigmas, starts, guidance and DGSA; prints PSNR per severity third for the LQ and
both runs (the second an upper bound for better TM / RM).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from eval_dblm_levels import GROUPS, load_testset  # noqa: E402

from data.blur import gaussian_blur  # noqa: E402
from sampler import FaceRestoreSampler, load_sample_config  # noqa: E402
from utils.image_io import tensor2img  # noqa: E402
from utils.metrics import psnr  # noqa: E402


class ExactLevels(nn.Module):
    """Wraps a DBLM: its SDE and sigmas, but level k is G_sigma_k * x of the HQ faces set in ``self.hq``."""

    def __init__(self, dblm: nn.Module):
        super().__init__()
        self.dblm = dblm
        self.hq: torch.Tensor | None = None

    def forward(self, y: torch.Tensor):
        out = self.dblm(y)
        hq = self.hq.to(y.device, y.dtype)
        out.images = [gaussian_blur(hq, out.sigmas[:, k]) for k in range(out.sigmas.shape[1])]  # one sigma per image
        return out


def restore_psnr(sampler: FaceRestoreSampler, lq: torch.Tensor, hq: torch.Tensor, batch: int) -> list:
    """Per-face PSNR of the sampler's results (seed = face index)."""
    values = []
    for i in range(0, len(lq), batch):
        if isinstance(sampler.dblm, ExactLevels):
            sampler.dblm.hq = hq[i : i + batch]
        out = sampler.restore(lq[i : i + batch], list(range(i, min(i + batch, len(lq)))))
        values += [psnr(r, h) for r, h in zip(tensor2img(out.images), tensor2img(hq[i : i + batch]))]
    return values


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--testset", type=Path, required=True)
    parser.add_argument("--config", default=str(ROOT / "configs/sample/dynfacerestore_demo.yaml"))
    parser.add_argument("--limit", type=int, default=None, help="use only the first N faces")
    parser.add_argument("--bs", type=int, default=10)
    args = parser.parse_args(argv)
    lq, hq, severity = load_testset(args.testset)
    lq, hq, severity = lq[: args.limit], hq[: args.limit], severity[: args.limit]
    sampler = FaceRestoreSampler(load_sample_config(args.config))
    rows = {
        "LQ (input)": [psnr(a, b) for a, b in zip(tensor2img(lq), tensor2img(hq))],
        "DynFaceRestore": restore_psnr(sampler, lq, hq, args.bs),
    }
    sampler.dblm = ExactLevels(sampler.dblm)
    rows["DynFaceRestore, exact levels"] = restore_psnr(sampler, lq, hq, args.bs)
    groups = [g for g in GROUPS if g == "all" or g in severity]
    print("| PSNR (dB) | " + " | ".join(f"{g} ({sum(g in ('all', s) for s in severity)})" for g in groups) + " |")
    print("|---|" + "---:|" * len(groups))
    for name, values in rows.items():
        means = [np.mean([v for v, s in zip(values, severity) if g in ("all", s)]) for g in groups]
        print(f"| {name} | " + " | ".join(f"{m:.2f}" for m in means) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
