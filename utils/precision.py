"""Where mixed precision (``train.amp``) runs: the one rule shared by the torchrun trainers (trainers/base.py)
and the accelerate loop (DiffBIR/training.py).

fp16 autocast needs CUDA (and a GradScaler); bf16 autocast runs on CUDA and on the CPU, where AMX /
AVX512-BF16 make a training step 1.3-1.6x faster (docs/benchmarks.md, benchmarks/bench_train_precision.py).
Elsewhere the trainers run in float32.
"""
from __future__ import annotations


def autocast_runs(precision: str, on_cuda: bool) -> bool:
    """Whether autocast in ``precision`` ('bf16' or 'fp16') is used on this device."""
    return on_cuda or precision == "bf16"
