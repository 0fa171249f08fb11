"""Modules that ride along with a U-Net (motion blocks, the Content Guider) as ComfyUI additional models."""
from __future__ import annotations

import comfy.model_management
import comfy.model_patcher


def compute_dtype(model):
    """The dtype the U-Net computes in, including a compute-dtype patch (ModelComputeDtype) not yet applied."""
    return model.get_model_object("manual_cast_dtype") or model.model.get_dtype()


def riding_patcher(model, module):
    """``module`` cast to ``model``'s compute dtype, in a ModelPatcher loaded and offloaded like the U-Net: the
    host's core patcher class (v0.33.0 makes it ModelPatcherDynamic under dynamic VRAM on CUDA, as for its own
    ControlNets and CLIP vision; on the CPU it is the plain ModelPatcher), else the plain one (v0.3.64)."""
    module.to(dtype=compute_dtype(model))
    patcher = getattr(comfy.model_patcher, "CoreModelPatcher", comfy.model_patcher.ModelPatcher)
    return patcher(module, load_device=comfy.model_management.get_torch_device(),
                   offload_device=comfy.model_management.unet_offload_device())
