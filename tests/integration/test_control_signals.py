"""Issue 6 in a real ComfyUI: pose and depth extraction, retargeting, into the Video ControlNet."""
from __future__ import annotations

import pytest
import torch

from dmtest import control_models, fixtures, prompts
from dmtest.inprocess import PromptFailed


def frames_node(count: int, color: int) -> dict:
    return {"class_type": "EmptyImage", "inputs": {"width": 320, "height": 320, "batch_size": count, "color": color}}


def pose_prompt(count: int, color: int = 0xC8C8C8, no_person: str = "error") -> dict:
    return {
        "1": frames_node(count, color),
        "2": {"class_type": "DreaMovingPoseExtract", "inputs": {
            "images": ["1", 0], "detector": "yolox_l.onnx", "pose_model": "dw-ll_ucoco_384.onnx", "provider": "auto",
            "no_person": no_person, "body": True, "hands": True, "face": True}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }


def test_pose_extract_renders_and_keypoints(pack_host):
    out = pack_host.run(pose_prompt(3))["2"]
    images, keypoints = out[0][0], out[1][0]
    assert images.shape == (3, 320, 320, 3) and images.max() > 0
    assert len(keypoints) == 3 and keypoints[0]["canvas_width"] == 320
    body = keypoints[0]["people"][0]["pose_keypoints_2d"]
    assert len(body) == 54


def test_no_person_is_a_clear_error_or_carried(pack_host):
    with pytest.raises(PromptFailed, match="images: no person found in frame 0"):
        pack_host.run(pose_prompt(2, color=0))
    empty = pack_host.run(pose_prompt(2, color=0, no_person="empty frame"))["2"]
    assert empty[1][0][0]["people"] == [] and empty[0][0].max() == 0


def test_missing_dwpose_file_names_file_and_folder(pack_host):
    model_path = pack_host.pack_module("nodes.control_signal_nodes")._model_path
    with pytest.raises(FileNotFoundError, match="DWPose model 'missing.onnx' not found: put yolox_l.onnx"):
        model_path("missing.onnx")


def test_retargeted_pose_drives_the_video_controlnet(pack_host):
    prompt = prompts.motion_video(fixtures.SMALL_CKPT, fixtures.SMALL_MM, 6, sampler="KSampler")
    prompt.update({f"p{k}": v for k, v in pose_prompt(6).items() if k != "3"})
    prompt["p2"]["inputs"]["images"] = ["p1", 0]
    prompt["r1"] = frames_node(1, 0xC8C8C8)
    prompt["r2"] = dict(prompt["p2"], inputs=dict(prompt["p2"]["inputs"], images=["r1", 0]))
    prompt["r3"] = {"class_type": "DreaMovingPoseRetarget", "inputs": {
        "driving_pose": ["p2", 1], "reference_pose": ["r2", 1], "smooth_frames": 3, "body": True, "hands": True,
        "face": True}}
    prompt["c1"] = {"class_type": "DreaMovingVideoControlNetLoader", "inputs": {
        "controlnet": fixtures.VIDEO_CN, "motion_module": "none"}}
    prompt["c2"] = {"class_type": "DreaMovingVideoControlNetApply", "inputs": {
        "positive": ["2", 0], "negative": ["3", 0], "video_controlnet": ["c1", 0], "control_frames": ["r3", 0],
        "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0, "frame_mode": "error"}}
    prompt["5"]["inputs"].update({"positive": ["c2", 0], "negative": ["c2", 1]})
    out = pack_host.run(prompt)
    assert out["5"][0][0]["samples"].shape == (6, 4, 8, 8)
    assert out["r3"][0][0].shape == (6, 320, 320, 3)


def test_depth_extract_follows_the_controlnet_convention(pack_host):
    prompt = {"1": frames_node(3, 0x808080),
              "2": {"class_type": "DreaMovingDepthExtract", "inputs": {
                  "images": ["1", 0], "depth_model": control_models.DEPTH_MODEL, "normalise": "per video",
                  "batch_size": 2}},
              "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}}
    depth = pack_host.run(prompt)["2"][0][0]
    assert depth.shape == (3, 320, 320, 3)
    assert float(depth.min()) == 0.0 and float(depth.max()) == pytest.approx(1.0)
    assert torch.equal(depth[..., 0], depth[..., 2]), "grey depth maps"
