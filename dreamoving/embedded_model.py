"""The embedded DreaMoving: a small SD1.5-detected model trained by ``train/`` on rendered dancers, which the
pack carries so the main job makes a real video with no download.

What is trained and shipped: the U-Net, the TAESD-shaped VAE, the Video ControlNet, the motion modules and the
Content Guider. What is generated at set-up (bit-identical everywhere, checked by digest): the CLIP-L text
encoder, which ComfyUI needs full-shaped to detect SD1.5 (123M parameters would not fit the repository), and
which stays frozen at its seeded values in training too. ComfyUI detects SD1.5 from ``model_channels`` 320 and
``context_dim`` 768; one level with one res block keeps the U-Net at 26M parameters.
"""
from __future__ import annotations

from .seeded_weights import seeded_init, tensor_digest

# The U-Net, as the LDM config train/sd15.py reads (one level at 320 channels, attention in it and the middle)
UNET_CONFIG = dict(in_channels=4, out_channels=4, model_channels=320, attention_resolutions=[1], num_res_blocks=1,
                   channel_mult=[1], num_heads=8, use_spatial_transformer=True, transformer_depth=1, context_dim=768,
                   legacy=False)
TEXT_ENCODER_PREFIX = "cond_stage_model.transformer.text_model."
TEXT_ENCODER_SEED = 20231208  # DreaMoving's arXiv date
TEXT_ENCODER_DIGEST = "5cc27812b9f95164773ef6d5d953dd2db90e8bd87b224cd6b1687e73aa2dd62c"
_CLIP_L = dict(width=768, layers=12, mlp=3072, vocab=49408, positions=77)


def text_encoder_shapes() -> dict[str, tuple[int, ...]]:
    """CLIP-L's text transformer (OpenAI ViT-L/14), in the key layout SD1.5 checkpoints store it."""
    w, m = _CLIP_L["width"], _CLIP_L["mlp"]
    shapes = {"embeddings.token_embedding.weight": (_CLIP_L["vocab"], w),
              "embeddings.position_embedding.weight": (_CLIP_L["positions"], w),
              "final_layer_norm.weight": (w,), "final_layer_norm.bias": (w,)}
    for i in range(_CLIP_L["layers"]):
        layer = f"encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes.update({f"{layer}self_attn.{proj}.weight": (w, w), f"{layer}self_attn.{proj}.bias": (w,)})
        for norm in ("layer_norm1", "layer_norm2"):
            shapes.update({f"{layer}{norm}.weight": (w,), f"{layer}{norm}.bias": (w,)})
        shapes.update({f"{layer}mlp.fc1.weight": (m, w), f"{layer}mlp.fc1.bias": (m,),
                       f"{layer}mlp.fc2.weight": (w, m), f"{layer}mlp.fc2.bias": (w,)})
    return {TEXT_ENCODER_PREFIX + k: v for k, v in shapes.items()}


def generated_text_encoder(check: bool = True) -> dict:
    """The seeded CLIP-L text encoder (fp16, checkpoint keys); ``check`` compares it with the recorded digest."""
    tensors = seeded_init(text_encoder_shapes(), TEXT_ENCODER_SEED)
    if check and (digest := tensor_digest(tensors)) != TEXT_ENCODER_DIGEST:
        raise RuntimeError(f"the generated text encoder differs from the recorded one (digest {digest}, expected "
                           f"{TEXT_ENCODER_DIGEST}): this machine's numpy or torch computes it differently")
    return tensors
