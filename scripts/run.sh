#!/usr/bin/env bash
# The main job. Sets everything up on a fresh machine (see setup.sh), then
#   bash scripts/run.sh --demo [--frames N]                 # no weights needed: generated stand-in models
#   bash scripts/run.sh --reference me.png --driving d.mp4  # your weights in ComfyUI/models (see README)
#   bash scripts/run.sh --check                             # which weight files are missing, and where they go
# Outputs land in ./outputs (--out DIR).
set -euo pipefail
source "$(dirname "$0")/setup.sh"
if [ -z "$comfy" ]; then
  echo "no ComfyUI found: $comfy_reason. Set COMFYUI_PATH to your ComfyUI." >&2
  exit 1
fi
if [ "${1:-}" = "--demo" ]; then
  shift
  exec "$py" "$repo/scripts/demo.py" "$@"
fi
cd "$repo"
exec "$py" -m dreamoving.main --comfyui "$comfy" "$@"
