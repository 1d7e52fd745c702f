"""Train the DBLM standard-deviation estimator SDE (docs/method.md section 4.1).

    accelerate launch train_SDE.py --config configs/train/train_SDE.yaml [--resume auto|none|PATH] [key=value ...]

The trainer: trainers/sde.py; options and errors: trainers/cli.py; checkpoints in <save_dir>/checkpoints
and the exported EMA weights <save_dir>/ema_final.pth: trainers/dblm.py.
"""
import sys

from trainers.dblm import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], tasks=("sde",), prog="train_SDE.py"))
