"""``cd DiffBIR && accelerate launch train_DBLM.py ...``, the paper's command: the repository's train_DBLM.py."""

from root_script import run_root_script

if __name__ == "__main__":
    run_root_script("train_DBLM.py")
