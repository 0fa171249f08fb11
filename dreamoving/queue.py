"""Queue an API-format workflow on a ComfyUI server, follow it, and fetch its outputs.

    python -m dreamoving.queue WORKFLOW.json [--server http://127.0.0.1:8188] [--set NODE.INPUT=VALUE ...]
                               [--upload NODE.INPUT=FILE ...] [--out DIR] [--timeout SECONDS]

``--set 5.seed=42`` changes an input (the value is read as JSON, else kept as text); ``--upload
12.image=me.png`` sends a local file to the server's input folder and points the input at it.
Exit status: 0 done, 1 the run failed, 2 the workflow or arguments were rejected, 3 no server.
"""
from __future__ import annotations

import argparse
import json
import sys
import urllib.error

from .comfy_client import ComfyClient, ComfyError

EXIT_FAILED, EXIT_REJECTED, EXIT_NO_SERVER = 1, 2, 3


class WorkflowError(ValueError):
    """The workflow file or a --set/--upload argument is unusable; the message says which and why."""


def load_workflow(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            workflow = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise WorkflowError(f"workflow '{path}' cannot be read as JSON: {err}") from err
    if "nodes" in workflow and "links" in workflow:
        raise WorkflowError(f"workflow '{path}' is in the UI format; queue its API-format twin (workflows/api/), "
                            f"or save it from ComfyUI with 'Export (API)'")
    if not workflow or not all(isinstance(v, dict) and "class_type" in v for v in workflow.values()):
        raise WorkflowError(f"workflow '{path}' is not an API-format workflow (node id -> class_type, inputs)")
    return workflow


def _split(assignment: str, flag: str) -> tuple[str, str, str]:
    target, sep, value = assignment.partition("=")
    node, dot, name = target.partition(".")
    if not (sep and dot and node and name):
        raise WorkflowError(f"{flag} '{assignment}': expected NODE.INPUT=VALUE, e.g. 5.seed=42")
    return node, name, value


def set_input(workflow: dict, assignment: str, value=None, flag: str = "--set") -> None:
    node, name, text = _split(assignment, flag)
    if node not in workflow:
        raise WorkflowError(f"{flag} '{assignment}': the workflow has no node {node} (nodes: {', '.join(workflow)})")
    if value is None:
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
    workflow[node]["inputs"][name] = value


class ProgressPrinter:
    """One status line on stderr: node, class and step counter."""

    def __init__(self, workflow: dict, stream=sys.stderr):
        self.workflow, self.stream = workflow, stream

    def __call__(self, kind: str, data: dict) -> None:
        node = data.get("node")
        label = f"node {node} ({self.workflow.get(str(node), {}).get('class_type', '?')})" if node else ""
        if kind == "progress":
            width = 30
            done = int(width * data["value"] / max(data["max"], 1))
            self.stream.write(f"\r{label} [{'#' * done}{'.' * (width - done)}] {data['value']}/{data['max']}")
        elif kind == "executing" and node:
            self.stream.write(f"\n{label}")
        elif kind == "execution_success":
            self.stream.write("\ndone\n")
        self.stream.flush()


def output_files(history: dict) -> list[dict]:
    """Every file a node reported (images, videos, ...), as {"filename", "subfolder", "type"}."""
    files = []
    for outputs in history.get("outputs", {}).values():
        for items in outputs.values():
            if isinstance(items, list):
                files += [i for i in items if isinstance(i, dict) and "filename" in i]
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dreamoving.queue", description=__doc__.split("\n\n")[0])
    parser.add_argument("workflow")
    parser.add_argument("--server", default="http://127.0.0.1:8188")
    parser.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE")
    parser.add_argument("--upload", action="append", default=[], metavar="NODE.INPUT=FILE")
    parser.add_argument("--out", default="outputs", help="folder for the downloaded outputs")
    parser.add_argument("--timeout", type=float, default=3600.0)
    args = parser.parse_args(argv)
    client = ComfyClient(args.server)
    try:
        workflow = load_workflow(args.workflow)
        for assignment in args.set:
            set_input(workflow, assignment)
        if args.upload and not client.is_up():
            raise urllib.error.URLError("no answer")
        for assignment in args.upload:
            node, name, path = _split(assignment, "--upload")
            set_input(workflow, f"{node}.{name}=", client.upload(path), flag="--upload")
        history = client.run(workflow, on_event=ProgressPrinter(workflow), timeout=args.timeout)
    except WorkflowError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_REJECTED
    except (urllib.error.URLError, ConnectionError, OSError) as err:
        if isinstance(err, FileNotFoundError):
            print(f"error: {err}", file=sys.stderr)
            return EXIT_REJECTED
        print(f"error: no ComfyUI server answers at {args.server} ({err})", file=sys.stderr)
        return EXIT_NO_SERVER
    except ComfyError as err:
        print(f"\nerror: {err}", file=sys.stderr)
        return EXIT_REJECTED if str(err).startswith("prompt rejected") else EXIT_FAILED
    for item in output_files(history):
        print(client.download(item, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
