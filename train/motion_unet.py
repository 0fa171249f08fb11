"""diffusers SD1.5 networks with ``dreamoving``'s motion blocks run after the same blocks as in ComfyUI
(after each down/up resnet+attention, after the middle attention), via forward hooks:

* ``MotionUNet``: the U-Net (stages 2 and 4);
* ``VideoControlNetModel``: a ControlNet with motion blocks after its encoder and middle (stage 3).

Frames ride in the batch: inputs are ``[(b f), c, h, w]``; the frame count is passed to ``forward`` and
stays set afterwards, because gradient checkpointing re-runs blocks during backward.
"""
from __future__ import annotations

import torch
from torch import nn

from dreamoving.motion_module import MotionModel


class MotionHooked(nn.Module):
    def __init__(self, net: nn.Module, motion: MotionModel | None):
        """Hooks ``motion`` into ``net``, replacing motion blocks an earlier wrapper hooked into the same net;
        ``None``: no motion blocks (frames run as independent images, e.g. the Video ControlNet's ablation)."""
        super().__init__()
        self.net, self.motion = net, motion
        self._frames: int | None = None
        for handle in getattr(net, "_dreamoving_motion_hooks", []):
            handle.remove()
        net._dreamoving_motion_hooks = [self._after(kind, block, index).register_forward_hook(self._hook(module))
                                        for kind, block, index, module in (motion.placements() if motion else [])]

    def _after(self, kind: str, block: int, index: int) -> nn.Module:
        """The module whose output a motion block takes (the attention if the block has one, else the resnet)."""
        if kind == "mid":
            return self.net.mid_block.attentions[0]
        net_block = (self.net.down_blocks if kind == "down" else self.net.up_blocks)[block]
        return (getattr(net_block, "attentions", None) or net_block.resnets)[index]

    def _hook(self, module):
        def run(_, __, output):
            if self._frames is None:  # the network called on its own before any video: the image model
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

    def set_frames(self, sample: torch.Tensor, frames: int) -> None:
        if sample.shape[0] % frames:
            raise ValueError(f"frames: a batch of {sample.shape[0]} is not a whole number of {frames}-frame videos")
        self._frames = frames


class MotionUNet(MotionHooked):
    def forward(self, sample, timesteps, text, frames: int, **kwargs) -> torch.Tensor:
        self.set_frames(sample, frames)
        return self.net(sample, timesteps, encoder_hidden_states=text, **kwargs).sample


class VideoControlNetModel(MotionHooked):
    @classmethod
    def from_file(cls, path: str, unet) -> "VideoControlNetModel":
        """Our single-file Video ControlNet (e.g. stage 3's export) as a diffusers ControlNet for ``unet``'s layout."""
        import os

        from dreamoving.controlnet_files import MOTION_PREFIX, stored_motion_metadata
        from dreamoving.motion_files import motion_model_from_state_dict, motion_state_dict
        from dreamoving.weights import read_state_dict

        state, metadata = read_state_dict(path)
        controlnet = controlnet_from_ldm({k: v for k, v in state.items() if not k.startswith(MOTION_PREFIX)}, unet)
        motion_state = motion_state_dict(state)
        motion = motion_model_from_state_dict(motion_state, stored_motion_metadata(metadata),
                                              os.path.basename(path)) if motion_state else None
        return cls(controlnet, motion)

    def forward(self, sample, timesteps, text, control, frames: int):
        """(down-block residuals, middle residual) for the U-Net; ``control`` is [(b f), 3, 8h, 8w] in [0, 1]."""
        self.set_frames(sample, frames)
        return self.net(sample, timesteps, encoder_hidden_states=text, controlnet_cond=control, return_dict=False)


def controlnet_from_ldm(state: dict[str, torch.Tensor], unet) -> nn.Module:
    """A diffusers ControlNet for ``unet``'s layout holding LDM-keyed weights (an SD1.5 ControlNet file,
    with or without the ``control_model.`` prefix)."""
    from diffusers import ControlNetModel

    from dreamoving.ldm_keys import ldm_to_controlnet

    controlnet = ControlNetModel.from_unet(unet)
    state = {k.removeprefix("control_model."): v for k, v in state.items()}
    controlnet.load_state_dict(ldm_to_controlnet(state, controlnet.state_dict(), unet.config.layers_per_block))
    return controlnet
