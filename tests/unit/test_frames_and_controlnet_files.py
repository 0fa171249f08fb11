"""Frame matching and Video ControlNet file checks."""
from __future__ import annotations

import pytest
import torch

from dreamoving.controlnet_files import check_sd15_controlnet, split_video_controlnet
from dreamoving.frames import fit_frames
from dreamoving.weights import WeightFileError


def test_fit_frames_modes():
    seq = torch.arange(4).float()
    assert torch.equal(fit_frames(seq, 4, "error", "x"), seq)
    assert torch.equal(fit_frames(seq[:1], 9, "error", "x"), seq[:1]), "one entry applies to every frame"
    assert fit_frames(seq, 6, "repeat last", "x").tolist() == [0, 1, 2, 3, 3, 3]
    assert fit_frames(seq, 6, "loop", "x").tolist() == [0, 1, 2, 3, 0, 1]
    assert fit_frames(seq, 2, "loop", "x").tolist() == [0, 1]
    with pytest.raises(ValueError, match="pose frames: got 4 frames for a 6-frame video"):
        fit_frames(seq, 6, "error", "pose frames")


def test_controlnet_checks():
    ldm = {"control_model.input_hint_block.0.weight": torch.zeros(16, 3, 3, 3),
           "control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": torch.zeros(320, 768)}
    check_sd15_controlnet(ldm, "cn.pth")
    sdxl = {"controlnet_cond_embedding.conv_in.weight": torch.zeros(16, 3, 3, 3),
            "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight": torch.zeros(640, 2048)}
    with pytest.raises(WeightFileError, match=r"'xl.safetensors' is not an SD1.5 ControlNet.*\[2048\]"):
        check_sd15_controlnet(sdxl, "xl.safetensors")
    with pytest.raises(WeightFileError, match="'mm.ckpt' is not a ControlNet"):
        check_sd15_controlnet({"down_blocks.0.motion_modules.0.x": torch.zeros(1)}, "mm.ckpt")


def test_split_keeps_encoder_motion_only():
    state = {"input_hint_block.0.weight": torch.zeros(1), "zero_convs.0.0.weight": torch.zeros(1),
             "motion.down_blocks.0.motion_modules.0.temporal_transformer.norm.weight": torch.zeros(1),
             "motion.mid_block.motion_modules.0.temporal_transformer.norm.weight": torch.zeros(1),
             "motion.up_blocks.0.motion_modules.0.temporal_transformer.norm.weight": torch.zeros(1)}
    controlnet, motion = split_video_controlnet(state, "v.safetensors")
    assert set(controlnet) == {"input_hint_block.0.weight", "zero_convs.0.0.weight"}
    assert set(motion) == {"down_blocks.0.motion_modules.0.temporal_transformer.norm.weight",
                           "mid_block.motion_modules.0.temporal_transformer.norm.weight"}
