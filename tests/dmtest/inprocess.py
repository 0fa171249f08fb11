"""A ComfyUI host imported into the test process: validate and execute API-format prompts directly."""
from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

from dreamoving.comfy_launch import PACK_NAME


class PromptFailed(RuntimeError):
    """Validation or execution failed; the message carries ComfyUI's own error details."""


class _RecordingServer:
    """The part of PromptServer that PromptExecutor talks to; keeps the messages it is sent."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.messages: list[tuple[str, dict]] = []

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))

    def queue_updated(self):
        pass


class InProcessHost:
    """Imports ComfyUI from ``comfy_root`` with model folders from ``yaml_path``; loads the pack on demand."""

    def __init__(self, comfy_root: Path, base: Path, yaml_path: Path):
        if str(comfy_root) not in sys.path:
            sys.path.insert(0, str(comfy_root))
        import torch
        from comfy.cli_args import args  # parsed empty: ComfyUI's argument parsing is off when imported

        args.cpu = not torch.cuda.is_available()
        import folder_paths
        import utils.extra_config

        folder_paths.set_output_directory(str(base / "output"))
        folder_paths.set_input_directory(str(base / "input"))
        folder_paths.set_temp_directory(str(base / "temp"))
        folder_paths.set_user_directory(str(base / "user"))
        utils.extra_config.load_extra_path_config(str(yaml_path))
        import nodes

        self.nodes = nodes
        self.pack_path = base / "custom_nodes" / PACK_NAME
        self.pack_loaded = False
        failed = asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        if failed:
            raise RuntimeError(f"ComfyUI's own extra nodes failed to import: {failed}")

    def load_pack(self) -> bool:
        """Load this pack as ComfyUI loads a custom node; True when it imported and registered."""
        if not self.pack_loaded:
            self.pack_loaded = asyncio.run(self.nodes.load_custom_node(str(self.pack_path)))
        return self.pack_loaded

    def pack_module(self, dotted: str):
        """A module of the loaded pack, e.g. ``pack_module("nodes.context_patch")`` (ComfyUI names the package by path)."""
        return sys.modules[f"{str(self.pack_path).replace('.', '_x_')}.{dotted}"]

    def run(self, prompt: dict) -> dict[str, list]:
        """Validate and execute ``prompt`` with fresh caches; return each executed node's outputs."""
        import execution

        prompt_id = str(uuid.uuid4())
        ok, error, outputs, node_errors = asyncio.run(execution.validate_prompt(prompt_id, prompt, None))
        if not ok:
            raise PromptFailed(f"invalid prompt: {error}; node_errors: {node_errors}")
        server = _RecordingServer()
        executor = execution.PromptExecutor(server)
        executor.execute(prompt, prompt_id, {"client_id": "dmtest"}, outputs)
        if not executor.success:
            errors = [data for event, data in server.messages if event == "execution_error"]
            detail = "; ".join(f"{e.get('node_type')}: {e.get('exception_message')}" for e in errors)
            raise PromptFailed(f"execution failed: {detail}")
        results = {}
        for node_id in prompt:
            entry = executor.caches.outputs.get(node_id)
            if entry is not None:
                results[node_id] = entry
        return results
