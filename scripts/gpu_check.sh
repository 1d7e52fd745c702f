#!/usr/bin/env bash
# The GPU checks of this project in one run, on a CUDA machine whose python has torch (../shared/data beside
# the repository, as everywhere):
#   bash scripts/gpu_check.sh [OUT_DIR [STEP...]]   # default results/gpu_check, every step but e2e
# In order of priority; each step appends its output to OUT_DIR/log.txt and its markdown report to
# OUT_DIR/reports.md before the next starts:
#   1. the CUDA tests (tests/test_cuda.py: CPU = CUDA results, fp16 / bf16 close to fp32, no host sync per step);
#   2. sampler at 512 px, fp32 UNet: mixed thirds set end to end at ddim250 (1 face per third) and composed,
#      throughput at batch 4, peak CUDA memory at batch 1 and 8;
#   3. step breakdown at 512 px (fp32 sampler; UNet fp32 / channels_last / fp16 autocast / fp16 and bf16 trunk);
#   4. the mixed set end to end with sampler.compile on (torch.compile of the UNet, inductor) beside eager;
#   5. sampler with the fp16 UNet; step breakdown with the fp16 sampler; DBLM cost;
#   on request: compile (the UNet alone compiled, per call), compile_cudagraphs (as 4 with mode
#   reduce-overhead), e2e (the mixed set end to end with 2 faces per third, fp32, nothing else).
# Steps: cuda_tests sampler_fp32 breakdown_fp32 compile_e2e sampler_fp16 breakdown_fp16 dblm compile
# compile_cudagraphs e2e.
# docs/benchmarks.md quotes the reports. Random weights at the real layouts (benchmarks/common.py).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-results/gpu_check}
shift || true
STEPS=" ${*:-cuda_tests sampler_fp32 breakdown_fp32 compile_e2e sampler_fp16 breakdown_fp16 dblm} "
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}  # the interpreter with torch (CUDA build)
WORK=$(mktemp -d)

LOG=$OUT_DIR/log.txt
BENCH=(--device cuda --resolution 512 --workdir "$WORK" --write --out "$OUT_DIR/reports.md")

step() {  # step NAME COMMAND...: if selected, run with its output in the log and print the status
  local name=$1
  shift
  [[ $STEPS == *" $name "* ]] || return 0
  echo "== $name: $*" | tee -a "$LOG"
  local t0=$SECONDS
  "$@" >>"$LOG" 2>&1
  echo "== $name: rc $? in $((SECONDS - t0)) s" | tee -a "$LOG"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
} 2>&1 | tee -a "$LOG"
step cuda_tests "$PY" -m pytest -q -rs tests/test_cuda.py
sampler() {  # sampler STEP PRECISION: the mixed set (end to end and composed), throughput, memory
  step "$1" "$PY" -m benchmarks.bench_sampler "${BENCH[@]}" --precision "$2" --respacing ddim250 --repeats 1 \
    --warmup 1 --component-repeats 20 --faces 30 --e2e-per-third 1 --batches 4 --mem-batches 1 8
}
compiled_e2e() {  # compiled_e2e STEP MODE...: eager and compiled samplers on the same faces, round-robin
  local name=$1
  shift
  step "$name" "$PY" -m benchmarks.bench_sampler "${BENCH[@]}" --respacing ddim250 --repeats 1 --warmup 1 \
    --component-repeats 5 --faces 30 --e2e-per-third 2 --compile inductor "$@"
}
sampler sampler_fp32 fp32
step breakdown_fp32 "$PY" -m benchmarks.bench_step_breakdown "${BENCH[@]}" \
  --repeats 20 --warmup 3 --unet-variants channels_last autocast fp16 bf16 --guidance-batches 1 8 \
  --guidance-repeats 20
compiled_e2e compile_e2e
sampler sampler_fp16 fp16
step breakdown_fp16 "$PY" -m benchmarks.bench_step_breakdown "${BENCH[@]}" \
  --precision fp16 --repeats 20 --warmup 3 --unet-variants --guidance-batches 1 --guidance-repeats 5
step dblm "$PY" -m benchmarks.bench_dblm "${BENCH[@]}" --repeats 20 --warmup 3
step compile "$PY" -m benchmarks.bench_step_breakdown "${BENCH[@]}" \
  --repeats 20 --warmup 3 --unet-variants compile --guidance-batches 1 --guidance-repeats 5
compiled_e2e compile_cudagraphs --compile-mode reduce-overhead
step e2e "$PY" -m benchmarks.bench_sampler "${BENCH[@]}" --respacing ddim250 --repeats 1 --warmup 1 \
  --component-repeats 20 --faces 30 --e2e-per-third 2
rm -rf "$WORK"
