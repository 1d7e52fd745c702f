"""Train a network with a torchrun trainer (docs/method.md section 11).

    torchrun --nproc_per_node=8 main.py --cfg_path configs/training/uncertainty.yaml --save_dir DIR
    python main.py --cfg_path configs/training/diffusion_demo64.yaml --save_dir DIR train.iterations=10

The YAML names its trainer class in ``trainer.target`` (e.g. ``trainers.diffusion.TrainerDiffusion``);
the file is validated against that class's ``config_schema`` and trailing ``key=value`` arguments are
OmegaConf dot-list overrides. ``--resume auto`` (default) continues from the newest checkpoint in
``--save_dir``; ``--resume PATH`` from a given checkpoint; ``--resume none`` starts afresh. A bad
configuration (or a missing/unfit checkpoint) prints one line naming the key (file) and exits with
status 2.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from trainers.base import trainer_class
from utils.checkpoint import CheckpointError
from utils.config import ConfigError, load_config
from utils.distributed import cleanup_distributed, launched_rank

EXIT_CONFIG_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cfg_path", "--config", dest="cfg_path", required=True,
                        help="training YAML (configs/training/*.yaml)")
    parser.add_argument("--save_dir", required=True, help="folder for checkpoints, logs and tensorboard")
    parser.add_argument("--resume", default="auto", help="auto (newest checkpoint in save_dir), none, or a path")
    parser.add_argument("--seed", type=int, default=None, help="overrides train.seed")
    parser.add_argument("overrides", nargs="*", help="OmegaConf dot-list overrides, e.g. train.iterations=10")
    return parser


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    return build_parser().parse_intermixed_args(argv)  # overrides may come before or after the options


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    overrides = list(args.overrides) + ([f"train.seed={args.seed}"] if args.seed is not None else [])
    try:
        cls = trainer_class(args.cfg_path, overrides)
        cfg = load_config(args.cfg_path, cls.config_schema, overrides)
        cls(cfg, save_dir=args.save_dir, resume=args.resume).train()
    except (ConfigError, CheckpointError) as err:
        if launched_rank() == 0:  # every rank meets the same configuration error: say it once
            print(f"error: {err}", file=sys.stderr, flush=True)
        return EXIT_CONFIG_ERROR
    finally:
        cleanup_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
