#!/usr/bin/env bash
# Create .venv (once) and install the pinned dependencies. Idempotent: a second run installs nothing new.
# basicsr 1.4.2's setup.py imports torch, so it is installed after torch, without build isolation and
# without its dependency list (which pins tb-nightly); its real runtime dependencies are in requirements.txt.
# requirements-nodeps.txt (offline face detection and identity) is installed without dependency lists too.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
pip install --quiet --disable-pip-version-check -r requirements.txt
pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps basicsr==1.4.2
pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
python -c "import torch, torchvision, accelerate, omegaconf, cv2, lpips, tqdm, facexlib; import utils.basicsr_compat; import basicsr; import dlib, facenet_pytorch; print('environment ok: torch', torch.__version__)"
