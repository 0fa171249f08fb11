"""OpenCLIP ViT checkpoints (e.g. ViT-H-14 ``open_clip_pytorch_model.bin``) as transformers'
``CLIPVisionModelWithProjection``, so stage 1's feature preparation reads them like IP-Adapter's image encoder."""
from __future__ import annotations

import torch

from dreamoving.weights import read_state_dict

# heads are not visible in the weights; OpenCLIP's ViT-L/H/bigG-14 all use 16 (head widths 64, 80, 104)
HEADS_BY_WIDTH = {1024: 16, 1280: 16, 1664: 16}


def openclip_vision_to_transformers(state: dict[str, torch.Tensor], prefix: str = "visual.") -> tuple[dict, dict]:
    """(transformers state dict, CLIPVisionConfig kwargs) of an OpenCLIP vision tower (keys under ``prefix``)."""
    visual = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if "conv1.weight" not in visual:
        raise ValueError(f"not an OpenCLIP vision tower: no '{prefix}conv1.weight'")
    width, _, patch, _ = visual["conv1.weight"].shape
    layers = 1 + max(int(k.split(".")[2]) for k in visual if k.startswith("transformer.resblocks."))
    positions = visual["positional_embedding"].shape[0]
    config = dict(hidden_size=width, num_hidden_layers=layers, patch_size=patch,
                  image_size=patch * int(round((positions - 1) ** 0.5)),
                  intermediate_size=visual["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
                  num_attention_heads=HEADS_BY_WIDTH.get(width, max(1, width // 64)), projection_dim=visual["proj"].shape[1],
                  hidden_act="gelu", layer_norm_eps=1e-5)
    out = {"vision_model.embeddings.class_embedding": visual["class_embedding"],
           "vision_model.embeddings.patch_embedding.weight": visual["conv1.weight"],
           "vision_model.embeddings.position_embedding.weight": visual["positional_embedding"],
           "visual_projection.weight": visual["proj"].T.contiguous()}
    for ours, theirs in (("pre_layrnorm", "ln_pre"), ("post_layernorm", "ln_post")):
        for p in ("weight", "bias"):
            out[f"vision_model.{ours}.{p}"] = visual[f"{theirs}.{p}"]
    for i in range(layers):
        src, dst = f"transformer.resblocks.{i}.", f"vision_model.encoder.layers.{i}."
        for p in ("weight", "bias"):
            for q, k_, v in [visual[src + f"attn.in_proj_{p}"].chunk(3)]:
                out[dst + f"self_attn.q_proj.{p}"], out[dst + f"self_attn.k_proj.{p}"] = q, k_
                out[dst + f"self_attn.v_proj.{p}"] = v
            for ours, theirs in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                                 ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
                out[dst + f"{ours}.{p}"] = visual[src + f"{theirs}.{p}"]
    return out, config


def load_openclip_vision(path: str, num_heads: int | None = None):
    """(transformers CLIPVisionModelWithProjection holding an OpenCLIP checkpoint's vision tower, its image
    processor: OpenAI CLIP normalisation at the tower's resolution)."""
    from transformers import CLIPImageProcessor
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    state, config = openclip_vision_to_transformers(read_state_dict(path)[0])
    if num_heads:
        config["num_attention_heads"] = num_heads
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**config))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(f"'{path}': OpenCLIP vision tower does not convert: missing {missing[:3]}, unexpected {unexpected[:3]}")
    size = config["image_size"]
    return model.eval(), CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
