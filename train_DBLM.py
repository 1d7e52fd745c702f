"""Train the DBLM transformation model TM or refinement model RM (docs/method.md sections 4.2-4.3).

    accelerate launch train_DBLM.py --config configs/train/train_DBLM_TM.yaml [--resume ...] [key=value ...]
    accelerate launch train_DBLM.py --config configs/train/train_DBLM_RM.yaml

Trainers: trainers/transform.py; options: trainers/cli.py; outputs: trainers/dblm.py.
"""
import sys

from trainers.dblm import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], tasks=("tm", "rm"), prog="train_DBLM.py"))
