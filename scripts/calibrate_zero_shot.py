"""The zero-shot DBLM's ``sigma_ratio`` k: the median of sigma*(x, y) / sigma*(R(y), y) over training faces.

    python scripts/calibrate_zero_shot.py --config configs/sample/dynfacerestore_demo_public.yaml --pairs DIR

DIR holds hq/ and lq/ of equally named, equally sized faces (``data.make_testset`` on training faces); the
restorer R and the sigma* grid are the config's (DiffBIR/zero_shot.py, :func:`DiffBIR.zero_shot.calibrate`).
Prints the median and quartiles; exit status 2 with one line on bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from DiffBIR.zero_shot import ZeroShotDBLM, calibrate  # noqa: E402
from sample_config import load_sample_config  # noqa: E402
from utils.config import ConfigError  # noqa: E402
from utils.image_io import img2tensor, list_images, read_image  # noqa: E402
from utils.model_factory import build_model  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Measure the zero-shot DBLM's sigma_ratio on training faces.")
    parser.add_argument("--config", required=True, help="sampling YAML with a restorer and a zero_shot dblm")
    parser.add_argument("--pairs", required=True, help="folder with hq/ and lq/ of equally named, equally sized faces")
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args(argv)
    try:
        cfg = load_sample_config(args.config, args.opts)
        if cfg.get("restorer") is None:
            raise ConfigError(f"{args.config}: needs a 'restorer' section")
        names = [p.name for p in list_images(f"{args.pairs}/lq")]
        if not names:
            raise FileNotFoundError(f"no images in {args.pairs}/lq")
        lq = img2tensor([read_image(f"{args.pairs}/lq/{n}") for n in names])
        hq = img2tensor([read_image(f"{args.pairs}/hq/{n}") for n in names])
        dblm = ZeroShotDBLM.from_config(cfg.dblm, build_model(cfg.restorer))
    except (ConfigError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    ratios = calibrate(dblm, hq, lq)
    if len(ratios) == 0:
        print(
            f"error: every face of {args.pairs} is restored to its input (sigma*(R(y), y) ~ 0): no ratio",
            file=sys.stderr,
        )
        return 2
    q25, q50, q75 = (float(v) for v in torch.quantile(ratios.double(), torch.tensor([0.25, 0.5, 0.75]).double()))
    print(f"sigma_ratio {q50:.2f}  (median of {len(ratios)} of {len(names)} faces; quartiles {q25:.2f}, {q75:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
