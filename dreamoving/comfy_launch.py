"""Starting a ComfyUI server that loads this pack, without writing into the ComfyUI checkout.

A base folder holds ``custom_nodes/<pack link>``, input/output/temp/user folders and an
extra_model_paths YAML; the server is ``main.py --listen 127.0.0.1`` on a free (or given) port.
Used by the main job and by the integration tests. Never imports ComfyUI.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from .comfy_client import ComfyClient

PACK_DIR = Path(__file__).resolve().parents[1]
PACK_NAME = "ComfyUI-DreaMoving"


def write_base(base: Path, models: dict[str, Path] | None = None, link_pack: bool = True) -> Path:
    """Lay out ``base`` (pack link in custom_nodes, I/O folders) and its extra-paths YAML; return the YAML."""
    for sub in ("input", "output", "temp", "user"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    lines = ["dreamoving:"]
    if link_pack:
        custom = base / "custom_nodes"
        custom.mkdir(exist_ok=True)
        if not (custom / PACK_NAME).exists():
            (custom / PACK_NAME).symlink_to(PACK_DIR, target_is_directory=True)
        lines.append(f"  custom_nodes: {custom}")
    lines += [f"  {kind}: {path}" for kind, path in sorted((models or {}).items())]
    yaml_path = base / "extra_model_paths.yaml"
    yaml_path.write_text("\n".join(lines) + "\n")
    return yaml_path


def server_command(comfy: Path, base: Path, yaml_path: Path, port: int, cpu: bool) -> list[str]:
    """``main.py`` on loopback with this pack; everything it writes goes under ``base``."""
    command = [sys.executable, str(comfy / "main.py"), "--listen", "127.0.0.1", "--port", str(port),
               "--extra-model-paths-config", str(yaml_path), "--disable-auto-launch",
               "--output-directory", str(base / "output"), "--input-directory", str(base / "input"),
               "--temp-directory", str(base / "temp"), "--user-directory", str(base / "user"),
               "--database-url", "sqlite:///:memory:"]
    return command + ["--cpu"] if cpu else command


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ComfyServer:
    """Starts the server, waits until it answers, and stops it; its log goes to ``base/server.log``."""

    def __init__(self, comfy: Path, base: Path, yaml_path: Path, port: int | None = None, cpu: bool = True,
                 startup_timeout: float = 180.0):
        self.port = port or free_port()
        self.log_path = base / "server.log"
        self.client = ComfyClient(f"http://127.0.0.1:{self.port}")
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(server_command(comfy, base, yaml_path, self.port, cpu), cwd=base,
                                        stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + startup_timeout
        while not self.client.is_up():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"ComfyUI server did not start; its log:\n{self.log()[-4000:]}")
            time.sleep(0.5)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def start_local_server(comfy: Path, base: Path, models: dict[str, Path] | None = None, port: int | None = None):
    """A server on loopback for ``comfy`` with this pack (linked unless already in its custom_nodes)."""
    import torch

    custom = comfy / "custom_nodes"
    installed = custom.is_dir() and any(p.resolve() == PACK_DIR for p in custom.iterdir())
    yaml_path = write_base(base, models, link_pack=not installed)
    return ComfyServer(comfy, base, yaml_path, port=port, cpu=not torch.cuda.is_available())
