#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, then run them:   bash scripts/test.sh [pytest args]
#   - a virtual environment ($DREAMOVING_VENV, default ~/.cache/dreamoving/venv)
#   - a ComfyUI host: $COMFYUI_PATH, else the ComfyUI holding this pack, else the pinned copy in
#     ../shared/comfyui laid out under ~/.cache/dreamoving; its requirements (torch included) installed
#   - this pack's requirements and the test tools
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${DREAMOVING_CACHE:-$HOME/.cache/dreamoving}
venv=${DREAMOVING_VENV:-$cache/venv}
mkdir -p "$cache"
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
py="$venv/bin/python"

comfy=$(cd "$repo/tests" && "$py" -m dmtest.comfy_host 2>"$cache/comfy_host.txt") || true
if [ -n "$comfy" ]; then
  echo "ComfyUI host: $comfy ($(cat "$cache/comfy_host.txt"))"
  "$py" -m pip install -q -r "$comfy/requirements.txt"
else
  echo "================================================================================"
  echo "INTEGRATION TESTS WILL BE SKIPPED: no ComfyUI host ($(cat "$cache/comfy_host.txt"))."
  echo "Set COMFYUI_PATH to a ComfyUI checkout to run them."
  echo "================================================================================"
fi
"$py" -m pip install -q -r "$repo/requirements.txt" -r "$repo/tests/requirements.txt"

cd "$repo"
status=0
"$py" -m pytest tests "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests"
  status=0
fi
exit "$status"
