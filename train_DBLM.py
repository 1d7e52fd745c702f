"""Train the DBLM transformation model TM or refinement model RM (docs/method.md sections 4.2-4.3).

    accelerate launch train_DBLM.py --config configs/train/train_DBLM_TM.yaml --save_dir DIR [key=value ...]
    accelerate launch train_DBLM.py --config configs/train/train_DBLM_RM.yaml --save_dir DIR

The config's ``trainer.target`` (TrainerTM or TrainerRM) selects the network. The trainers: trainers/transform.py;
options and errors: trainers/cli.py; checkpoints in <save_dir>/checkpoints and the exported EMA weights
<save_dir>/ema_final.pth: trainers/dblm.py.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from trainers import cli

TARGETS = ("trainers.transform.TrainerTM", "trainers.transform.TrainerRM")


def build_parser() -> argparse.ArgumentParser:
    return cli.build_parser("train_DBLM.py", __doc__.split("\n\n")[0])


def main(argv: Optional[List[str]] = None) -> int:
    return cli.main(argv, build_parser(), TARGETS)


if __name__ == "__main__":
    sys.exit(main())
