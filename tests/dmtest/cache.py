"""Writing generated test files once: built under a temporary name, then moved into place."""
from __future__ import annotations

from pathlib import Path
from typing import Callable


def write_once(path: Path, write: Callable[[Path], None]) -> Path:
    """Unless ``path`` exists, ``write`` it to a hidden temporary name beside it and rename it into place
    (an interrupted run never leaves a half-written file under the real name)."""
    if not path.exists():
        tmp = path.with_name(f".{path.name}.tmp")
        write(tmp)
        tmp.replace(path)
    return path
