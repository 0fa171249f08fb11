"""The motion U-Net for training: a diffusers SD1.5 U-Net with ``dreamoving``'s motion blocks run after the
same blocks as in ComfyUI (after each down/up resnet+attention, after the middle attention), via hooks.

Frames ride in the batch: inputs are ``[(b f), c, h, w]`` and ``forward(..., frames=f)``.
"""
from __future__ import annotations

import torch
from torch import nn

from dreamoving.motion_module import MotionModel


class MotionUNet(nn.Module):
    def __init__(self, unet: nn.Module, motion: MotionModel):
        super().__init__()
        self.unet, self.motion = unet, motion
        self._frames: int | None = None
        for kind, block, index, module in motion.placements():
            self._after(kind, block, index).register_forward_hook(self._hook(module))

    def _after(self, kind: str, block: int, index: int) -> nn.Module:
        """The diffusers module whose output a motion block takes (attention if the block has it, else resnet)."""
        if kind == "mid":
            return self.unet.mid_block.attentions[0]
        unet_block = (self.unet.down_blocks if kind == "down" else self.unet.up_blocks)[block]
        layers = getattr(unet_block, "attentions", None) or unet_block.resnets
        return layers[index]

    def _hook(self, module):
        def run(_, __, output):
            if self._frames is None:  # the U-Net called on its own before any video: the image model
                return output
            if isinstance(output, torch.Tensor):
                return module(output, self._frames)
            hidden = output[0] if isinstance(output, tuple) else output.sample
            moved = module(hidden, self._frames)
            if isinstance(output, tuple):
                return (moved, *output[1:])
            output.sample = moved
            return output
        return run

    def forward(self, sample: torch.Tensor, timesteps: torch.Tensor, text: torch.Tensor, frames: int, **kwargs):
        """The frame count stays set after the call: gradient checkpointing re-runs blocks during backward."""
        if sample.shape[0] % frames:
            raise ValueError(f"frames: a batch of {sample.shape[0]} is not a whole number of {frames}-frame videos")
        self._frames = frames
        return self.unet(sample, timesteps, encoder_hidden_states=text, **kwargs).sample
