"""Small stand-ins for the models core ComfyUI's SDPose and Depth Anything 3 nodes load (ComfyUI 0.33+).

Both are built from ComfyUI's own classes (so the key layout is the one the real files have and ComfyUI's
own detection picks the model), filled with seeded random values (``fixtures.random_like``):

* ``dm_small_sdpose_wholebody.safetensors`` (checkpoints, for CheckpointLoaderSimple), in place of
  Comfy-Org/SDPose's ``sdpose_wholebody_fp16.safetensors``: an SD2-detected U-Net (model_channels 320,
  context_dim 1024, linear transformer projections) with SDPose's ``heatmap_head`` (its fixed size: 640
  channels in, 133 COCO-WholeBody heatmaps), cut to two levels (channel_mult 1, 2: the 640-channel feature
  the extractor captures comes into the last level at latent resolution, as in SD2), one res block each, a
  transformer only on level 1, no middle block; a TAESD-shaped VAE (``vae_scale`` 1, as TAESD starts) and no
  text encoder (the extractor uses fixed conditioning). About 130 MB (fp16).
* ``dm_small_depth_anything_3_mono.safetensors`` (geometry_estimation, for LoadDA3Model), in place of
  Comfy-Org/Depth-Anything-3's ``depth_anything_3_mono_large.safetensors``: the Mono layout (DPT head with a
  sky head, no camera tokens) on the ViT-S backbone (the smallest preset ComfyUI detects), 32-channel head.
  About 45 MB (fp16).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from safetensors.torch import save_file

from dmtest.cache import write_once

SDPOSE_CKPT = "dm_small_sdpose_wholebody.safetensors"
DA3_MODEL = "dm_small_depth_anything_3_mono.safetensors"
SDPOSE_UNET = dict(image_size=32, in_channels=4, out_channels=4, model_channels=320, context_dim=1024,
                   num_head_channels=64, num_heads=-1, use_spatial_transformer=True, legacy=False,
                   use_linear_in_transformer=True, adm_in_channels=None, num_res_blocks=[1, 1], channel_mult=[1, 2],
                   transformer_depth=[0, 1], transformer_depth_output=[0, 0, 0, 0], transformer_depth_middle=-2,
                   heatmap_head=True)
DA3_CONFIG = dict(backbone_name="vits", out_layers=[5, 7, 9, 11], head_type="dpt", head_dim_in=384, head_output_dim=1,
                  head_features=32, head_out_channels=[32, 32, 32, 32], head_use_sky_head=True)


def host_has_core_models() -> bool:
    """Whether the imported ComfyUI has the model code of its SDPose and Depth Anything 3 nodes (0.33+)."""
    return all(importlib.util.find_spec(m) is not None
               for m in ("comfy.ldm.modules.sdpose", "comfy.ldm.depth_anything_3.model"))


def sdpose_checkpoint_tensors(seed: int = 61) -> dict[str, torch.Tensor]:
    import comfy.ldm.modules.diffusionmodules.openaimodel as openaimodel
    import comfy.taesd.taesd

    from dmtest.fixtures import _shapes, random_like

    unet = openaimodel.UNetModel(**SDPOSE_UNET, device="meta")
    with torch.device("meta"):
        vae = comfy.taesd.taesd.TAESD()
    tensors = random_like(_shapes(unet, "model.diffusion_model."), seed, torch.float16)
    tensors.update(random_like(_shapes(vae, "first_stage_model."), seed + 1, torch.float16))
    tensors["first_stage_model.vae_scale"] = torch.tensor(1.0, dtype=torch.float16)  # 0 would make latents inf
    return tensors


def da3_tensors(seed: int = 62) -> dict[str, torch.Tensor]:
    import comfy.ops
    from comfy.ldm.depth_anything_3.model import DepthAnything3Net

    from dmtest.fixtures import _shapes, random_like

    net = DepthAnything3Net(**DA3_CONFIG, device="meta", operations=comfy.ops.disable_weight_init)
    tensors = random_like(_shapes(net, ""), seed, torch.float16)
    for key in tensors:
        if key.endswith(".lambda1"):  # layer scale: 1 keeps every block's residual branch in play
            tensors[key] = torch.ones_like(tensors[key])
    return tensors


def ensure_core_models(checkpoints: Path, geometry_estimation: Path) -> None:
    """Write both stand-ins once (only where the host has the model code: ComfyUI 0.33+)."""
    if not host_has_core_models():
        return
    write_once(checkpoints / SDPOSE_CKPT, lambda p: save_file(sdpose_checkpoint_tensors(), str(p)))
    write_once(geometry_estimation / DA3_MODEL, lambda p: save_file(da3_tensors(), str(p)))
