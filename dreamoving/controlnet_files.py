"""Video ControlNet files: an SD1.5 ControlNet plus motion blocks in one ``.safetensors`` (DESIGN §4).

ControlNet keys stay in the LDM layout (``input_blocks``, ``zero_convs``, ``input_hint_block``,
``middle_block``, ``middle_block_out``); the motion blocks (encoder + middle only) are AnimateDiff keys
under ``motion.`` -- a prefix without the word "controlnet", so Advanced-ControlNet does not take the
file for SparseCtrl. A plain SD1.5 ControlNet (LDM or diffusers keys) is "inflated" with motion blocks
from an AnimateDiff-layout motion module, or none.
"""
from __future__ import annotations

import os

import torch

from .motion_files import motion_metadata, motion_state_dict
from .motion_module import MotionModel
from .weights import WeightFileError, read_state_dict, write_state_dict

FORMAT = "dreamoving.video_controlnet"
FORMAT_VERSION = 1
MOTION_PREFIX = "motion."
_HINT_KEYS = ("input_hint_block.0.weight", "controlnet_cond_embedding.conv_in.weight")
SD15_CONTEXT = 768


def encoder_motion_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The down- and mid-block motion tensors (no prefix): the part of a motion module a ControlNet uses."""
    return {k: v for k, v in motion_state_dict(state).items() if not k.startswith("up_blocks.")}


def stored_motion_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """The motion blocks' metadata inside a Video ControlNet file (stored with a ``motion_`` prefix)."""
    return {k.removeprefix("motion_"): v for k, v in metadata.items() if k.startswith("motion_")}


def split_video_controlnet(state: dict[str, torch.Tensor], name: str):
    """(ControlNet tensors, encoder/middle motion tensors without prefix) of a checked SD1.5 ControlNet."""
    motion = encoder_motion_state(state)
    motion_keys = {k for k in state if ".motion_modules." in k}
    controlnet = {k: v for k, v in state.items() if k not in motion_keys}
    check_sd15_controlnet(controlnet, name)
    return controlnet, motion


def check_sd15_controlnet(state: dict[str, torch.Tensor], name: str) -> None:
    """Raise WeightFileError unless ``state`` is an SD1.5-class ControlNet (any key layout ComfyUI reads)."""
    if not any(k.endswith(_HINT_KEYS) for k in state):
        sample = ", ".join(sorted(state)[:3]) or "no tensors"
        raise WeightFileError(f"'{name}' is not a ControlNet: expected keys like 'input_hint_block.0.weight' "
                              f"(LDM) or 'controlnet_cond_embedding.conv_in.weight' (diffusers), found {sample}")
    widths = {v.shape[1] for k, v in state.items() if k.endswith("attn2.to_k.weight")}
    if widths and widths != {SD15_CONTEXT}:
        raise WeightFileError(f"'{name}' is not an SD1.5 ControlNet: its cross-attention takes {sorted(widths)}-wide "
                              f"text features (SDXL uses 2048); DreaMoving needs an SD1.5 ControlNet ({SD15_CONTEXT})")


def read_video_controlnet(path: str, motion_path: str | None = None):
    """(ControlNet tensors, motion tensors, motion metadata, motion source name) from our file, or from a
    plain ControlNet inflated with the encoder and middle blocks of ``motion_path`` (a U-Net motion module)."""
    name = os.path.basename(path)
    state, metadata = read_state_dict(path)
    controlnet, motion = split_video_controlnet(state, name)
    motion_meta = stored_motion_metadata(metadata)
    if motion_path is not None:
        if motion:
            raise WeightFileError(f"'{name}' already holds motion blocks; leave motion_module empty to use them")
        raw, motion_meta = read_state_dict(motion_path)
        name = os.path.basename(motion_path)
        motion = encoder_motion_state(raw)
        if not motion:
            raise WeightFileError(f"'{name}' is not a motion module: no AnimateDiff down/mid motion blocks")
    return controlnet, motion, motion_meta, name


def save_video_controlnet(path: str, controlnet: dict[str, torch.Tensor], motion: MotionModel | None,
                          **extra_metadata) -> None:
    """Write our single-file format: LDM ControlNet keys (no ``control_model.`` prefix) + ``motion.`` keys."""
    tensors = {k.removeprefix("control_model."): v for k, v in controlnet.items()}
    metadata = {"format": FORMAT, "version": FORMAT_VERSION, **extra_metadata}
    if motion is not None:
        tensors.update({MOTION_PREFIX + k: v for k, v in motion.state_dict().items()})
        metadata.update({f"motion_{k}": v for k, v in motion_metadata(motion.spec).items()})
    write_state_dict(path, tensors, metadata)
