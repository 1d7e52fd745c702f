"""Train the DBLM transformation model TM or refinement model RM (docs/method.md section 4) with accelerate.

    accelerate launch train_DBLM.py --config configs/train/train_DBLM_TM.yaml [--resume ...] [key=value ...]
    accelerate launch train_DBLM.py --config configs/train/train_DBLM_RM.yaml

The config's ``task`` (tm or rm) selects the network. The loop, checkpoints (resumed automatically from
<save_dir>/checkpoints) and the exported EMA weights <save_dir>/ema_final.pth are described in
DiffBIR/training.py. Exit status 2 on a bad config.
"""
import sys

from DiffBIR.training import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], tasks=("tm", "rm"), prog="train_DBLM.py"))
