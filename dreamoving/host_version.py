"""Which ComfyUI releases the pack supports, and what it says at load time about the one it finds."""
from __future__ import annotations

import re

OLDEST_SUPPORTED = "0.3.64"  # the oldest host the tests run on; the newest is ../shared/comfyui's 0.33.0


def version_tuple(version: str) -> tuple[int, ...] | None:
    """``"0.33.0"`` -> (0, 33, 0); None for text that does not start with a dotted release number."""
    match = re.match(r"v?(\d+(?:\.\d+)*)", version.strip())
    return tuple(int(part) for part in match.group(1).split(".")) if match else None


def unsupported_host_message(version: str | None) -> str | None:
    """A warning for a ComfyUI older than the oldest supported release (or of unknown version); None when supported."""
    found = version_tuple(version) if version else None
    if found is None:
        return (f"DreaMoving: could not tell this ComfyUI's version ({version!r}); the pack is tested on "
                f"ComfyUI {OLDEST_SUPPORTED} and newer")
    if found < version_tuple(OLDEST_SUPPORTED):
        return (f"DreaMoving: this ComfyUI is {version}, older than {OLDEST_SUPPORTED}, the oldest release the "
                f"pack supports; update ComfyUI (its nodes may fail to load or give wrong results here)")
    return None
