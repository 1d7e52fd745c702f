"""Rank correlation between DGSA's predicted scale b and the actual error |x - x0_tilde| on held-out faces.

    python -m trainers.dgsa_eval --cfg_path configs/training/uncertainty_demo64.yaml \\
        --ckpt experiments/dgsa_demo64/ckpt_0020000.pth --num_images 100

Prints ``key=value`` per metric of :func:`trainers.dgsa.evaluate_rank_correlation`; a bad config or
checkpoint prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

import torch

from trainers.dgsa import DGSATrainerConfig, evaluate_rank_correlation
from utils.checkpoint import CheckpointError, load_checkpoint
from utils.config import ConfigError, instantiate, load_config
from utils.model_factory import resolve_path

EXIT_CONFIG_ERROR = 2


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cfg_path", required=True, help="DGSA training YAML (configs/training/uncertainty*.yaml)")
    parser.add_argument("--ckpt", required=True, help="training checkpoint ckpt_*.pth or DGSA state dict")
    parser.add_argument("--num_images", type=int, default=100, help="first N faces of data.val")
    parser.add_argument(
        "--weights", choices=("ema", "model"), default="ema", help="which weights of a training checkpoint"
    )
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0, help="degradations and pair draws")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("overrides", nargs="*", help="OmegaConf dot-list overrides of the config")
    return parser.parse_intermixed_args(argv)  # overrides may come before or after the options


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        if args.num_images < 1:
            raise ConfigError(f"--num_images must be >= 1, got {args.num_images}")
        cfg = load_config(args.cfg_path, DGSATrainerConfig, list(args.overrides))
        dgsa = instantiate(cfg.model)
        # EMA weights come first in load_checkpoint's unwrapping; "model" must be asked for
        load_checkpoint(dgsa, resolve_path(args.ckpt), key="model" if args.weights == "model" else None)
        metrics = evaluate_rank_correlation(
            cfg, dgsa, args.num_images, device=args.device, seed=args.seed, batch_size=args.batch_size
        )
    except (ConfigError, CheckpointError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return EXIT_CONFIG_ERROR
    for name, value in metrics.items():
        print(f"{name}={value:.6g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
