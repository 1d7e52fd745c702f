#!/usr/bin/env bash
# Train every 64 px demo network with the project's own scripts and configs, in the paper's order, and
# export the EMA weights to weights/demo/ with their provenance (weights/demo/MANIFEST.md).
#   bash scripts/train_demo.sh            # all stages
#   bash scripts/train_demo.sh dsst dgsa  # selected stages (prior restorer sde tm rm dsst dgsa dgsa_full)
# Every run resumes from its newest checkpoint in experiments/demo64/<stage>, so an interrupted script
# can simply be started again. Step counts and batch sizes are in the configs named below.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
RUNS=experiments/demo64
OUT=weights/demo
mkdir -p "$RUNS" "$OUT"
STAGES=("$@")
[ ${#STAGES[@]} -gt 0 ] || STAGES=(prior restorer sde tm rm dsst dgsa dgsa_full)

# train_and_export RUN_DIR OUT_FILE CONFIG COMMAND...: run the training command, then export its EMA weights
train_and_export() {
  local run_dir=$1 out=$2 config=$3
  shift 3
  "$@"
  python -m utils.export_weights --run_dir "$run_dir" --out "$out" --config "$config" --command "$*"
}

for stage in "${STAGES[@]}"; do
  case "$stage" in
    prior)    train_and_export "$RUNS/diffusion" "$OUT/unet_demo64.pth" configs/training/diffusion_demo64.yaml \
                python main.py --cfg_path configs/training/diffusion_demo64.yaml --save_dir "$RUNS/diffusion" ;;
    restorer) train_and_export "$RUNS/restorer" "$OUT/restorer_demo64.pth" configs/training/swinir_demo64.yaml \
                python main.py --cfg_path configs/training/swinir_demo64.yaml --save_dir "$RUNS/restorer" ;;
    sde)      train_and_export "$RUNS/sde" "$OUT/sde_demo64.pth" configs/train/train_SDE_demo64.yaml \
                accelerate launch --num_processes 1 --cpu train_SDE.py --config configs/train/train_SDE_demo64.yaml \
                --save_dir "$RUNS/sde" ;;
    tm)       train_and_export "$RUNS/tm" "$OUT/tm_demo64.pth" configs/train/train_DBLM_TM_demo64.yaml \
                accelerate launch --num_processes 1 --cpu train_DBLM.py --config configs/train/train_DBLM_TM_demo64.yaml \
                --save_dir "$RUNS/tm" ;;
    rm)       train_and_export "$RUNS/rm" "$OUT/rm_demo64.pth" configs/train/train_DBLM_RM_demo64.yaml \
                accelerate launch --num_processes 1 --cpu train_DBLM.py --config configs/train/train_DBLM_RM_demo64.yaml \
                --save_dir "$RUNS/rm" ;;
    dsst)     python scripts/make_dsst.py --images ../shared/data/faces_hq/celeba128_train.txt --resolution 64 \
                --config configs/dsst/demo64.yaml --out "$OUT/dsst_demo64.json" ;;
    dgsa)     train_and_export "$RUNS/dgsa" "$OUT/dgsa_demo64.pth" configs/training/uncertainty_demo64.yaml \
                python main.py --cfg_path configs/training/uncertainty_demo64.yaml --save_dir "$RUNS/dgsa" ;;
    dgsa_full) train_and_export "$RUNS/dgsa_full" "$OUT/dgsa_full_demo64.pth" configs/training/uncertainty_demo64.yaml \
                python main.py --cfg_path configs/training/uncertainty_demo64.yaml --save_dir "$RUNS/dgsa_full" \
                model.params.map_downsample=1 ;;  # evaluation row 6: the same DGSA at full resolution
    *) echo "unknown stage '$stage' (prior restorer sde tm rm dsst dgsa dgsa_full)" >&2; exit 2 ;;
  esac
done
