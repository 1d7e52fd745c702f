"""How close DBLM's levels come to their targets (docs/method.md section 4).

    python scripts/eval_dblm_levels.py --testset results/eval/testset [--config A.yaml --config B.yaml]

For every face and level k of a test set of ``scripts/evaluate_demo.py``: PSNR of y'_k against G_sigma_k * x,
PSNR / LPIPS of y'_k against x, PSNR against the LQ, and of G_sigma_k * x and the LQ against x; means over all
faces and severity thirds, one markdown table per ``--config``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data.blur import gaussian_blur  # noqa: E402
from DiffBIR.dblm import DBLM  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.image_io import img2tensor, read_image  # noqa: E402
from utils.metrics import LPIPSMetric  # noqa: E402
from utils.tensor_psnr import psnr_tensor  # noqa: E402

LPIPS_WEIGHTS = ROOT.parent / "shared" / "weights" / "lpips"
GROUPS = ("all", "mild", "medium", "severe")


def load_testset(testset: Path):
    """(lq, hq) as (N, 3, H, W) tensors in [-1, 1] and the severity of each face ('all' when unknown)."""
    manifest = testset / "degradations.json"
    if not manifest.exists():
        manifest = testset / "chain.json"
    if not manifest.exists():
        raise SystemExit(f"{testset}: no degradations.json or chain.json (make it with scripts/evaluate_demo.py)")
    images = json.loads(manifest.read_text())["images"]
    lq = img2tensor([read_image(testset / "lq" / f"{im['name']}.png") for im in images])
    hq = img2tensor([read_image(testset / "hq" / f"{im['name']}.png") for im in images])
    return lq, hq, [im.get("severity", "all") for im in images]


@torch.no_grad()
def level_rows(
    dblm: DBLM, lq: torch.Tensor, hq: torch.Tensor, lpips: LPIPSMetric, batch: int = 50
) -> Dict[str, torch.Tensor]:
    """Per-image values (name -> (N,) tensor) of the module docstring's quantities."""
    outs = [dblm(lq[i : i + batch]) for i in range(0, len(lq), batch)]
    sigmas = torch.cat([o.sigmas for o in outs])
    rows = {
        "LQ vs x: PSNR": psnr_tensor(lq, hq),
        "LQ vs x: LPIPS": torch.tensor(lpips(lq, hq)),
        "sigma_hat (px)": torch.cat([o.sigma_hat for o in outs]).double(),
    }
    for k in range(sigmas.shape[1]):
        level = torch.cat([o.images[k] for o in outs]).float()
        target = gaussian_blur(hq, sigmas[:, k])  # one sigma per image
        rows[f"level {k + 1}: sigma (px)"] = sigmas[:, k].double()
        rows[f"level {k + 1}: y' vs G x, PSNR"] = psnr_tensor(level, target)
        rows[f"level {k + 1}: y' vs x, PSNR"] = psnr_tensor(level, hq)
        rows[f"level {k + 1}: y' vs x, LPIPS"] = torch.tensor(lpips(level, hq))
        rows[f"level {k + 1}: y' vs LQ, PSNR"] = psnr_tensor(level, lq)
        rows[f"level {k + 1}: G x vs x, PSNR"] = psnr_tensor(target, hq)
    return rows


def table(rows: Dict[str, torch.Tensor], severity: List[str]) -> str:
    groups = [g for g in GROUPS if g == "all" or g in severity]
    masks = {g: torch.tensor([g == "all" or s == g for s in severity]) for g in groups}
    head = "| quantity | " + " | ".join(f"{g} ({int(masks[g].sum())})" for g in groups) + " |"
    lines = [head, "|---|" + "---:|" * len(groups)]
    for name, values in rows.items():
        digits = 4 if "LPIPS" in name else 2
        lines.append(f"| {name} | " + " | ".join(f"{values[masks[g]].mean():.{digits}f}" for g in groups) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--testset", type=Path, required=True)
    parser.add_argument(
        "--config",
        action="append",
        default=None,
        help="sample config whose dblm section is measured (repeatable); "
        "default configs/sample/dynfacerestore_demo.yaml",
    )
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    lq, hq, severity = load_testset(args.testset)
    lpips = LPIPSMetric("alex", weights_dir=LPIPS_WEIGHTS)
    for config in args.config or ["configs/sample/dynfacerestore_demo.yaml"]:
        dblm = DBLM.from_config(load_config(config).dblm)
        print(f"### {config}\n\n{table(level_rows(dblm, lq, hq, lpips), severity)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
