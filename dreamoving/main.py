"""The main job: a dance video of the person in a photo, from a driving video, through ComfyUI.

    python -m dreamoving.main --comfyui PATH --reference me.png --driving dance.mp4 [--out DIR] [--frames 64]
    python -m dreamoving.main --comfyui PATH --check          # which weight files are missing, and where they go
    python -m dreamoving.main --server URL ...                # use a running ComfyUI instead of starting one

Runs workflows/api/dreamoving_pose_dance.json (or ``--workflow NAME|FILE``): the photo and the video are
uploaded to the server, the workflow is queued with progress shown, and the video lands in ``--out``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from .comfy_client import ComfyClient, ComfyError
from .comfy_launch import PACK_DIR, start_local_server
from .embedded_model import INSTALLED
from .queue import ProgressPrinter, load_workflow, output_files

WORKFLOWS = PACK_DIR / "workflows" / "api"
# (class_type, input) -> (folder under ComfyUI/models, where users get the file)
WEIGHTS = {
    ("CheckpointLoaderSimple", "ckpt_name"): ("checkpoints", "any SD1.5 checkpoint, e.g. v1-5-pruned-emaonly.safetensors "
                                                             "(the _core workflow's second one: Comfy-Org/SDPose "
                                                             "sdpose_wholebody_fp16.safetensors)"),
    ("DreaMovingMotionUNetLoader", "motion_module"): ("animatediff_models", "AnimateDiff mm_sd_v15_v2.ckpt or a DreaMoving module"),
    ("DreaMovingVideoControlNetLoader", "controlnet"): ("controlnet", "lllyasviel ControlNet v1.1 (openpose / depth) or our Video ControlNet"),
    ("DreaMovingVideoControlNetLoader", "motion_module"): ("animatediff_models", "AnimateDiff mm_sd_v15_v2.ckpt"),
    ("CLIPVisionLoader", "clip_name"): ("clip_vision", "CLIP ViT-H/14 image encoder (IP-Adapter's image_encoder)"),
    ("DreaMovingContentGuiderLoader", "guider_file"): ("ipadapter", "h94/IP-Adapter(-FaceID) SD1.5 files, or ours in models/dreamoving"),
    ("DreaMovingInsightFaceLoader", "model_pack"): ("insightface/models/<pack>/", "insightface buffalo_l (its .onnx files)"),
    ("DreaMovingPoseExtract", "detector"): ("dwpose", "yzd-v/DWPose yolox_l.onnx"),
    ("DreaMovingPoseExtract", "pose_model"): ("dwpose", "yzd-v/DWPose dw-ll_ucoco_384.onnx"),
    ("DreaMovingDepthExtract", "depth_model"): ("depth/<folder>/", "a transformers depth model folder, e.g. depth-anything-small-hf"),
    ("LoadDA3Model", "model_name"): ("geometry_estimation", "Comfy-Org/Depth-Anything-3, e.g. depth_anything_3_mono_large.safetensors"),
}
EMBEDDED_NAMES = {name for _, name in INSTALLED.values()}
# class_type -> (input, {the workflow's placeholder file: command-line flag}, the flag for any other file)
USER_INPUTS = {"LoadImage": ("image", {"face.png": "face"}, "reference"), "LoadVideo": ("file", {}, "driving")}


def missing_weights(workflow: dict, object_info: dict) -> list[str]:
    """One line per node type the server lacks, then per weight file the workflow names that it cannot list."""
    absent = sorted({node["class_type"] for node in workflow.values()} - set(object_info))
    lines = [f"missing node '{class_type}': this ComfyUI does not have it (the _core workflow needs ComfyUI 0.33+)"
             for class_type in absent]
    for node_id, node in workflow.items():
        if node["class_type"] in absent:
            continue
        for name, value in node["inputs"].items():
            if (node["class_type"], name) not in WEIGHTS:
                continue
            spec = {**object_info[node["class_type"]]["input"].get("required", {}),
                    **object_info[node["class_type"]]["input"].get("optional", {})}[name]
            options = spec[0] if isinstance(spec[0], list) else spec[1].get("options", [])
            if value not in options:
                folder, source = WEIGHTS[(node["class_type"], name)]
                if value in EMBEDDED_NAMES:
                    source = "the embedded model: python -m dreamoving.embedded_model --models ComfyUI/models"
                lines.append(f"missing '{value}' (node {node_id} {node['class_type']}.{name}): put it in "
                             f"ComfyUI/models/{folder} -- {source}")
    return lines


def workflow_path(name: str) -> Path:
    path = Path(name)
    return path if path.suffix == ".json" and path.exists() else WORKFLOWS / f"{name}.json"


def run(client: ComfyClient, args) -> int:
    workflow = load_workflow(str(workflow_path(args.workflow)))
    missing = missing_weights(workflow, client.get_json("/object_info"))
    for line in missing:
        print(line, file=sys.stderr)
    if args.check:
        print("all weights found" if not missing else f"{len(missing)} node(s) or weight file(s) missing")
        return 1 if missing else 0
    if missing:
        print("cannot run: nodes or weights are missing (see above); rename inputs with --set NODE.INPUT=FILE", file=sys.stderr)
        return 1
    for node in workflow.values():
        if node["class_type"] in USER_INPUTS:
            name, flags, flag = USER_INPUTS[node["class_type"]]
            flag = flags.get(node["inputs"][name], flag)
            local = getattr(args, flag)
            if local is None:
                print(f"error: --{flag} is needed (the workflow's {node['class_type']})", file=sys.stderr)
                return 2
            node["inputs"][name] = client.upload(local)
        if node["class_type"] == "DreaMovingSampler" and args.frames:
            node["inputs"]["frames"] = args.frames
    try:
        history = client.run(workflow, on_event=ProgressPrinter(workflow), timeout=args.timeout)
    except ComfyError as err:
        print(f"\nerror: {err}", file=sys.stderr)
        return 1
    for item in output_files(history):
        print(client.download(item, args.out))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dreamoving.main", description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--comfyui", help="a ComfyUI checkout to start (on loopback) for this run")
    where.add_argument("--server", help="a running ComfyUI, e.g. http://127.0.0.1:8188")
    parser.add_argument("--workflow", default="dreamoving_pose_dance", help="a name in workflows/api/ or a .json file")
    parser.add_argument("--reference", help="photo of the person (face, clothes)")
    parser.add_argument("--face", help="a crop of the person's face (workflows with a face.png input)")
    parser.add_argument("--driving", help="the dance video whose poses drive the motion (or the pose video itself, "
                                          "for workflows that take one)")
    parser.add_argument("--frames", type=int, help="video length (the workflow's default otherwise)")
    parser.add_argument("--check", action="store_true", help="only report missing weight files")
    parser.add_argument("--out", default="outputs")
    parser.add_argument("--timeout", type=float, default=24 * 3600)
    args = parser.parse_args(argv)
    if args.server:
        return run(ComfyClient(args.server), args)
    server = start_local_server(Path(args.comfyui).resolve(), Path(tempfile.mkdtemp(prefix="dreamoving_main_")))
    try:
        return run(server.client, args)
    finally:
        server.stop()


if __name__ == "__main__":
    raise SystemExit(main())
