#!/usr/bin/env bash
# The README's demo command: set up .venv, restore the demo faces with the shipped 64 px models
# (weights/demo/) and write a comparison grid (results/demo/grid_astronaut.png). Extra arguments go to
# scripts/demo.py, e.g. `bash scripts/demo.sh --input my_aligned_faces/`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
. .venv/bin/activate
python scripts/demo.py "$@"
