"""The main job on a machine without weights: the pose-driven dance workflow end to end, on generated
random stand-ins for every model (so the video is noise; the run shows the whole pipeline works).

    python scripts/demo.py [--frames N] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from dmtest import comfy_host, fixtures  # noqa: E402
from dmtest.inprocess import InProcessHost  # noqa: E402
from dreamoving.comfy_launch import start_local_server, write_base  # noqa: E402
from dreamoving.main import WORKFLOWS, main  # noqa: E402


def demo(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int)
    parser.add_argument("--out", default="outputs")
    args = parser.parse_args(argv)
    comfy, how = comfy_host.locate_comfyui()
    if comfy is None:
        raise SystemExit(f"no ComfyUI: {how}")
    work = Path(tempfile.mkdtemp(prefix="dreamoving_demo_"))
    InProcessHost(comfy, work / "generate", write_base(work / "generate", fixtures.model_folders()))
    fixtures.ensure_all()  # ComfyUI's own classes define the checkpoint layout, so it is imported above
    reference, driving = fixtures.write_demo_inputs(work / "inputs")
    workflow = work / "dreamoving_pose_dance_demo.json"
    workflow.write_text(json.dumps(fixtures.on_fixtures(json.loads((WORKFLOWS / "dreamoving_pose_dance.json").read_text()))))
    server = start_local_server(comfy, work / "server", fixtures.model_folders())
    try:
        return main(["--server", server.client.url, "--workflow", str(workflow), "--reference", str(reference),
                     "--driving", str(driving), "--out", args.out] + (["--frames", str(args.frames)] if args.frames else []))
    finally:
        server.stop()


if __name__ == "__main__":
    raise SystemExit(demo())
