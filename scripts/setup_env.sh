#!/usr/bin/env bash
# Create .venv (once) and install the pinned dependencies. Idempotent: a second run installs nothing new.
# basicsr 1.4.2's setup.py imports torch, so it is installed after torch, without build isolation and
# without its dependency list (which pins tb-nightly); its real runtime dependencies are in requirements.txt.
# requirements-nodeps.txt (offline face detection and identity) is installed without dependency lists too.
#
# Disk: PyPI's torch 2.14.1 for Linux x86_64 is a CUDA build; with its nvidia-* libraries the venv holds
# about 7 GB. pip keeps no download cache here (PIP_NO_CACHE_DIR), which would hold another ~3.5 GB of
# wheels, and torch is installed in a pip run of its own, so that its downloaded wheels are deleted before
# the rest come. Before a first install the free space is printed, with a warning under NEED_GB.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
NEED_GB=11  # the venv (~7 GB) plus torch's wheels while they install (~3.5 GB)
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
if [ ! -x .venv/bin/python ]; then
  free_gb=$(df -Pk . | awk 'NR == 2 {printf "%d", $4 / 1048576}')
  echo "setup: ${free_gb} GB free on the disk of $(pwd) (the environment needs about ${NEED_GB} GB while it installs)"
  if [ "$free_gb" -lt "$NEED_GB" ]; then
    echo "setup: WARNING: less than ${NEED_GB} GB free; pip may stop with 'No space left on device'" >&2
  fi
  "$PY" -m venv .venv
fi
. .venv/bin/activate
pip install --quiet $(grep -E '^(torch|torchvision)==' requirements.txt | cut -d' ' -f1)
pip install --quiet -r requirements.txt
pip install --quiet --no-build-isolation --no-deps basicsr==1.4.2
pip install --quiet --no-deps -r requirements-nodeps.txt
python -c "import torch, torchvision, accelerate, omegaconf, cv2, lpips, tqdm, facexlib; import utils.basicsr_compat; import basicsr; import dlib, facenet_pytorch; print('environment ok: torch', torch.__version__)"
