#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine (see setup.sh), then run them:
#   bash scripts/test.sh [pytest args]
set -euo pipefail
source "$(dirname "$0")/setup.sh"
if [ -n "$comfy" ]; then
  echo "ComfyUI host for the integration tests: $comfy ($comfy_reason)"
else
  echo "================================================================================"
  echo "INTEGRATION TESTS WILL BE SKIPPED: no ComfyUI host ($comfy_reason)."
  echo "Set COMFYUI_PATH to a ComfyUI checkout to run them."
  echo "================================================================================"
fi
cd "$repo"
status=0
"$py" -m pytest tests "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests"
  status=0
fi
exit "$status"
