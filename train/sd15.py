"""SD1.5 parts for training, as diffusers models, from the files users have (no downloads).

A single-file LDM checkpoint (``model.diffusion_model.*``) is converted with diffusers' own converter;
its U-Net layout comes from an LDM config (``SD15_UNET`` is SD1.5's; tests pass smaller ones).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
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
    sub = "unet" if os.path.isdir(os.path.join(folder, "unet")) else None
    return UNet2DConditionModel.from_pretrained(folder, subfolder=sub, local_files_only=True, torch_dtype=dtype)


@dataclass
class SD15Parts:
    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: torch.nn.Module
    tokenizer: object

    @torch.no_grad()
    def encode_text(self, captions: list[str]) -> torch.Tensor:
        ids = self.tokenizer(captions, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        return self.text_encoder(ids.to(self.text_encoder.device))[0]

    @torch.no_grad()
    def encode_pixels(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """[n, 3, H, W] in [-1, 1] -> scaled latents (a sample of the VAE posterior)."""
        latents = self.vae.encode(pixels.to(self.vae.device, self.vae.dtype)).latent_dist.sample(generator)
        return latents * self.vae.config.scaling_factor


def load_sd15(folder: str, unet_file: str | None = None, unet_params: dict = SD15_UNET) -> SD15Parts:
    """VAE, text encoder and tokenizer from a diffusers-layout folder; the U-Net from there or a single file."""
    from transformers import CLIPTextModel, CLIPTokenizer

    def part(cls, sub):
        if not os.path.isdir(os.path.join(folder, sub)):
            raise FileNotFoundError(f"SD1.5 folder '{folder}' has no '{sub}' (diffusers layout expected)")
        return cls.from_pretrained(folder, subfolder=sub, local_files_only=True)

    unet = unet_from_single_file(unet_file, unet_params) if unet_file else unet_from_diffusers_folder(folder)
    return SD15Parts(unet, part(AutoencoderKL, "vae"), part(CLIPTextModel, "text_encoder"),
                     part(CLIPTokenizer, "tokenizer"))
