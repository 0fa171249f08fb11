"""DreaMoving Sampler (64 frames): KSampler over a video latent, with sliding context windows past 64 frames."""
from __future__ import annotations

import torch

import comfy.model_management
import comfy.samplers
from comfy_api.v0_0_2 import io
from nodes import MAX_RESOLUTION, common_ksampler  # ComfyUI's top-level nodes.py, not this pack's package

from ..dreamoving.context_windows import FUSE_METHODS, SCHEDULES, ContextOptions
from .context_patch import attach_context_windows


def empty_video_latent(frames: int, width: int, height: int) -> dict:
    if frames < 1:
        raise ValueError(f"frames must be at least 1, got {frames}")
    return {"samples": torch.zeros([frames, 4, height // 8, width // 8],
                                   device=comfy.model_management.intermediate_device())}


class DreaMovingSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DreaMovingSampler",
            display_name="DreaMoving Sampler (64 frames)",
            category="DreaMoving/sampling",
            description="Samples a video (frames are the latent batch). Videos longer than context_length are "
                        "sampled in overlapping windows whose results are blended.",
            inputs=[
                io.Model.Input("model", tooltip="The motion U-Net (Load DreaMoving Motion U-Net)."),
                io.Conditioning.Input("positive", tooltip="Positive conditioning (text, Content Guider, controls)."),
                io.Conditioning.Input("negative", tooltip="Negative conditioning."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=True,
                             tooltip="Noise seed; each frame gets its own noise from it."),
                io.Int.Input("steps", default=25, min=1, max=1000, tooltip="Denoising steps."),
                io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale."),
                io.Combo.Input("sampler_name", options=comfy.samplers.SAMPLER_NAMES, default="euler",
                               tooltip="Sampling algorithm."),
                io.Combo.Input("scheduler", options=comfy.samplers.SCHEDULER_NAMES, default="normal",
                               tooltip="Sigma schedule."),
                io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="How much of the input latent is replaced by noise (1 = all)."),
                io.Int.Input("frames", default=64, min=1, max=4096,
                             tooltip="Video length when no latent is connected."),
                io.Int.Input("width", default=512, min=64, max=MAX_RESOLUTION, step=8,
                             tooltip="Video width in pixels when no latent is connected."),
                io.Int.Input("height", default=512, min=64, max=MAX_RESOLUTION, step=8,
                             tooltip="Video height in pixels when no latent is connected."),
                io.Int.Input("context_length", default=64, min=1, max=4096,
                             tooltip="Frames the motion blocks see at once; longer videos use sliding windows."),
                io.Int.Input("context_overlap", default=16, min=0, max=4096,
                             tooltip="Frames shared by neighbouring windows (less than context_length)."),
                io.Combo.Input("context_schedule", options=list(SCHEDULES), default="static",
                               tooltip="static: fixed windows; uniform: window seams move every step; "
                                       "batched: no overlap."),
                io.Combo.Input("fuse_method", options=list(FUSE_METHODS), default="pyramid",
                               tooltip="How overlapping windows are blended: pyramid weights the window middle, "
                                       "flat averages, overlap-linear ramps across the overlap only."),
                io.Latent.Input("latent", optional=True,
                                tooltip="Optional video latent (frames as batch); replaces frames/width/height."),
            ],
            outputs=[io.Latent.Output(display_name="LATENT")],
        )

    @classmethod
    def validate_inputs(cls, context_length=None, context_overlap=None) -> bool | str:
        """Reject a bad window setup when the prompt is queued (values from links are checked at run time).

        No ``**kwargs`` here: ComfyUI then keeps its own min/max checks for every other input."""
        if context_length is None or context_overlap is None:
            return True
        try:
            ContextOptions(context_length, context_overlap)
        except ValueError as err:
            return str(err)
        return True

    @classmethod
    def execute(cls, model, positive, negative, seed, steps, cfg, sampler_name, scheduler, denoise, frames,
                width, height, context_length, context_overlap, context_schedule, fuse_method,
                latent=None) -> io.NodeOutput:
        options = ContextOptions(context_length, context_overlap, context_schedule, fuse_method)
        if latent is None:
            latent = empty_video_latent(frames, width, height)
        windowed = attach_context_windows(model, options)
        return io.NodeOutput(common_ksampler(windowed, seed, steps, cfg, sampler_name, scheduler, positive,
                                             negative, latent, denoise=denoise)[0])
