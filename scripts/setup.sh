# Sourced by test.sh and run.sh: a virtual environment, a ComfyUI host, and every requirement.
#   - the environment: $DREAMOVING_VENV, default ~/.cache/dreamoving/venv (created with $PYTHON or python3)
#   - the host: $COMFYUI_PATH, else the ComfyUI holding this pack, else the pinned copy in ../shared/comfyui
#     laid out under ~/.cache/dreamoving; its requirements (torch included) installed first
# Sets: repo, cache, py, comfy (empty when no host was found) and comfy_reason.
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${DREAMOVING_CACHE:-$HOME/.cache/dreamoving}
venv=${DREAMOVING_VENV:-$cache/venv}
mkdir -p "$cache"
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
py="$venv/bin/python"
comfy=$(cd "$repo/tests" && "$py" -m dmtest.comfy_host 2>"$cache/comfy_host.txt") || comfy=""
comfy_reason=$(tail -n 1 "$cache/comfy_host.txt")
if [ -n "$comfy" ]; then
  "$py" -m pip install -q -r "$comfy/requirements.txt"
fi
"$py" -m pip install -q -r "$repo/requirements.txt" -r "$repo/tests/requirements.txt"
