"""Validation metrics of trained weights, side by side: one column per weights file, one row per metric.

    python -m trainers.evaluate --cfg_path configs/training/diffusion_demo64.yaml \\
        --ckpt experiments/demo64/previous/unet_demo64_s5.pth previous \\
        --ckpt weights/demo/unet_demo64.pth current  data.val.length=100

Any training config (its ``trainer.target`` picks the trainer); each ``--ckpt PATH LABEL`` is a training checkpoint
(its EMA weights) or an exported state dict. Each file is scored by :meth:`trainers.base.TrainerBase.evaluate` (the
run's ``val_ema/*``); trailing ``key=value`` are overrides. Prints a Markdown table; a bad config or checkpoint: one
line, exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from typing import Dict, List, Optional, Sequence

from trainers.base import load_training_config
from utils.checkpoint import CheckpointError
from utils.config import ConfigError
from utils.distributed import cleanup_distributed

EXIT_CONFIG_ERROR = 2


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cfg_path", required=True, help="training YAML (configs/training/ or configs/train/)")
    parser.add_argument(
        "--ckpt",
        nargs=2,
        action="append",
        required=True,
        metavar=("PATH", "LABEL"),
        help="weights to score and their column label (repeatable)",
    )
    parser.add_argument("overrides", nargs="*", help="OmegaConf dot-list overrides, e.g. data.val.length=100")
    return parser.parse_intermixed_args(argv)  # overrides may come before or after the options


def format_table(labels: Sequence[str], results: Sequence[Dict[str, float]]) -> str:
    """A Markdown table: one row per metric (the union of the results' keys, sorted), one column per label."""
    keys = sorted(set().union(*results))
    lines = ["| metric | " + " | ".join(labels) + " |", "|---" + "|---:" * len(labels) + "|"]
    for key in keys:
        cells = [f"{r[key]:.6g}" if key in r else "" for r in results]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    paths, labels = [c[0] for c in args.ckpt], [c[1] for c in args.ckpt]
    try:
        cls, cfg = load_training_config(args.cfg_path, args.overrides)
        with tempfile.TemporaryDirectory() as unused_save_dir:  # evaluation writes no checkpoints
            trainer = cls(cfg, save_dir=unused_save_dir)
            results = trainer.evaluate(paths)
    except (ConfigError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return EXIT_CONFIG_ERROR
    finally:
        cleanup_distributed()
    if trainer.dist.is_main:
        print(format_table(labels, results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
