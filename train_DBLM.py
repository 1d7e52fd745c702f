"""Train the DBLM transformation model TM or refinement model RM (docs/method.md sections 4.2-4.3).

    accelerate launch train_DBLM.py --config configs/train/train_DBLM_TM.yaml [--resume ...] [key=value ...]
    accelerate launch train_DBLM.py --config configs/train/train_DBLM_RM.yaml

The config's ``task`` (tm or rm) selects the network. The trainers: trainers/transform.py; options and
errors: trainers/cli.py; checkpoints in <save_dir>/checkpoints and the exported EMA weights
<save_dir>/ema_final.pth: trainers/dblm.py.
"""
import sys

from trainers.dblm import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], tasks=("tm", "rm"), prog="train_DBLM.py"))
