"""Real subprocesses for tests: torchrun / main.py runs with a clean, single-threaded environment."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DIST_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def run_process(cmd: list, timeout: int = 300, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    """Run ``cmd`` in ``cwd`` (the repository) with OMP_NUM_THREADS=1 and no inherited torch.distributed
    variables; its exit status is the caller's to check."""
    env = {k: v for k, v in os.environ.items() if k not in DIST_ENV}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def run_checked(cmd: list, timeout: int = 300, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    """:func:`run_process`; fail the test with the command's output tails when it exits non-zero."""
    proc = run_process(cmd, timeout, cwd)
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


def torchrun_main(cfg, save_dir: Path, *overrides: str, nproc: int = 2, timeout: int = 300):
    """``torchrun --nproc_per_node=nproc main.py --cfg_path cfg --save_dir save_dir overrides...``."""
    return run_checked(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            "main.py",
            "--cfg_path",
            str(cfg),
            "--save_dir",
            str(save_dir),
            *overrides,
        ],
        timeout,
    )


def paths_by_step(save_dir: Path, rank: int) -> dict:
    """The sample paths one rank logged per step (``train.log_sample_paths``)."""
    out: dict = {}
    for line in (Path(save_dir) / f"sample_paths_rank{rank}.txt").read_text().splitlines():
        step, path = line.split("\t")
        out.setdefault(int(step), []).append(path)
    return out


def logged_scalars(stdout: str, prefix: str, step: int) -> dict:
    """The scalars a trainer printed on its line ``[prefix] step N: key=value ...``."""
    line = next(text for text in stdout.splitlines() if text.startswith(f"[{prefix}] step {step}:"))
    return {k: float(v) for k, v in re.findall(r"(\S+)=(\S+)", line.split(":", 1)[1])}


def markdown_table(stdout: str) -> dict:
    """{metric: [value per column]} of the Markdown table that ``python -m trainers.evaluate`` prints."""
    rows = [row.strip("|").split("|") for row in stdout.strip().splitlines()[2:]]
    return {cells[0].strip(): [float(c) for c in cells[1:]] for cells in rows}


def evaluate_process(cfg, ckpt, *overrides: str) -> dict:
    """``python -m trainers.evaluate`` of one checkpoint, one process: {metric: value}."""
    proc = run_checked(
        [sys.executable, "-m", "trainers.evaluate", "--cfg_path", str(cfg), "--ckpt", str(ckpt), "c", *overrides]
    )
    return {key: values[0] for key, values in markdown_table(proc.stdout).items()}
