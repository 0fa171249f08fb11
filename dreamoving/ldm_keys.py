"""diffusers -> LDM key names for an SD1.5 ControlNet (the layout our Video ControlNet file and ComfyUI use).

Resnet and attention sub-keys follow the original Stable Diffusion code; ``layers_per_block`` is the
number of res blocks per level (2 for SD1.5).
"""
from __future__ import annotations

import torch

RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "norm2": "out_layers.0",
          "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}


def _resnet(rest: list[str]) -> str:
    return ".".join([RESNET[rest[0]], *rest[1:]])


def controlnet_to_ldm(state: dict[str, torch.Tensor], layers_per_block: int) -> dict[str, torch.Tensor]:
    """A diffusers ``ControlNetModel`` state dict with LDM keys (``input_blocks``, ``zero_convs``, ...)."""
    hint_blocks = 1 + max((int(k.split(".")[2]) for k in state if k.startswith("controlnet_cond_embedding.blocks.")),
                          default=-1)
    out = {}
    for key, value in state.items():
        p = key.split(".")
        if p[0] == "conv_in":
            name = "input_blocks.0.0." + p[-1]
        elif p[0] == "time_embedding":
            name = f"time_embed.{0 if p[1] == 'linear_1' else 2}.{p[-1]}"
        elif p[0] == "controlnet_cond_embedding":
            index = 0 if p[1] == "conv_in" else 2 * (hint_blocks + 1) if p[1] == "conv_out" else 2 * (int(p[2]) + 1)
            name = f"input_hint_block.{index}.{p[-1]}"
        elif p[0] == "controlnet_down_blocks":
            name = f"zero_convs.{p[1]}.0.{p[-1]}"
        elif p[0] == "controlnet_mid_block":
            name = f"middle_block_out.0.{p[-1]}"
        elif p[0] == "down_blocks":
            level, kind = int(p[1]), p[2]
            if kind == "downsamplers":
                name = f"input_blocks.{(level + 1) * (layers_per_block + 1)}.0.op.{p[-1]}"
            else:
                block = 1 + level * (layers_per_block + 1) + int(p[3])
                name = f"input_blocks.{block}.0.{_resnet(p[4:])}" if kind == "resnets" else \
                    f"input_blocks.{block}.1.{'.'.join(p[4:])}"
        elif p[0] == "mid_block":
            name = f"middle_block.1.{'.'.join(p[3:])}" if p[1] == "attentions" else \
                f"middle_block.{0 if p[2] == '0' else 2}.{_resnet(p[3:])}"
        else:
            raise ValueError(f"controlnet: no LDM name for '{key}'")
        out[name] = value
    return out


def ldm_to_controlnet(state: dict[str, torch.Tensor], template: dict[str, torch.Tensor],
                      layers_per_block: int) -> dict[str, torch.Tensor]:
    """LDM ControlNet tensors renamed to the diffusers keys of ``template`` (a ControlNetModel state dict)."""
    names = {ldm: key for key, ldm in zip(template, controlnet_to_ldm(dict.fromkeys(template), layers_per_block))}
    missing = sorted(set(names) - set(state))
    if missing:
        raise ValueError(f"controlnet: the file lacks {missing[:3]} (not this ControlNet's layout)")
    return {names[k]: state[k] for k in names}
