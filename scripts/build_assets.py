"""Writes what is built from a running ComfyUI's /object_info: the workflows (API format under
workflows/api/, drag-in UI twins in workflows/) and the node reference docs/nodes.md. Edit the graphs here,
then run (with ComfyUI + this pack serving):

    python scripts/build_assets.py --server http://127.0.0.1:8188

A UI twin holds the widget lists of the host it was written from (newer ComfyUI versions add widgets, e.g.
CreateVideo's bit_depth in 0.33), so each records that version, and the drag-in files stay loadable on the
oldest host that can run them: against a server, a workflow is written only if the server has all its nodes
(the ``_core`` variant needs ComfyUI 0.33+), and a UI twin written from an older ComfyUI is kept as long as
it still queues the (unchanged) API twin on this server. So: run it against the oldest supported ComfyUI
(0.3.64) for the four base workflows and against 0.33+ for the core variant; both runs leave the other's
files as they are.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HERE = REPO / "workflows"
sys.path.insert(0, str(REPO))

NEGATIVE = "blurry, low quality, deformed hands, extra limbs, watermark"
PROMPT = "a person dancing on a stage, full body, best quality, detailed face"
# the embedded model knows the captions of its training data (train/dancer_render.py's Character.describe)
EMBEDDED_PROMPT = "a person with brown short hair, a blue shirt with long sleeves, black trousers and white shoes"


def _models() -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
        "2": {"class_type": "DreaMovingMotionUNetLoader", "inputs": {
            "model": ["1", 0], "motion_module": "mm_sd_v15_v2.ckpt", "motion_scale": 1.0, "effect": 1.0,
            "beta_schedule": "autoselect"}},
        "4": {"class_type": "LoadVideo", "inputs": {"file": "driving.mp4"}},
        "5": {"class_type": "GetVideoComponents", "inputs": {"video": ["4", 0]}},
        "6": {"class_type": "DreaMovingPoseExtract", "inputs": {
            "images": ["5", 0], "detector": "yolox_l.onnx", "pose_model": "dw-ll_ucoco_384.onnx", "provider": "auto",
            "no_person": "carry last pose", "body": True, "hands": True, "face": True}},
        "14": {"class_type": "DreaMovingVideoControlNetLoader", "inputs": {
            "controlnet": "control_v11p_sd15_openpose.pth", "motion_module": "mm_sd_v15_v2.ckpt"}},
    }


def _sampler_to_video(model, positive, negative, frames: int) -> dict:
    return {
        "16": {"class_type": "DreaMovingSampler", "inputs": {
            "model": model, "positive": positive, "negative": negative, "seed": 42, "steps": 25, "cfg": 7.5,
            "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0, "frames": frames, "width": 512,
            "height": 512, "context_length": 64, "context_overlap": 16, "context_schedule": "static",
            "fuse_method": "pyramid"}},
        "17": {"class_type": "VAEDecode", "inputs": {"samples": ["16", 0], "vae": ["1", 2]}},
        "18": {"class_type": "CreateVideo", "inputs": {"images": ["17", 0], "fps": ["5", 2]}},
        "19": {"class_type": "SaveVideo", "inputs": {"video": ["18", 0], "filename_prefix": "dreamoving/video",
                                                     "format": "auto", "codec": "auto"}},
    }


def pose_dance(frames: int = 64) -> dict:
    """Reference photo + driving video -> a video of the person doing the dance (pose-driven)."""
    graph = _models()
    graph.update({
        "3": {"class_type": "LoadImage", "inputs": {"image": "reference.png"}},
        "7": {"class_type": "DreaMovingPoseExtract", "inputs": dict(graph["6"]["inputs"], images=["3", 0],
                                                                    no_person="error")},
        "8": {"class_type": "DreaMovingPoseRetarget", "inputs": {
            "driving_pose": ["6", 1], "reference_pose": ["7", 1], "smooth_frames": 5, "body": True, "hands": True,
            "face": True}},
        "9": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"}},
        "10": {"class_type": "DreaMovingInsightFaceLoader", "inputs": {"model_pack": "buffalo_l", "provider": "auto"}},
        "11": {"class_type": "DreaMovingContentGuiderLoader", "inputs": {
            "guider_file": "ip-adapter-faceid-plusv2_sd15.bin", "stream": "face", "faceid_v2_scale": 1.0}},
        "12": {"class_type": "DreaMovingContentGuiderLoader", "inputs": {
            "guider_file": "ip-adapter-plus_sd15.safetensors", "stream": "cloth", "faceid_v2_scale": 1.0,
            "guider": ["11", 0]}},
        "13": {"class_type": "DreaMovingContentGuiderEncode", "inputs": {
            "model": ["2", 0], "clip": ["1", 1], "clip_vision": ["9", 0], "guider": ["12", 0], "text": PROMPT,
            "negative_text": NEGATIVE, "a_f": 1.0, "a_c": 0.6, "start_percent": 0.0, "end_percent": 1.0,
            "face_crop": "align on landmarks", "no_face": "error", "face_image": ["3", 0], "cloth_image": ["3", 0],
            "face_analysis": ["10", 0]}},
        "15": {"class_type": "DreaMovingVideoControlNetApply", "inputs": {
            "positive": ["13", 1], "negative": ["13", 2], "video_controlnet": ["14", 0], "control_frames": ["8", 0],
            "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0, "frame_mode": "repeat last"}},
    })
    graph.update(_sampler_to_video(["13", 0], ["15", 0], ["15", 1], frames))
    return graph


def pose_depth_dance() -> dict:
    """The pose-driven dance plus a depth Video ControlNet stacked on the pose one."""
    graph = pose_dance()
    graph.update({
        "20": {"class_type": "DreaMovingDepthExtract", "inputs": {
            "images": ["5", 0], "depth_model": "depth-anything-small-hf", "normalise": "per video", "batch_size": 8}},
        "21": {"class_type": "DreaMovingVideoControlNetLoader", "inputs": {
            "controlnet": "control_v11f1p_sd15_depth.pth", "motion_module": "mm_sd_v15_v2.ckpt"}},
        "22": {"class_type": "DreaMovingVideoControlNetApply", "inputs": {
            "positive": ["15", 0], "negative": ["15", 1], "video_controlnet": ["21", 0], "control_frames": ["20", 0],
            "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0, "frame_mode": "repeat last"}},
    })
    graph["16"]["inputs"].update({"positive": ["22", 0], "negative": ["22", 1]})
    return graph


def pose_depth_dance_core() -> dict:
    """pose_depth_dance with core ComfyUI's control signals (0.33+): SDPose keypoints of the driving frames and
    of the reference photo for the retarget, Depth Anything 3 depth (near = bright, per frame) for the depth
    Video ControlNet."""
    graph = pose_depth_dance()
    for replaced in ("6", "7", "20"):  # DWPose of the driving frames and of the photo, transformers depth
        del graph[replaced]
    sdpose = {"model": ["40", 0], "vae": ["40", 2], "batch_size": 16}
    graph.update({
        "40": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdpose_wholebody_fp16.safetensors"}},
        "41": {"class_type": "SDPoseKeypointExtractor", "inputs": dict(sdpose, image=["5", 0])},
        "42": {"class_type": "SDPoseKeypointExtractor", "inputs": dict(sdpose, image=["3", 0])},
        "43": {"class_type": "LoadDA3Model", "inputs": {
            "model_name": "depth_anything_3_mono_large.safetensors", "weight_dtype": "default"}},
        "44": {"class_type": "DA3Inference", "inputs": {
            "da3_model": ["43", 0], "image": ["5", 0], "resolution": 504, "resize_method": "upper_bound_resize",
            "mode": "mono"}},
        # v2_style (like min_max) maps near to 1: the near = bright convention of SD1.5 depth ControlNets
        "45": {"class_type": "DA3Render", "inputs": {
            "da3_geometry": ["44", 0], "output": "depth", "output.normalization": "v2_style",
            "output.apply_sky_clip": False}},
    })
    graph["8"]["inputs"].update({"driving_pose": ["41", 0], "reference_pose": ["42", 0]})
    graph["22"]["inputs"]["control_frames"] = ["45", 0]
    graph["18"]["inputs"]["bit_depth"] = 8  # CreateVideo's widget since 0.33: the frontend queues it
    return graph


def text_only() -> dict:
    """Text-only generation (a_f = a_c = 0: no Content Guider) driven by the video's poses."""
    graph = _models()
    graph.update({
        "30": {"class_type": "CLIPTextEncode", "inputs": {"text": PROMPT, "clip": ["1", 1]}},
        "31": {"class_type": "CLIPTextEncode", "inputs": {"text": NEGATIVE, "clip": ["1", 1]}},
        "15": {"class_type": "DreaMovingVideoControlNetApply", "inputs": {
            "positive": ["30", 0], "negative": ["31", 0], "video_controlnet": ["14", 0], "control_frames": ["6", 0],
            "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0, "frame_mode": "repeat last"}},
    })
    graph.update(_sampler_to_video(["2", 0], ["15", 0], ["15", 1], 64))
    return graph


def embedded_dance(frames: int = 64) -> dict:
    """The embedded DreaMoving (installed by scripts/run.sh --demo from weights/embedded; no download): a reference
    photo, its face crop and a pose video (OpenPose drawing, e.g. from comfyui_controlnet_aux or our DWPose
    Extract) -> the person doing the moves, at the 64x96 frames the embedded model was trained on. The Content
    Guider is off (a_f = a_c = 0): the embedded guider at 1 turns the frames saturated magenta (in ComfyUI and on
    the training side alike; bench/RESULTS.md)."""
    from dreamoving.embedded_model import CHECKPOINT_NAME, CONTROLNET_FILE, GUIDER_FILE, MOTION_FILE

    graph = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT_NAME}},
        "2": {"class_type": "DreaMovingMotionUNetLoader", "inputs": {
            "model": ["1", 0], "motion_module": MOTION_FILE, "motion_scale": 1.0, "effect": 1.0,
            "beta_schedule": "autoselect"}},
        "3": {"class_type": "LoadImage", "inputs": {"image": "reference.png"}},
        "4": {"class_type": "LoadVideo", "inputs": {"file": "driving_pose.mp4"}},
        "5": {"class_type": "GetVideoComponents", "inputs": {"video": ["4", 0]}},
        "6": {"class_type": "LoadImage", "inputs": {"image": "face.png"}},
        "12": {"class_type": "DreaMovingContentGuiderLoader", "inputs": {
            "guider_file": GUIDER_FILE, "stream": "face", "faceid_v2_scale": 1.0}},
        "13": {"class_type": "DreaMovingContentGuiderEncode", "inputs": {
            "model": ["2", 0], "clip": ["1", 1], "guider": ["12", 0], "text": EMBEDDED_PROMPT, "negative_text": "",
            "a_f": 0.0, "a_c": 0.0, "start_percent": 0.0, "end_percent": 1.0, "face_crop": "image as is",
            "no_face": "error", "face_image": ["6", 0], "cloth_image": ["3", 0]}},
        "14": {"class_type": "DreaMovingVideoControlNetLoader", "inputs": {
            "controlnet": CONTROLNET_FILE, "motion_module": "none"}},
        "15": {"class_type": "DreaMovingVideoControlNetApply", "inputs": {
            "positive": ["13", 1], "negative": ["13", 2], "video_controlnet": ["14", 0], "control_frames": ["5", 0],
            "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0, "frame_mode": "repeat last"}},
    }
    graph.update(_sampler_to_video(["13", 0], ["15", 0], ["15", 1], frames))
    graph["16"]["inputs"].update(width=64, height=96, cfg=5.0, steps=20)
    return graph


WORKFLOWS = {
    "dreamoving_pose_dance": pose_dance,
    "dreamoving_pose_depth_dance": pose_depth_dance,
    "dreamoving_long_video": lambda: pose_dance(frames=150),
    "dreamoving_text_only": text_only,
    "dreamoving_pose_depth_dance_core": pose_depth_dance_core,
    "dreamoving_embedded_dance": embedded_dance,
}


def renumber(graph: dict) -> dict:
    """Node ids 1..N in the order above, so the UI twin's node ids equal the API ids."""
    ids = {old: str(i + 1) for i, old in enumerate(sorted(graph, key=int))}
    out = {}
    for old, node in sorted(graph.items(), key=lambda kv: int(kv[0])):
        inputs = {k: [ids[v[0]], v[1]] if isinstance(v, list) else v for k, v in node["inputs"].items()}
        out[ids[old]] = {"class_type": node["class_type"], "inputs": inputs}
    return out


def keeps(existing: dict | None, api: dict, object_info: dict, version: str) -> bool:
    """Whether a UI twin on disk, written from an older ComfyUI, stays: it still queues ``api`` here."""
    from dreamoving.host_version import version_tuple
    from dreamoving.workflow_format import built_with, ui_to_api

    written = built_with(existing) if existing is not None else None
    older = written is not None and (version_tuple(written) or ()) < (version_tuple(version) or ())
    return older and ui_to_api(existing, object_info) == api


def main():
    from dreamoving.comfy_client import ComfyClient
    from dreamoving.main import WEIGHTS
    from dreamoving.node_docs import render_node_reference
    from dreamoving.workflow_format import api_to_ui, built_with

    parser = argparse.ArgumentParser()
    parser.add_argument("--server", default="http://127.0.0.1:8188")
    client = ComfyClient(parser.parse_args().server)
    object_info = client.get_json("/object_info")
    version = client.get_json("/system_stats")["system"]["comfyui_version"]
    for name, build in WORKFLOWS.items():
        api = renumber(build())
        missing = sorted({node["class_type"] for node in api.values()} - set(object_info))
        if missing:
            print(f"left {name} as it is: ComfyUI {version} lacks {', '.join(missing)}")
            continue
        ui_path = HERE / f"{name}.json"
        existing = json.loads(ui_path.read_text()) if ui_path.exists() else None
        (HERE / "api" / f"{name}.json").write_text(json.dumps(api, indent=2) + "\n")
        if keeps(existing, api, object_info, version):
            print(f"wrote workflows/api/{name}.json; kept workflows/{name}.json (written from ComfyUI "
                  f"{built_with(existing)}, it queues the same on {version})")
            continue
        ui_path.write_text(json.dumps(api_to_ui(api, object_info, version), indent=2) + "\n")
        print(f"wrote workflows/{name}.json and workflows/api/{name}.json (ComfyUI {version})")
    (REPO / "docs" / "nodes.md").write_text(render_node_reference(object_info, set(WEIGHTS)) + "\n")
    print("wrote docs/nodes.md")


if __name__ == "__main__":
    main()
