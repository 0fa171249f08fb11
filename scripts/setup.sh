# Sourced by test.sh and run.sh. Defines setup_host, which readies one ComfyUI host with its own environment:
#   setup_host [VERSION]   VERSION: a pinned ComfyUI from ../shared/comfyui (default: the primary, 0.33.0)
#   - the host: $COMFYUI_PATH, else the ComfyUI holding this pack, else the pinned VERSION laid out under
#     ~/.cache/dreamoving/comfyui-VERSION; its requirements (torch included) installed first
#   - the environment: $DREAMOVING_VENV, else ~/.cache/dreamoving/venv-VERSION for a pinned host (one per
#     version) or ~/.cache/dreamoving/venv for yours (created with $PYTHON or python3)
# Sets: repo, cache, pinned_versions; setup_host sets py, comfy (empty when no host was found), comfy_reason
# and comfy_version.
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${DREAMOVING_CACHE:-$HOME/.cache/dreamoving}
pinned_versions="0.33.0 0.3.64"  # the newest here (primary) and the oldest supported
mkdir -p "$cache"

external_host() {  # true when the host is the user's: COMFYUI_PATH, or the ComfyUI holding this pack
  [ -n "${COMFYUI_PATH:-}" ] || { [ "$(basename "$(dirname "$repo")")" = custom_nodes ] &&
    [ -f "$(dirname "$(dirname "$repo")")/main.py" ]; }
}

setup_host() {
  local version=${1:-${pinned_versions%% *}} venv
  if external_host; then venv=${DREAMOVING_VENV:-$cache/venv}; else venv=${DREAMOVING_VENV:-$cache/venv-$version}; fi
  [ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
  py="$venv/bin/python"
  comfy=$(cd "$repo/tests" && DREAMOVING_COMFYUI_VERSION=$version "$py" -m dmtest.comfy_host \
    2>"$cache/comfy_host.txt") || comfy=""
  comfy_reason=$(tail -n 1 "$cache/comfy_host.txt")
  comfy_version=none
  if [ -n "$comfy" ]; then
    "$py" -m pip install -q -r "$comfy/requirements.txt"
    comfy_version=$(cd "$repo/tests" && "$py" -c "import sys; from pathlib import Path; from dmtest.comfy_host import host_version; print(host_version(Path(sys.argv[1])))" "$comfy")
  fi
  "$py" -m pip install -q -r "$repo/requirements.txt" -r "$repo/tests/requirements.txt"
  "$py" "$repo/install.py"  # leaves one onnxruntime build (insightface brings the CPU one beside the GPU one)
}
