"""ComfyUI adapters for DreaMoving: thin nodes over the host-independent ``dreamoving`` core."""
from __future__ import annotations

from comfy_api.v0_0_2 import ComfyExtension, io

from .control_signal_nodes import DepthExtract, PoseExtract, PoseRetarget
from .controlnet_nodes import VideoControlNetApply, VideoControlNetLoader
from .guider_nodes import ContentGuiderEncode, ContentGuiderLoader, InsightFaceLoader
from .model_folders import register_model_folders
from .motion_nodes import MotionUNetLoader
from .sampler_nodes import DreaMovingSampler

NODES: list[type[io.ComfyNode]] = [MotionUNetLoader, DreaMovingSampler, VideoControlNetLoader, VideoControlNetApply,
                                   InsightFaceLoader, ContentGuiderLoader, ContentGuiderEncode, PoseExtract,
                                   PoseRetarget, DepthExtract]


class DreaMovingExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES


async def comfy_entrypoint() -> DreaMovingExtension:
    register_model_folders()
    return DreaMovingExtension()
