"""Train any of the six networks; by convention the prior, RM0 and DGSA (docs/method.md section 11).

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


def build_parser() -> argparse.ArgumentParser:
    return cli.build_parser("main.py", __doc__.split("\n\n")[0])


def main(argv: Optional[List[str]] = None) -> int:
    return cli.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
