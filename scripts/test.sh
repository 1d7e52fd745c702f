#!/usr/bin/env bash
# Set up the environment (if needed) and run the whole test suite. This is the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
. .venv/bin/activate
python -m pytest -q -p no:cacheprovider tests "$@"
