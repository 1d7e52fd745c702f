"""Train the DBLM standard-deviation estimator SDE (docs/method.md section 4.1).

    accelerate launch train_SDE.py --config configs/train/train_SDE.yaml [--resume auto|none|PATH] [key=value ...]

Trainer: trainers/sde.py; options: trainers/cli.py; outputs: trainers/dblm.py.
"""
import sys

from trainers.dblm import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], tasks=("sde",), prog="train_SDE.py"))
