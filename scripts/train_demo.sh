#!/usr/bin/env bash
# Train every 64 px demo network with the project's own scripts and configs, in the paper's order, and
# export the EMA weights to weights/demo/ with their provenance (weights/demo/MANIFEST.md).
#   bash scripts/train_demo.sh            # all stages
#   bash scripts/train_demo.sh dsst dgsa  # selected stages (prior restorer sde tm rm dsst dgsa)
# Every run resumes from its newest checkpoint in experiments/demo64/<stage>, so an interrupted script
# can simply be started again. Step counts and batch sizes are in the configs named below.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
RUNS=experiments/demo64
OUT=weights/demo
mkdir -p "$RUNS" "$OUT"
STAGES=("$@")
[ ${#STAGES[@]} -gt 0 ] || STAGES=(prior restorer sde tm rm dsst dgsa)

export_ema() {  # export_ema RUN_DIR OUT_FILE CONFIG COMMAND
  python -m utils.export_weights --run_dir "$1" --out "$2" --config "$3" --command "$4"
}

for stage in "${STAGES[@]}"; do
  case "$stage" in
    prior)
      cmd="python main.py --cfg_path configs/training/diffusion_demo64.yaml --save_dir $RUNS/diffusion"
      $cmd && export_ema "$RUNS/diffusion" "$OUT/unet_demo64.pth" configs/training/diffusion_demo64.yaml "$cmd" ;;
    restorer)
      cmd="python main.py --cfg_path configs/training/swinir_demo64.yaml --save_dir $RUNS/restorer"
      $cmd && export_ema "$RUNS/restorer" "$OUT/restorer_demo64.pth" configs/training/swinir_demo64.yaml "$cmd" ;;
    sde)
      cmd="accelerate launch --num_processes 1 --cpu train_SDE.py --config configs/train/train_SDE_demo64.yaml"
      $cmd && export_ema "$RUNS/sde" "$OUT/sde_demo64.pth" configs/train/train_SDE_demo64.yaml "$cmd" ;;
    tm)
      cmd="accelerate launch --num_processes 1 --cpu train_DBLM.py --config configs/train/train_DBLM_TM_demo64.yaml"
      $cmd && export_ema "$RUNS/tm" "$OUT/tm_demo64.pth" configs/train/train_DBLM_TM_demo64.yaml "$cmd" ;;
    rm)
      cmd="accelerate launch --num_processes 1 --cpu train_DBLM.py --config configs/train/train_DBLM_RM_demo64.yaml"
      $cmd && export_ema "$RUNS/rm" "$OUT/rm_demo64.pth" configs/train/train_DBLM_RM_demo64.yaml "$cmd" ;;
    dsst)
      python -m models.dsst --images ../shared/data/faces_hq/celeba128_train.txt --resolution 64 \
        --config configs/dsst/demo64.yaml --out "$OUT/dsst_demo64.json" ;;
    dgsa)
      cmd="python main.py --cfg_path configs/training/uncertainty_demo64.yaml --save_dir $RUNS/dgsa"
      $cmd && export_ema "$RUNS/dgsa" "$OUT/dgsa_demo64.pth" configs/training/uncertainty_demo64.yaml "$cmd" ;;
    *) echo "unknown stage '$stage' (prior restorer sde tm rm dsst dgsa)" >&2; exit 2 ;;
  esac
done
