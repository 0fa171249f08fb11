"""A small client for ComfyUI's HTTP + websocket API: queue a prompt, follow it, read its history.

Used by the headless queue command and by the integration tests. ``/prompt`` can answer HTTP 200 with
``node_errors`` filled, so every reply is checked for them.
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Callable


class ComfyError(RuntimeError):
    """ComfyUI refused or failed a prompt; the message says which node and why."""


def format_node_errors(node_errors: dict) -> str:
    """One line per failing input: ``node 3 (KSampler): Value not in list: ...``."""
    lines = []
    for node_id, info in sorted(node_errors.items()):
        for err in info.get("errors", []):
            detail = f" ({err['details']})" if err.get("details") else ""
            lines.append(f"node {node_id} ({info.get('class_type', '?')}): {err.get('message', '')}{detail}")
    return "\n".join(lines)


class ComfyClient:
    """Talks to one ComfyUI server, e.g. ``ComfyClient("http://127.0.0.1:8188")``."""

    def __init__(self, url: str, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex

    def get_json(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=self.timeout) as reply:
            return json.loads(reply.read())

    def is_up(self) -> bool:
        try:
            self.get_json("/system_stats")
            return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def upload(self, path: str) -> str:
        """Put a local file (image or video) in the server's input folder; return the name to use there."""
        boundary = uuid.uuid4().hex
        name = os.path.basename(path)
        with open(path, "rb") as f:
            payload = f.read()
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n").encode() + payload + \
            f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"overwrite\"\r\n\r\ntrue\r\n--{boundary}--\r\n".encode()
        request = urllib.request.Request(self.url + "/upload/image", data=body,
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        with urllib.request.urlopen(request, timeout=self.timeout) as reply:
            answer = json.loads(reply.read())
        return f"{answer['subfolder']}/{answer['name']}" if answer.get("subfolder") else answer["name"]

    def download(self, item: dict, folder: str) -> str:
        """Save one output file (``{"filename", "subfolder", "type"}`` from the history) into ``folder``."""
        query = urllib.parse.urlencode({k: item.get(k, "") for k in ("filename", "subfolder", "type")})
        os.makedirs(folder, exist_ok=True)
        target = os.path.join(folder, os.path.basename(item["filename"]))
        with urllib.request.urlopen(f"{self.url}/view?{query}", timeout=self.timeout) as reply, open(target, "wb") as f:
            f.write(reply.read())
        return target

    def interrupt(self) -> None:
        """Stop the prompt that is running now (ComfyUI checks between steps and context windows)."""
        request = urllib.request.Request(self.url + "/interrupt", data=b"{}", headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=self.timeout).close()

    def queue(self, prompt: dict) -> str:
        """Queue an API-format prompt; return its id, or raise ComfyError with the validation errors."""
        body = json.dumps({"prompt": prompt, "client_id": self.client_id}).encode()
        request = urllib.request.Request(self.url + "/prompt", data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                answer = json.loads(reply.read())
        except urllib.error.HTTPError as err:
            answer = json.loads(err.read() or b"{}")
            message = answer.get("error", {}).get("message", f"HTTP {err.code}")
            raise ComfyError(f"prompt rejected: {message}\n{format_node_errors(answer.get('node_errors', {}))}".strip())
        if answer.get("node_errors"):
            raise ComfyError("prompt rejected:\n" + format_node_errors(answer["node_errors"]))
        return answer["prompt_id"]

    def run(self, prompt: dict, on_event: Callable[[str, dict], None] | None = None, timeout: float = 600.0) -> dict:
        """Queue ``prompt``, follow it on the websocket until it ends, and return its history entry."""
        import websocket  # websocket-client

        ws_url = self.url.replace("http", "ws", 1) + "/ws?" + urllib.parse.urlencode({"clientId": self.client_id})
        ws = websocket.create_connection(ws_url, timeout=timeout)
        try:
            prompt_id = self.queue(prompt)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                frame = ws.recv()
                if not isinstance(frame, str):
                    continue  # binary previews
                message = json.loads(frame)
                kind, data = message.get("type"), message.get("data", {})
                if data.get("prompt_id", prompt_id) != prompt_id:
                    continue
                if on_event:
                    on_event(kind, data)
                if kind == "execution_error":
                    raise ComfyError(f"node {data.get('node_id')} ({data.get('node_type')}) failed: "
                                     f"{data.get('exception_type')}: {data.get('exception_message')}")
                if kind == "execution_interrupted":
                    raise ComfyError(f"prompt {prompt_id} was interrupted")
                if kind == "executing" and data.get("node") is None:
                    return self.get_json(f"/history/{prompt_id}")[prompt_id]
            raise ComfyError(f"prompt {prompt_id} did not finish within {timeout:.0f} s")
        finally:
            ws.close()
