"""The main job: ComfyUI with this pack loaded, serving its UI on loopback until stopped.

    python -m dreamoving.run_comfyui --comfyui PATH [--port 8188] [--base DIR]

Models come from the ComfyUI's own folders (and its extra_model_paths.yaml); what the server writes
(outputs, user settings) goes under ``--base``. Nothing is written into the ComfyUI checkout.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from .comfy_launch import PACK_DIR, ComfyServer, write_base


def pack_installed_in(comfy: Path) -> bool:
    custom = comfy / "custom_nodes"
    return custom.is_dir() and any(p.resolve() == PACK_DIR for p in custom.iterdir())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH"), required="COMFYUI_PATH" not in os.environ,
                        help="ComfyUI checkout (default: $COMFYUI_PATH)")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--base", type=Path, default=Path.home() / ".cache" / "dreamoving" / "run",
                        help="folder for the server's outputs, inputs and user data")
    args = parser.parse_args(argv)
    import torch

    comfy = Path(args.comfyui).resolve()
    args.base.mkdir(parents=True, exist_ok=True)
    yaml_path = write_base(args.base, link_pack=not pack_installed_in(comfy))
    server = ComfyServer(comfy, args.base, yaml_path, port=args.port, cpu=not torch.cuda.is_available())
    print(f"ComfyUI with DreaMoving: {server.client.url}  (outputs in {args.base / 'output'}, log {server.log_path})")
    try:
        return server.process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    raise SystemExit(main())
