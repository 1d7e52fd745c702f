#!/usr/bin/env bash
# Install the headless browser of the web page's browser test (tests/test_app.py): Debian's chromium and
# chromium-driver. Idempotent (does nothing when both are on PATH) and tolerant: when apt-get is missing,
# not permitted or fails, it says why and exits 0, and the browser test skips with its reason.
set -uo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  echo "browser: $(chromium --version 2>/dev/null | head -n1); $(chromedriver --version 2>/dev/null | cut -d' ' -f1-2)"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "browser: apt-get not found; not installing chromium (the browser test will skip)"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "browser: not root and no password-less sudo; not installing chromium (the browser test will skip)"
    exit 0
  fi
fi
log=$(mktemp)
if $SUDO apt-get update -qq >"$log" 2>&1 \
   && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >>"$log" 2>&1; then
  echo "browser: installed $(chromium --version 2>/dev/null | head -n1)"
  $SUDO apt-get clean >/dev/null 2>&1 || true  # the downloaded .deb files: disk for the Python environment
else
  echo "browser: apt-get failed (the browser test will skip); last lines:"
  tail -n 5 "$log"
fi
rm -f "$log"
exit 0
