"""Control signals from a driving video: DWPose pose extraction, depth, and pose retargeting."""
from __future__ import annotations

import os

import numpy as np
import torch

import comfy.model_management
import comfy.utils
import folder_paths
from comfy_api.v0_0_2 import io

from ..dreamoving.depth import DepthEstimator, normalise_nearness
from ..dreamoving.dwpose import DWPose
from ..dreamoving.face_analysis import onnx_providers
from ..dreamoving.pose import PoseFrame, draw_pose, from_pose_keypoint, to_pose_keypoint
from ..dreamoving.pose_retarget import retarget
from .images import uint8_frames

PoseKeypoint = io.Custom("POSE_KEYPOINT")  # comfyui_controlnet_aux's OpenPose JSON type


def _render(frames: list[PoseFrame], body: bool, hands: bool, face: bool) -> torch.Tensor:
    return torch.from_numpy(np.stack([draw_pose(f, body, hands, face) for f in frames])).float() / 255


def _model_path(name: str) -> str:
    path = folder_paths.get_full_path("dwpose", name)
    if path is None:
        raise FileNotFoundError(f"DWPose model '{name}' not found: put yolox_l.onnx and dw-ll_ucoco_384.onnx in "
                                f"{folder_paths.get_folder_paths('dwpose')[0]}")
    return path


def _draw_inputs():
    return [io.Boolean.Input("body", default=True, tooltip="Draw the body skeleton."),
            io.Boolean.Input("hands", default=True, tooltip="Draw the hands."),
            io.Boolean.Input("face", default=True, tooltip="Draw the face points.")]


class PoseExtract(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        files = folder_paths.get_filename_list("dwpose")
        return io.Schema(
            node_id="DreaMovingPoseExtract",
            display_name="DWPose Extract (DreaMoving)",
            category="DreaMoving/preprocess",
            description="Whole-body poses of every frame (YOLOX + DWPose on onnxruntime): OpenPose-style renders "
                        "for SD1.5 openpose ControlNets, and the keypoints as POSE_KEYPOINT.",
            inputs=[
                io.Image.Input("images", tooltip="Frames of the driving video (or one reference photo)."),
                io.Combo.Input("detector", options=files, default="yolox_l.onnx",
                               tooltip="Person detector in models/dwpose."),
                io.Combo.Input("pose_model", options=files,
                               default="dw-ll_ucoco_384.onnx", tooltip="DWPose model in models/dwpose."),
                io.Combo.Input("provider", options=["auto", "CPU", "CUDA"], default="auto",
                               tooltip="onnxruntime provider; auto follows the device ComfyUI computes on."),
                io.Combo.Input("no_person", options=["error", "carry last pose", "empty frame"], default="error",
                               tooltip="A frame without a person: stop, repeat the previous pose, or leave it blank."),
                *_draw_inputs(),
            ],
            outputs=[io.Image.Output(display_name="pose_images"), PoseKeypoint.Output(display_name="POSE_KEYPOINT")],
        )

    @classmethod
    def execute(cls, images, detector, pose_model, provider, no_person, body, hands, face) -> io.NodeOutput:
        device = comfy.model_management.get_torch_device().type
        estimator = DWPose(_model_path(detector), _model_path(pose_model), onnx_providers(device, provider))
        frames, progress = [], comfy.utils.ProgressBar(len(images))
        for i, rgb in enumerate(uint8_frames(images)):
            comfy.model_management.throw_exception_if_processing_interrupted()
            frame = estimator(rgb)
            if not frame.people:
                if no_person == "error":
                    raise ValueError(f"images: no person found in frame {i}; set no_person to 'carry last pose' "
                                     f"or 'empty frame' to go on")
                if no_person == "carry last pose" and frames:
                    frame = PoseFrame(frame.width, frame.height, frames[-1].people)
            frames.append(frame)
            progress.update(1)
        return io.NodeOutput(_render(frames, body, hands, face), to_pose_keypoint(frames))


class PoseRetarget(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DreaMovingPoseRetarget",
            display_name="Pose Retarget to Reference (DreaMoving)",
            category="DreaMoving/preprocess",
            description="Moves the driving poses onto the reference person: each limb keeps its motion but gets "
                        "the reference's length; position and size follow the reference photo.",
            inputs=[
                PoseKeypoint.Input("driving_pose", tooltip="Poses of the driving video (DWPose Extract)."),
                PoseKeypoint.Input("reference_pose", tooltip="Pose of the reference photo (DWPose Extract on it)."),
                io.Int.Input("smooth_frames", default=5, min=1, max=31, step=2,
                             tooltip="Centred moving average over this many frames against jitter (1 = off)."),
                *_draw_inputs(),
            ],
            outputs=[io.Image.Output(display_name="pose_images"), PoseKeypoint.Output(display_name="POSE_KEYPOINT")],
        )

    @classmethod
    def execute(cls, driving_pose, reference_pose, smooth_frames, body, hands, face) -> io.NodeOutput:
        frames = retarget(from_pose_keypoint(driving_pose, "driving_pose"),
                          from_pose_keypoint(reference_pose, "reference_pose")[0], smooth_frames)
        return io.NodeOutput(_render(frames, body, hands, face), to_pose_keypoint(frames))


def depth_models() -> list[str]:
    return sorted({d for root in folder_paths.get_folder_paths("depth") if os.path.isdir(root)
                   for d in os.listdir(root) if os.path.isfile(os.path.join(root, d, "config.json"))})


class DepthExtract(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DreaMovingDepthExtract",
            display_name="Depth Extract (DreaMoving)",
            category="DreaMoving/preprocess",
            description="Depth maps of every frame from a local transformers depth model (Depth-Anything, "
                        "ZoeDepth...), near = bright, as depth ControlNets expect.",
            inputs=[
                io.Image.Input("images", tooltip="Frames of the driving video."),
                io.Combo.Input("depth_model", options=depth_models(),
                               tooltip="A folder in models/depth holding a saved transformers depth model."),
                io.Combo.Input("normalise", options=["per video", "per frame"], default="per video",
                               tooltip="One depth range for the whole video (steadier) or one per frame."),
                io.Int.Input("batch_size", default=8, min=1, max=256, tooltip="Frames per forward pass."),
            ],
            outputs=[io.Image.Output(display_name="depth_images")],
        )

    @classmethod
    def execute(cls, images, depth_model, normalise, batch_size) -> io.NodeOutput:
        folder = next((os.path.join(r, depth_model) for r in folder_paths.get_folder_paths("depth")
                       if os.path.isfile(os.path.join(r, depth_model, "config.json"))), None)
        if folder is None:
            raise FileNotFoundError(f"depth_model: no model folder '{depth_model}' with a config.json in "
                                    f"{folder_paths.get_folder_paths('depth')}")
        estimator = DepthEstimator(folder, comfy.model_management.get_torch_device())
        depth = normalise_nearness(estimator.nearness(uint8_frames(images), batch_size), normalise == "per video")
        return io.NodeOutput(depth[..., None].repeat(1, 1, 1, 3))
