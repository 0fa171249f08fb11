"""Load DreaMoving Motion U-Net: a MODEL clone with motion blocks after each U-Net block."""
from __future__ import annotations

import comfy.ops
import folder_paths
from comfy_api.v0_0_2 import io

from ..dreamoving.motion_files import load_motion_model
from .motion_patch import attach_motion, set_beta_schedule, unet_layout

# option -> diffusers schedule name; None: the module's own (recorded in our files), "": keep the model's
BETA_SCHEDULES = {"autoselect": None, "linear (AnimateDiff)": "linear", "scaled_linear (SD1.5)": "scaled_linear",
                  "use existing": ""}


class MotionUNetLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DreaMovingMotionUNetLoader",
            display_name="Load DreaMoving Motion U-Net",
            category="DreaMoving/loaders",
            description="Adds AnimateDiff-style motion blocks (DreaMoving, AnimateDiff v1/v2) after each block of "
                        "an SD1.5 U-Net. The input MODEL is left unchanged.",
            inputs=[
                io.Model.Input("model", tooltip="An SD1.5-family model, e.g. from Load Checkpoint."),
                io.Combo.Input("motion_module", options=folder_paths.get_filename_list("animatediff_models"),
                               tooltip="Motion module file in models/animatediff_models (DreaMoving, "
                                       "mm_sd_v15*.ckpt, or any AnimateDiff-layout SD1.5 module)."),
                io.Float.Input("motion_scale", default=1.0, min=0.0, max=10.0, step=0.01,
                               tooltip="Multiplies the temporal attention keys: above 1 sharpens, below 1 "
                                       "softens how frames attend to each other (AnimateDiff-Evolved's scale)."),
                io.Float.Input("effect", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Blends each motion block's output with its input: 1 full motion, "
                                       "0 the plain image model."),
                io.Combo.Input("beta_schedule", options=list(BETA_SCHEDULES), default="autoselect",
                               tooltip="Noise schedule. autoselect uses the one the module was trained with "
                                       "(linear for the AnimateDiff family, recorded in our files)."),
            ],
            outputs=[io.Model.Output(display_name="MODEL")],
        )

    @classmethod
    def execute(cls, model, motion_module, motion_scale, effect, beta_schedule) -> io.NodeOutput:
        layout = unet_layout(model)
        # manual_cast layers follow the input's dtype and device: a compute dtype set downstream, lowvram streaming
        motion = load_motion_model(folder_paths.get_full_path_or_raise("animatediff_models", motion_module),
                                   operations=comfy.ops.manual_cast)
        layout.check_fits(motion.spec, motion_module)
        patched = attach_motion(model, motion, motion_scale, effect)
        schedule = BETA_SCHEDULES[beta_schedule]
        if schedule is None:
            schedule = motion.spec.extra["beta_schedule"]
        if schedule:
            set_beta_schedule(patched, schedule)
        return io.NodeOutput(patched)
