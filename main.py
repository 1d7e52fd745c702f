"""Train the prior, RM0 or DGSA (docs/method.md section 11).

    torchrun --nproc_per_node=8 main.py --cfg_path configs/training/uncertainty.yaml --save_dir DIR
    python main.py --cfg_path configs/training/diffusion_demo64.yaml --save_dir DIR train.iterations=10

The YAML names its trainer class in ``trainer.target`` (e.g. ``trainers.diffusion.TrainerDiffusion``)
and is validated against that class's ``config_schema``. Options, overrides and errors:
:mod:`trainers.cli`; the loop and its checkpoints: :mod:`trainers.base`.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from trainers import cli
from trainers.base import TrainerBase, trainer_class
from utils.config import load_config, require_keys


def build_parser() -> argparse.ArgumentParser:
    return cli.build_parser("main.py", __doc__.split("\n\n")[0], save_dir_required=True)


def make_trainer(args: argparse.Namespace) -> TrainerBase:
    cls = trainer_class(args.config, args.overrides)
    cfg = load_config(args.config, cls.config_schema, args.overrides)
    require_keys(cfg, args.config)
    return cls(cfg, args.save_dir, args.resume)


def main(argv: Optional[List[str]] = None) -> int:
    return cli.main(argv, build_parser(), make_trainer)


if __name__ == "__main__":
    sys.exit(main())
