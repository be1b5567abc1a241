#!/usr/bin/env bash
# One-time set-up on a fresh Debian 12 machine: system packages, .venv, the package with its extras.
# Idempotent: a second run only checks. Called by `make demo` and `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."

# 1. Debian packages: Xvfb and the xcb libraries PyQt5 needs (napari under a virtual screen),
#    and ImageJ 1.53t, the reference for the grain-measurement parity tests.
need=()
for pkg in xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-randr0 libxcb-render-util0 \
           libxcb-shape0 libxcb-xkb1 libxkbcommon-x11-0 libgl1 libegl1 imagej; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# 2. The virtual environment and the package (editable), torch pinned to the CPU build.
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.mmdl-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -c constraints.txt "torch==2.13.0"
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[test,all]"
  touch "$stamp"
fi

# 3. No CUDA build of torch may sneak in.
.venv/bin/python - <<'PY'
import torch, sys
if torch.version.cuda is not None:
    sys.exit(f"setup: torch {torch.__version__} is a CUDA build; reinstall with -c constraints.txt")
print(f"setup: ok (torch {torch.__version__}, CPU build)")
PY
