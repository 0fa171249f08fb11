"""A ComfyUI host imported into the test process: validate and execute API-format prompts directly.

Works with the executors of every supported host: v0.3.64 (``PromptExecutor(server)``, synchronous output
cache) and v0.33.0 (``cache_args`` required, ``caches.outputs.get`` a coroutine returning a ``CacheEntry``,
built-in nodes that register through ``PromptServer.instance``).
"""
from __future__ import annotations

import asyncio
import inspect
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


def _install_server_stand_in(server: _RecordingServer) -> None:
    """Make ``server`` the ``PromptServer.instance`` that built-in nodes register with (v0.33.0's node
    replacements); its node-replacement registry is ComfyUI's own class where the host has one."""
    import server as comfy_server

    try:
        from app.node_replace_manager import NodeReplaceManager
        server.node_replace_manager = NodeReplaceManager()
    except ImportError:  # v0.3.64 has no node replacements
        pass
    comfy_server.PromptServer.instance = server


def new_executor(server, lru: int = 0):
    """A PromptExecutor, whatever the host's constructor asks for: the classic cache (outputs kept while a
    prompt uses them), or with ``lru`` an LRU cache that keeps that many outputs across prompts."""
    import execution

    cache_type = execution.CacheType.LRU if lru else execution.CacheType.CLASSIC
    if "cache_args" in inspect.signature(execution.PromptExecutor).parameters:
        return execution.PromptExecutor(server, cache_type=cache_type,
                                        cache_args={"lru": lru, "ram": 0, "ram_inactive": 0})
    return execution.PromptExecutor(server, cache_type=cache_type, cache_size=lru or None)


def cached_outputs(executor, node_id):
    """A node's outputs in the executor's cache (None when absent), synchronous or coroutine cache alike."""
    entry = executor.caches.outputs.get(node_id)
    if inspect.isawaitable(entry):
        entry = asyncio.run(entry)
    return getattr(entry, "outputs", entry)


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
        self.server = _RecordingServer()
        _install_server_stand_in(self.server)
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

    def run(self, prompt: dict, executor=None) -> dict[str, list]:
        """Validate and execute ``prompt``; return each executed node's outputs. Fresh caches unless
        ``executor`` (from ``session()``) is given: then outputs stay cached between prompts, as in a server."""
        import execution

        prompt_id = str(uuid.uuid4())
        ok, error, outputs, node_errors = asyncio.run(execution.validate_prompt(prompt_id, prompt, None))
        if not ok:
            raise PromptFailed(f"invalid prompt: {error}; node_errors: {node_errors}")
        executor = executor or new_executor(self.server)
        first = len(self.server.messages)
        executor.execute(prompt, prompt_id, {"client_id": "dmtest"}, outputs)
        if not executor.success:
            errors = [data for event, data in self.server.messages[first:] if event == "execution_error"]
            detail = "; ".join(f"{e.get('node_type')}: {e.get('exception_message')}" for e in errors)
            raise PromptFailed(f"execution failed: {detail}")
        results = {}
        for node_id in prompt:
            entry = cached_outputs(executor, node_id)
            if entry is not None:
                results[node_id] = entry
        return results

    def session(self, keep: int = 64):
        """An executor for ``run(prompt, executor)`` that keeps up to ``keep`` node outputs across prompts, as
        one server does: what one prompt's nodes did to a cached output, the next prompt sees."""
        return new_executor(self.server, lru=keep)
