#!/usr/bin/env bash
# The main job: set everything up on a fresh machine (see setup.sh), then serve ComfyUI with DreaMoving
# on http://127.0.0.1:8188 until stopped:   bash scripts/run.sh [--port N] [--base DIR]
set -euo pipefail
source "$(dirname "$0")/setup.sh"
if [ -z "$comfy" ]; then
  echo "no ComfyUI found: $comfy_reason. Set COMFYUI_PATH to your ComfyUI." >&2
  exit 1
fi
cd "$repo"
exec "$py" -m dreamoving.run_comfyui --comfyui "$comfy" "$@"
