"""``cd DiffBIR && accelerate launch train_SDE.py ...``, the paper's command: the repository's train_SDE.py."""

from root_script import run_root_script

if __name__ == "__main__":
    run_root_script("train_SDE.py")
