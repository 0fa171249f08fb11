"""The repository's scripts as modules, for tests that call them."""
from __future__ import annotations

import importlib.util

from dreamoving.comfy_launch import PACK_DIR


def load_demo():
    """scripts/demo.py (the main job's demo)."""
    spec = importlib.util.spec_from_file_location("dreamoving_demo", PACK_DIR / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
