"""A real ComfyUI server (``main.py --cpu``) on a free loopback port, for HTTP-level tests."""
from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from dreamoving.comfy_client import ComfyClient
from dmtest.comfy_host import server_command


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ComfyServer:
    """Starts the server, waits until it answers, and stops it; its log goes to ``base/server.log``."""

    def __init__(self, comfy: Path, base: Path, yaml_path: Path, startup_timeout: float = 180.0):
        self.port = free_port()
        self.log_path = base / "server.log"
        self.client = ComfyClient(f"http://127.0.0.1:{self.port}")
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(server_command(comfy, base, yaml_path, self.port), cwd=base,
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
