#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine (see setup.sh), then run the whole suite on every
# supported ComfyUI host: the pinned v0.33.0 and v0.3.64 (one layout and environment each, cached), or only
# your ComfyUI when COMFYUI_PATH is set or the pack sits in its custom_nodes/.
#   bash scripts/test.sh [pytest args]
set -euo pipefail
source "$(dirname "$0")/setup.sh"
# the real-frontend test drives Debian's chromium through playwright (no browser download)
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 || echo "could not install chromium"
fi
command -v chromium >/dev/null || echo "NOTE: no chromium: the test that loads the workflows in ComfyUI's frontend is skipped"
if external_host; then hosts=yours; else hosts=$pinned_versions; fi
status=0
summary=""
for version in $hosts; do
  setup_host "$version"
  if [ -n "$comfy" ]; then
    echo "=== ComfyUI $comfy_version for the integration tests: $comfy ($comfy_reason)"
  else
    echo "================================================================================"
    echo "INTEGRATION TESTS WILL BE SKIPPED: no ComfyUI host ($comfy_reason)."
    echo "Set COMFYUI_PATH to a ComfyUI checkout to run them."
    echo "================================================================================"
  fi
  log="$cache/pytest-$version.log"
  set +e
  (cd "$repo" && DREAMOVING_COMFYUI_VERSION=$version COMFYUI_PATH=${comfy:-${COMFYUI_PATH:-}} \
    "$py" -m pytest tests "$@") 2>&1 | tee "$log"
  run=${PIPESTATUS[0]}
  set -e
  [ "$run" -eq 5 ] && { echo "pytest collected no tests"; run=0; }
  [ "$run" -eq 0 ] || status=$run
  summary+="ComfyUI $comfy_version: $(grep -E '^=+ .*(passed|failed|error|skipped|no tests).* =+$' "$log" | tail -n 1 | tr -d '=' | xargs) (exit $run)"$'\n'
  [ -n "$comfy" ] || break  # without a host, one run of the unit tests says it all
done
echo "=== results per host"
printf '%s' "$summary"
exit "$status"
