"""SD1.5 parts for training, as diffusers models, from the files users have (no downloads).

A single-file LDM checkpoint (``model.diffusion_model.*``) is converted with diffusers' own converter;
its U-Net layout comes from an LDM config (``SD15_UNET`` is SD1.5's; tests pass smaller ones).
"""
from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, create_unet_diffusers_config_from_ldm

from dreamoving.weights import read_state_dict

# v1-inference.yaml's U-Net: attention at downsampling factors 1, 2, 4
SD15_UNET = dict(in_channels=4, out_channels=4, model_channels=320, attention_resolutions=[4, 2, 1],
                 num_res_blocks=2, channel_mult=[1, 2, 4, 4], num_heads=8, use_spatial_transformer=True,
                 transformer_depth=1, context_dim=768, legacy=False)


def _original_config(unet_params: dict) -> dict:
    return {"model": {"params": {"unet_config": {"params": unet_params},
                                 "first_stage_config": {"params": {"ddconfig": {"ch_mult": [1, 2, 4, 4]}}}}}}


def unet_from_single_file(path: str, unet_params: dict = SD15_UNET, dtype=torch.float32) -> UNet2DConditionModel:
    """A diffusers U-Net holding the ``model.diffusion_model.*`` weights of an LDM single-file checkpoint."""
    state, _ = read_state_dict(path)
    original = _original_config(unet_params)
    config = create_unet_diffusers_config_from_ldm(original, state)
    unet = UNet2DConditionModel(**config)
    converted = convert_ldm_unet_checkpoint(state, config)
    missing, unexpected = unet.load_state_dict(converted, strict=False)
    if missing or unexpected:
        raise ValueError(f"'{path}': its U-Net does not match the given layout: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    return unet.to(dtype)


def unet_from_diffusers_folder(folder: str, dtype=torch.float32) -> UNet2DConditionModel:
    """The ``unet`` of a diffusers-layout SD1.5 folder (or a U-Net folder itself), local files only."""
    import os

    sub = "unet" if os.path.isdir(os.path.join(folder, "unet")) else None
    return UNet2DConditionModel.from_pretrained(folder, subfolder=sub, local_files_only=True, torch_dtype=dtype)
