#!/usr/bin/env bash
# The main job. Sets everything up on a fresh machine (see setup.sh; the primary host, ComfyUI 0.33.0, unless
# COMFYUI_PATH names yours), then
#   bash scripts/run.sh --demo [--frames N]                 # no download: the embedded model (weights/embedded)
#   bash scripts/run.sh --reference me.png --driving d.mp4  # your weights in ComfyUI/models (see README)
#   bash scripts/run.sh --check                             # which weight files are missing, and where they go
# Outputs land in ./outputs (--out DIR).
set -euo pipefail
source "$(dirname "$0")/setup.sh"
setup_host
if [ -z "$comfy" ]; then
  echo "no ComfyUI found: $comfy_reason. Set COMFYUI_PATH to your ComfyUI." >&2
  exit 1
fi
echo "ComfyUI $comfy_version: $comfy"
if [ "${1:-}" = "--demo" ]; then
  shift
  exec env COMFYUI_PATH="$comfy" "$py" "$repo/scripts/demo.py" "$@"
fi
cd "$repo"
exec "$py" -m dreamoving.main --comfyui "$comfy" "$@"
