"""Finding, laying out and importing the ComfyUI host for integration tests (DESIGN §5).

Order: ``COMFYUI_PATH``; else the ComfyUI that holds this pack (``custom_nodes/..``); else a pinned copy
from ``../shared/comfyui`` laid out in the cache folder: ``DREAMOVING_COMFYUI_VERSION`` (one of
``PINNED_VERSIONS``, the primary first). Nothing is written into the host (see ``dreamoving.comfy_launch``).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_COMFY = REPO.parent / "shared" / "comfyui"
PINNED_VERSIONS = ("0.33.0", "0.3.64")  # the newest here (primary) and the oldest supported


def cache_root() -> Path:
    """Folder for generated weights and laid-out hosts, outside the repository."""
    return Path(os.environ.get("DREAMOVING_CACHE") or Path.home() / ".cache" / "dreamoving")


def _is_comfy(path: Path) -> bool:
    return (path / "main.py").is_file() and (path / "comfy").is_dir()


def locate_comfyui() -> tuple[Path | None, str]:
    """Return (ComfyUI root or None, how it was found or why not)."""
    env = os.environ.get("COMFYUI_PATH")
    if env:
        path = Path(env).expanduser()
        return (path, "COMFYUI_PATH") if _is_comfy(path) else (None, f"COMFYUI_PATH={env} holds no ComfyUI")
    holder = REPO.parent.parent
    if REPO.parent.name == "custom_nodes" and _is_comfy(holder):
        return holder, "the ComfyUI holding this pack"
    version = os.environ.get("DREAMOVING_COMFYUI_VERSION") or PINNED_VERSIONS[0]
    if version not in PINNED_VERSIONS:
        return None, f"DREAMOVING_COMFYUI_VERSION={version} is not one of the pinned {', '.join(PINNED_VERSIONS)}"
    laid_out = cache_root() / f"comfyui-{version}"
    if _is_comfy(laid_out):
        return laid_out, f"pinned ComfyUI {version} at {laid_out}"
    installer = SHARED_COMFY / "install.sh"
    if installer.is_file():
        subprocess.run(["bash", str(installer), str(laid_out), sys.executable, version], check=True,
                       stdout=sys.stderr)
        return laid_out, f"pinned ComfyUI {version} laid out at {laid_out}"
    return None, f"no COMFYUI_PATH, the pack is not inside custom_nodes/, and {installer} is absent"


def host_version(root: Path) -> str:
    """The ComfyUI version a host declares (``comfyui_version.py``), or "unknown"."""
    text = (root / "comfyui_version.py").read_text() if (root / "comfyui_version.py").is_file() else ""
    for line in text.splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    return "unknown"


if __name__ == "__main__":  # used by scripts/setup.sh: print the host's path, or why there is none
    found, how = locate_comfyui()
    print(found or "")
    print(how, file=sys.stderr)
