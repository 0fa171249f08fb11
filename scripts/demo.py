"""The main job with no downloaded weights: the embedded DreaMoving (trained by train/, shipped packed in
weights/embedded) is installed into ComfyUI's model folders, then the drag-in workflow dreamoving_embedded_dance
runs through ComfyUI's HTTP API on a held-out character doing a held-out dance (dance_b), both rendered by
train.dancers. Writes the video, a side-by-side (reference | pose | ours | ground truth) and prints how well the
figure follows the pose (silhouette IoU against the ground truth and its pose specificity, beside the ground
truth's own readings).

    python scripts/demo.py [--comfyui PATH] [--frames 48] [--steps 20] [--clip 0] [--out outputs]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dreamoving.comfy_launch import start_local_server  # noqa: E402
from dreamoving.embedded_model import install_embedded  # noqa: E402
from dreamoving.main import WORKFLOWS, main  # noqa: E402

WORKFLOW = "dreamoving_embedded_dance"
FPS = 15


def held_out_clip(index: int, frames: int) -> tuple[dict, str]:
    """The arrays and caption of eval clip ``index`` (held-out character; even indices dance dance_b)."""
    from train.dancer_render import Character
    from train.dancers import plan_clip, render_clip

    spec = plan_clip("eval", index, frames, FPS, 0)
    return render_clip(spec, 64, 96, FPS, 4), Character.sample(spec.character_seed).describe()


def write_inputs(clip: dict, folder: Path) -> dict[str, Path]:
    """reference.png, face.png and driving_pose.mp4 (the pose renders, lossless) for the workflow."""
    import av
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = {"reference": folder / "reference.png", "face": folder / "face.png", "driving": folder / "driving_pose.mp4"}
    Image.fromarray(clip["reference"]).save(paths["reference"])
    Image.fromarray(clip["face"]).save(paths["face"])
    with av.open(str(paths["driving"]), mode="w") as container:
        stream = container.add_stream("libx264rgb", rate=FPS, options={"crf": "0"})
        stream.height, stream.width = clip["pose"].shape[1:3]
        stream.pix_fmt = "rgb24"
        for frame in clip["pose"]:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return paths


def demo(argv: list[str] | None = None) -> dict:
    """Run the demo; returns {"video", "side_by_side", and per frame "silhouette_iou", "pose_specificity" and
    their ground-truth readings "ceiling", "ceiling_specificity"}."""
    from train.evaluate import side_by_side
    from train.prepare import read_video, write_video
    from train.video_metrics import pose_specificity, silhouette_iou

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH"), help="default: $COMFYUI_PATH")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--clip", type=int, default=0, help="which held-out clip (even: dance_b)")
    parser.add_argument("--out", default="outputs")
    args = parser.parse_args(argv)
    if not args.comfyui:
        raise SystemExit("no ComfyUI: pass --comfyui PATH or set COMFYUI_PATH (scripts/run.sh --demo does)")
    comfy = Path(args.comfyui).resolve()
    install_embedded(str(REPO / "weights" / "embedded"), str(comfy / "models"))
    work = Path(tempfile.mkdtemp(prefix="dreamoving_demo_"))
    clip, caption = held_out_clip(args.clip, args.frames)
    inputs = write_inputs(clip, work / "inputs")
    workflow = json.loads((WORKFLOWS / f"{WORKFLOW}.json").read_text())
    for node in workflow.values():
        if node["class_type"] == "DreaMovingContentGuiderEncode":
            node["inputs"]["text"] = caption
        if node["class_type"] == "DreaMovingSampler":
            node["inputs"].update(frames=args.frames, steps=args.steps)
    workflow_path = work / f"{WORKFLOW}.json"
    workflow_path.write_text(json.dumps(workflow))
    downloads = work / "downloads"
    server = start_local_server(comfy, work / "server")
    try:
        code = main(["--server", server.client.url, "--workflow", str(workflow_path), "--out", str(downloads)]
                    + [arg for flag, path in inputs.items() for arg in (f"--{flag}", str(path))])
    finally:
        server.stop()
    if code:
        raise SystemExit(code)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    video = out / "dreamoving_embedded_dance.mp4"
    os.replace(next(downloads.rglob("*.mp4")), video)
    generated, _ = read_video(str(video))
    truth = {"frames": clip["frames"], "pose": clip["pose"], "reference": clip["reference"]}
    write_video(str(out / "dreamoving_embedded_side_by_side.mp4"), side_by_side(truth, generated), FPS)
    result = {"video": video, "side_by_side": out / "dreamoving_embedded_side_by_side.mp4"}
    for iou_key, specificity_key, frames in (("silhouette_iou", "pose_specificity", generated),
                                             ("ceiling", "ceiling_specificity", clip["frames"])):
        ious = [silhouette_iou(f[None], m[None]) for f, m in zip(frames, clip["mask"])]
        result[iou_key] = ious
        result[specificity_key] = [pose_specificity(f[None], m[None], iou)
                                   for f, m, iou in zip(frames, clip["mask"], ious)]
    print(f"{video} ({len(generated)} frames of '{caption}')\n{result['side_by_side']} (reference | pose | ours | "
          f"ground truth)\nsilhouette IoU with the ground truth: {np.mean(result['silhouette_iou']):.3f}, pose "
          f"specificity {np.mean(result['pose_specificity']):+.3f} (the ground truth itself: "
          f"{np.mean(result['ceiling']):.3f}, {np.mean(result['ceiling_specificity']):+.3f})")
    return result


if __name__ == "__main__":
    demo()
