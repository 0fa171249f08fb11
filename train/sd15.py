"""SD1.5 parts for training, as diffusers models, from the files users have (no downloads): a diffusers-layout
folder, or a single-file LDM checkpoint (U-Net, VAE and CLIP-L converted with diffusers' own converters) plus
a CLIP tokenizer folder (e.g. ComfyUI's ``comfy/sd1_tokenizer``). The U-Net layout of a single file comes from
an LDM config (``SD15_UNET`` is SD1.5's; ``unet_params=None`` reads the layout off the file). A checkpoint whose
VAE is TAESD-shaped (``first_stage_model.taesd_*``, as the embedded model's) gets ``dreamoving.taesd.TAESD``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import (convert_ldm_clip_checkpoint, convert_ldm_unet_checkpoint,
                                                convert_ldm_vae_checkpoint, create_unet_diffusers_config_from_ldm)

from dreamoving.taesd import SD15_SCALE_FACTOR, TAESD
from dreamoving.weights import read_state_dict

# v1-inference.yaml's U-Net: attention at downsampling factors 1, 2, 4
SD15_UNET = dict(in_channels=4, out_channels=4, model_channels=320, attention_resolutions=[4, 2, 1],
                 num_res_blocks=2, channel_mult=[1, 2, 4, 4], num_heads=8, use_spatial_transformer=True,
                 transformer_depth=1, context_dim=768, legacy=False)


SD15_VAE = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
                up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512], layers_per_block=2,
                latent_channels=4, sample_size=512, scaling_factor=0.18215)
CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
              max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768, bos_token_id=49406,
              eos_token_id=49407, pad_token_id=1)


def _original_config(unet_params: dict) -> dict:
    return {"model": {"params": {"unet_config": {"params": unet_params},
                                 "first_stage_config": {"params": {"ddconfig": {"ch_mult": [1, 2, 4, 4]}}}}}}


def unet_params_from_state(state: dict[str, torch.Tensor], prefix: str = "model.diffusion_model.") -> dict:
    """The LDM U-Net config of a checkpoint's U-Net: levels, res blocks per level, channel multipliers and
    which levels have attention, read off its ``input_blocks``."""
    def has(key):
        return prefix + key in state

    model_channels = state[prefix + "input_blocks.0.0.weight"].shape[0]
    levels, index = [[]], 1
    while has(f"input_blocks.{index}.0.weight") or has(f"input_blocks.{index}.0.op.weight") or \
            has(f"input_blocks.{index}.0.in_layers.0.weight"):
        if has(f"input_blocks.{index}.0.op.weight"):
            levels.append([])
        else:
            levels[-1].append(index)
        index += 1
    channels = [state[prefix + f"input_blocks.{blocks[0]}.0.out_layers.3.weight"].shape[0] for blocks in levels]
    context = next(v.shape[1] for k, v in state.items() if k.startswith(prefix) and k.endswith("attn2.to_k.weight"))
    return dict(SD15_UNET, model_channels=model_channels, num_res_blocks=len(levels[0]), context_dim=context,
                channel_mult=[c // model_channels for c in channels],
                attention_resolutions=[2 ** level for level, blocks in enumerate(levels)
                                       if has(f"input_blocks.{blocks[0]}.1.proj_in.weight")])


def unet_from_single_file(path: str, unet_params: dict | None = SD15_UNET, dtype=torch.float32,
                          state: dict | None = None) -> UNet2DConditionModel:
    """A diffusers U-Net holding the ``model.diffusion_model.*`` weights of an LDM single-file checkpoint."""
    state = state if state is not None else read_state_dict(path)[0]
    original = _original_config(unet_params or unet_params_from_state(state))
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
    vae: AutoencoderKL | TAESD
    text_encoder: torch.nn.Module
    tokenizer: object
    _text_cache: dict = field(default_factory=dict, repr=False)

    @torch.no_grad()
    def encode_text(self, captions: list[str]) -> torch.Tensor:
        """CLIP hidden states per caption; the text encoder is frozen in every stage, so each caption's are
        computed once."""
        new = sorted(set(captions) - set(self._text_cache))
        if new:
            length = min(self.tokenizer.model_max_length, self.text_encoder.config.max_position_embeddings)
            ids = self.tokenizer(new, padding="max_length", max_length=length, truncation=True,
                                 return_tensors="pt").input_ids
            self._text_cache.update(zip(new, self.text_encoder(ids.to(self.text_encoder.device))[0]))
        return torch.stack([self._text_cache[c] for c in captions])

    @torch.no_grad()
    def encode_pixels(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """[n, 3, H, W] in [-1, 1] -> scaled latents (a sample of the VAE posterior; TAESD is deterministic)."""
        device, dtype = next(self.vae.parameters()).device, next(self.vae.parameters()).dtype
        if isinstance(self.vae, TAESD):
            return self.vae.encode(pixels.to(device, dtype)) * SD15_SCALE_FACTOR
        latents = self.vae.encode(pixels.to(device, dtype)).latent_dist.sample(generator)
        return latents * self.vae.config.scaling_factor

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> [n, 3, H, W] images in [-1, 1] (not clamped)."""
        if isinstance(self.vae, TAESD):
            return self.vae.decode(latents / SD15_SCALE_FACTOR)
        return self.vae.decode(latents / self.vae.config.scaling_factor).sample


def load_sd15(source: str, tokenizer: str | None = None, unet_params: dict | None = SD15_UNET) -> SD15Parts:
    """SD1.5 from a diffusers-layout folder, or from a single-file checkpoint plus a tokenizer folder."""
    if os.path.isfile(source):
        if tokenizer is None:
            raise ValueError(f"'{source}' is a single file: give a CLIP tokenizer folder too (vocab.json, merges.txt; "
                             f"e.g. ComfyUI/comfy/sd1_tokenizer)")
        return _single_file(source, tokenizer, unet_params)
    folder = source
    from transformers import CLIPTextModel, CLIPTokenizer

    def part(cls, sub):
        if not os.path.isdir(os.path.join(folder, sub)):
            raise FileNotFoundError(f"SD1.5 folder '{folder}' has no '{sub}' (diffusers layout expected)")
        return cls.from_pretrained(folder, subfolder=sub, local_files_only=True)

    return SD15Parts(unet_from_diffusers_folder(folder), part(AutoencoderKL, "vae"), part(CLIPTextModel, "text_encoder"),
                     part(CLIPTokenizer, "tokenizer"))


def _single_file(path: str, tokenizer: str, unet_params: dict | None) -> SD15Parts:
    from transformers import CLIPTokenizer

    state, _ = read_state_dict(path)
    unet = unet_from_single_file(path, unet_params, state=state)
    if "first_stage_model.taesd_decoder.1.weight" in state:
        vae = TAESD()
        _load(vae, {k.removeprefix("first_stage_model."): v.float() for k, v in state.items()
                    if k.startswith("first_stage_model.")}, path, "TAESD VAE")
    else:
        vae = AutoencoderKL(**SD15_VAE)
        _load(vae, convert_ldm_vae_checkpoint(state, vae.config), path, "VAE")
    return SD15Parts(unet, vae, clip_text_model(state, path),
                     CLIPTokenizer.from_pretrained(tokenizer, local_files_only=True))


def clip_text_model(state: dict[str, torch.Tensor], path: str):
    """A transformers CLIPTextModel (fp32) holding a checkpoint's ``cond_stage_model.`` CLIP-L."""
    from transformers import CLIPTextConfig, CLIPTextModel

    text_encoder = CLIPTextModel(CLIPTextConfig(**CLIP_L))
    expected = set(text_encoder.state_dict())
    clip = {k if k in expected else k.removeprefix("text_model."): v.float()  # transformers 5 dropped the prefix
            for k, v in convert_ldm_clip_checkpoint(state).items()}
    _load(text_encoder, clip, path, "CLIP-L", allowed_missing=("text_model.embeddings.position_ids",
                                                               "embeddings.position_ids"))
    return text_encoder


def _load(module, state: dict, path: str, what: str, allowed_missing=()) -> None:
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in allowed_missing]
    if missing or unexpected:
        raise ValueError(f"'{path}': its {what} does not match SD1.5's: missing {missing[:3]}, unexpected {unexpected[:3]}")
