"""diffusers -> LDM key names for an SD1.5 U-Net and ControlNet (the layout checkpoints, our Video ControlNet file
and ComfyUI use).

Resnet and attention sub-keys follow the original Stable Diffusion code; ``layers_per_block`` is the
number of res blocks per level (2 for SD1.5).
"""
from __future__ import annotations

import torch

RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "norm2": "out_layers.0",
          "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}


def _resnet(rest: list[str]) -> str:
    return ".".join([RESNET[rest[0]], *rest[1:]])


def _block_name(blocks: str, block: int, kind: str, rest: list[str]) -> str:
    """A res block (``resnets``: sub-module 0) or transformer (``attentions``: 1) of LDM's ``blocks``."""
    return f"{blocks}.{block}.0.{_resnet(rest)}" if kind == "resnets" else f"{blocks}.{block}.1.{'.'.join(rest)}"


def _encoder_name(p: list[str], layers_per_block: int) -> str | None:
    """The LDM name of a diffusers key of the parts a U-Net and its ControlNet share (None for other keys)."""
    if p[0] == "conv_in":
        return "input_blocks.0.0." + p[-1]
    if p[0] == "time_embedding":
        return f"time_embed.{0 if p[1] == 'linear_1' else 2}.{p[-1]}"
    if p[0] == "down_blocks":
        level, kind = int(p[1]), p[2]
        if kind == "downsamplers":
            return f"input_blocks.{(level + 1) * (layers_per_block + 1)}.0.op.{p[-1]}"
        return _block_name("input_blocks", 1 + level * (layers_per_block + 1) + int(p[3]), kind, p[4:])
    if p[0] == "mid_block":
        return f"middle_block.1.{'.'.join(p[3:])}" if p[1] == "attentions" else \
            f"middle_block.{0 if p[2] == '0' else 2}.{_resnet(p[3:])}"
    return None


def _renamed(state: dict, layers_per_block: int, what: str, own_name) -> dict:
    """``state`` under LDM names: ``own_name(parts)`` for the keys particular to ``what``, else the shared ones."""
    out = {}
    for key, value in state.items():
        p = key.split(".")
        name = own_name(p) or _encoder_name(p, layers_per_block)
        if name is None:
            raise ValueError(f"{what}: no LDM name for '{key}'")
        out[name] = value
    return out


def controlnet_to_ldm(state: dict[str, torch.Tensor], layers_per_block: int) -> dict[str, torch.Tensor]:
    """A diffusers ``ControlNetModel`` state dict with LDM keys (``input_blocks``, ``zero_convs``, ...)."""
    hint_blocks = 1 + max((int(k.split(".")[2]) for k in state if k.startswith("controlnet_cond_embedding.blocks.")),
                          default=-1)

    def own_name(p: list[str]) -> str | None:
        if p[0] == "controlnet_cond_embedding":
            index = 0 if p[1] == "conv_in" else 2 * (hint_blocks + 1) if p[1] == "conv_out" else 2 * (int(p[2]) + 1)
            return f"input_hint_block.{index}.{p[-1]}"
        if p[0] == "controlnet_down_blocks":
            return f"zero_convs.{p[1]}.0.{p[-1]}"
        return f"middle_block_out.0.{p[-1]}" if p[0] == "controlnet_mid_block" else None

    return _renamed(state, layers_per_block, "controlnet", own_name)


def unet_to_ldm(state: dict[str, torch.Tensor], layers_per_block: int) -> dict[str, torch.Tensor]:
    """A diffusers ``UNet2DConditionModel`` state dict with the LDM keys of a checkpoint's
    ``model.diffusion_model.`` (``input_blocks``, ``middle_block``, ``output_blocks``, ``out``)."""
    with_attention = {int(k.split(".")[1]) for k in state if k.startswith("up_blocks.") and ".attentions." in k}
    per_level = layers_per_block + 1

    def own_name(p: list[str]) -> str | None:
        if p[0] == "up_blocks":
            level, kind = int(p[1]), p[2]
            if kind == "upsamplers":
                index = 2 if level in with_attention else 1
                return f"output_blocks.{level * per_level + layers_per_block}.{index}.conv.{p[-1]}"
            return _block_name("output_blocks", level * per_level + int(p[3]), kind, p[4:])
        if p[0] in ("conv_norm_out", "conv_out"):
            return f"out.{0 if p[0] == 'conv_norm_out' else 2}.{p[-1]}"
        return None

    return _renamed(state, layers_per_block, "unet", own_name)


def ldm_to_controlnet(state: dict[str, torch.Tensor], template: dict[str, torch.Tensor],
                      layers_per_block: int) -> dict[str, torch.Tensor]:
    """LDM ControlNet tensors renamed to the diffusers keys of ``template`` (a ControlNetModel state dict)."""
    names = {ldm: key for key, ldm in zip(template, controlnet_to_ldm(dict.fromkeys(template), layers_per_block))}
    missing = sorted(set(names) - set(state))
    if missing:
        raise ValueError(f"controlnet: the file lacks {missing[:3]} (not this ControlNet's layout)")
    return {names[k]: state[k] for k in names}
