"""Train the DBLM standard-deviation estimator SDE (docs/method.md section 4) with accelerate.

    accelerate launch train_SDE.py --config configs/train/train_SDE.yaml [--resume auto|none|DIR] [key=value ...]

The loop, checkpoints (resumed automatically from <save_dir>/checkpoints) and the exported EMA weights
<save_dir>/ema_final.pth are described in DiffBIR/training.py. Exit status 2 on a bad config.
"""
import sys

from DiffBIR.training import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], tasks=("sde",), prog="train_SDE.py"))
