"""Load DreaMoving Video ControlNet, and Video ControlNet Apply (Pose/Depth)."""
from __future__ import annotations

import folder_paths
from comfy_api.v0_0_2 import io

from ..dreamoving.frames import FRAME_MODES
from .video_controlnet import VideoControlNet, load_video_controlnet

NO_MOTION = "none"


class VideoControlNetLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DreaMovingVideoControlNetLoader",
            display_name="Load DreaMoving Video ControlNet",
            category="DreaMoving/loaders",
            description="A Video ControlNet file, or a plain SD1.5 ControlNet given motion blocks from a motion "
                        "module (the module's encoder and middle blocks).",
            inputs=[
                io.Combo.Input("controlnet", options=folder_paths.get_filename_list("controlnet"),
                               tooltip="Our Video ControlNet, or an SD1.5 ControlNet (openpose, depth...) in "
                                       "models/controlnet."),
                io.Combo.Input("motion_module", options=[NO_MOTION] + folder_paths.get_filename_list("animatediff_models"),
                               default=NO_MOTION,
                               tooltip="Inflate a plain ControlNet with this motion module's blocks; 'none' keeps "
                                       "the file's own motion blocks (or none: a per-frame ControlNet)."),
            ],
            outputs=[io.ControlNet.Output(display_name="CONTROL_NET")],
        )

    @classmethod
    def execute(cls, controlnet, motion_module) -> io.NodeOutput:
        motion_path = None if motion_module == NO_MOTION else \
            folder_paths.get_full_path_or_raise("animatediff_models", motion_module)
        return io.NodeOutput(load_video_controlnet(folder_paths.get_full_path_or_raise("controlnet", controlnet),
                                                   motion_path))


class VideoControlNetApply(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DreaMovingVideoControlNetApply",
            display_name="Video ControlNet Apply (Pose/Depth)",
            category="DreaMoving/conditioning",
            description="Drives the video with a pose or depth sequence, one control frame per video frame. "
                        "Chain two of these (pose, then depth) to stack controls.",
            inputs=[
                io.Conditioning.Input("positive", tooltip="Positive conditioning."),
                io.Conditioning.Input("negative", tooltip="Negative conditioning."),
                io.ControlNet.Input("video_controlnet", tooltip="From Load DreaMoving Video ControlNet (a native "
                                                               "ControlNet also works, frame by frame)."),
                io.Image.Input("control_frames", tooltip="Pose renders or depth maps, one per video frame (or one "
                                                         "for all); other sizes are resized to the video."),
                io.Float.Input("strength", default=1.0, min=0.0, max=10.0, step=0.01,
                               tooltip="Control scale (the paper uses 1)."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Where in the denoising the control starts."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Where in the denoising the control ends."),
                io.Combo.Input("frame_mode", options=list(FRAME_MODES), default="error",
                               tooltip="When control frames and video frames differ in number: error, repeat the "
                                       "last control frame, or loop them (both trim extra frames)."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Where the control acts: one mask for all frames or one per frame."),
            ],
            outputs=[io.Conditioning.Output(display_name="positive"), io.Conditioning.Output(display_name="negative")],
        )

    @classmethod
    def execute(cls, positive, negative, video_controlnet, control_frames, strength, start_percent, end_percent,
                frame_mode, mask=None) -> io.NodeOutput:
        if strength == 0:
            return io.NodeOutput(positive, negative)
        hint = control_frames.movedim(-1, 1)
        applied = {}  # one control per previous control, shared by positive and negative

        def apply(conditioning):
            out = []
            for text, options in conditioning:
                previous = options.get("control", None)
                if previous not in applied:
                    control = video_controlnet.copy().set_cond_hint(hint, strength, (start_percent, end_percent))
                    if isinstance(control, VideoControlNet):
                        control.frame_mode = frame_mode
                        control.mask = None if mask is None else mask.reshape(-1, *mask.shape[-2:])
                    control.set_previous_controlnet(previous)
                    applied[previous] = control
                out.append([text, dict(options, control=applied[previous], control_apply_to_uncond=False)])
            return out

        return io.NodeOutput(apply(positive), apply(negative))
