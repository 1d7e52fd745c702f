"""Make a paired test set: HQ faces and their blind degradation at a fixed seed.

    python -m data.make_testset --source ../shared/data/faces_hq/celeba128_val.txt --out DIR \
        --resolution 64 --seed 0 --config configs/degradation/difface_blind.yaml [--severity-thirds]

Writes DIR/hq/, DIR/lq/ (U(y)) and DIR/degradations.json atomically; image i uses ``item_rng(seed, i)``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from data.blur import default_sigma_max
from data.datasets import item_rng, load_face, read_file_list
from data.degradation import degrade, load_degradation_config, severity_config, to_gray
from data.sigma_star import FINE_STEP, sigma_star
from utils.config import ConfigError
from utils.image_io import write_bytes_atomic, write_image

SEVERITY_NAMES = ("mild", "medium", "severe")
#: Images per sigma* estimation batch.
SIGMA_BATCH = 32


def _quantise(img: np.ndarray) -> np.ndarray:
    """The float image exactly as it is stored in an 8-bit PNG."""
    return (np.clip(img, 0.0, 1.0) * 255.0).round().astype(np.float32) / 255.0


def _sigma_stars(hqs: list, lqs: list) -> list:
    out = []
    for start in range(0, len(hqs), SIGMA_BATCH):
        hq = torch.from_numpy(np.stack(hqs[start : start + SIGMA_BATCH])).permute(0, 3, 1, 2)
        lq = torch.from_numpy(np.stack(lqs[start : start + SIGMA_BATCH])).permute(0, 3, 1, 2)
        out.extend(sigma_star(hq, lq).tolist())
    return out


def make_testset(
    source: Union[str, os.PathLike],
    out: Union[str, os.PathLike],
    resolution: int,
    seed: int,
    config: Union[str, os.PathLike],
    severity_thirds: bool = False,
    limit: Optional[int] = None,
) -> dict:
    """Build the test set (module docstring) and return the content of degradations.json."""
    cfg = load_degradation_config(config)
    files = read_file_list(source)[:limit]
    names = [f.stem for f in files]
    if len(set(names)) != len(names):
        raise ValueError(f"{source}: image names (file stems) must be unique to be written to one folder")
    out = Path(out)
    n = len(files)
    records, hqs, lqs = [], [], []
    for i, (file, name) in enumerate(zip(files, names)):
        level = i * 3 // n if severity_thirds else None
        level_cfg = severity_config(cfg, resolution, level) if severity_thirds else cfg
        hq = load_face(file, resolution)
        lq, params = degrade(hq, item_rng(seed, i), level_cfg)
        if params["gray"] and cfg.gt_gray:
            hq = to_gray(hq)
        hq, lq = _quantise(hq), _quantise(lq)
        write_image(out / "hq" / f"{name}.png", hq)
        write_image(out / "lq" / f"{name}.png", lq)
        hqs.append(hq)
        lqs.append(lq)
        records.append(
            {
                "name": name,
                "source": str(file),
                "hq": f"hq/{name}.png",
                "lq": f"lq/{name}.png",
                "severity": SEVERITY_NAMES[level] if severity_thirds else None,
                "params": params,
            }
        )
    for record, sigma in zip(records, _sigma_stars(hqs, lqs)):
        record["sigma_star"] = sigma
        record["sigma_star_512"] = sigma * 512.0 / resolution
    manifest = {
        "seed": seed,
        "resolution": resolution,
        "source": str(source),
        "config_path": str(config),
        "config": cfg.to_dict(),
        "severity_thirds": severity_thirds,
        "severity_configs": {SEVERITY_NAMES[k]: severity_config(cfg, resolution, k).to_dict() for k in range(3)}
        if severity_thirds
        else None,
        "sigma_star_grid": {"sigma_max": default_sigma_max(resolution), "fine_step": FINE_STEP},
        "images": records,
    }
    write_bytes_atomic(out / "degradations.json", json.dumps(manifest, indent=1).encode())
    return manifest


def main(argv: Optional[list] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, help="file list (.txt) or folder of HQ faces")
    parser.add_argument("--out", required=True, help="output folder (hq/, lq/, degradations.json)")
    parser.add_argument("--resolution", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", required=True, help="degradation YAML (configs/degradation/*.yaml)")
    parser.add_argument(
        "--severity-thirds",
        action="store_true",
        help="split the images into mild / medium / severe thirds of every range",
    )
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images")
    args = parser.parse_args(argv)
    try:
        manifest = make_testset(
            args.source, args.out, args.resolution, args.seed, args.config, args.severity_thirds, args.limit
        )
    except (ConfigError, FileNotFoundError, ValueError) as err:  # ImageReadError is a ValueError
        sys.exit(f"make_testset: {err}")
    print(f"wrote {len(manifest['images'])} pairs to {args.out}")


if __name__ == "__main__":
    main()
