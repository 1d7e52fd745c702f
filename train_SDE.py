"""Train the DBLM standard-deviation estimator SDE (docs/method.md section 4.1).

    accelerate launch train_SDE.py --config configs/train/train_SDE.yaml --save_dir DIR [--resume ...] [key=value ...]

The trainer: trainers/sde.py; options and errors: trainers/cli.py; checkpoints in <save_dir>/checkpoints
and the exported EMA weights <save_dir>/ema_final.pth: trainers/dblm.py.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from trainers import cli

TARGETS = ("trainers.sde.TrainerSDE",)


def build_parser() -> argparse.ArgumentParser:
    return cli.build_parser("train_SDE.py", __doc__.split("\n\n")[0])


def main(argv: Optional[List[str]] = None) -> int:
    return cli.main(argv, build_parser(), TARGETS)


if __name__ == "__main__":
    sys.exit(main())
