"""IP-Adapter SD1.5 files in their real key layouts (written out here, not taken from our modules)."""
from __future__ import annotations

import torch

from dmtest.fixtures import random_like


def _perceiver(prefix: str, dim: int, depth: int, inner: int, embedding_dim: int, output_dim: int) -> dict:
    shapes = {prefix + "proj_in.weight": (dim, embedding_dim), prefix + "proj_in.bias": (dim,),
              prefix + "proj_out.weight": (output_dim, dim), prefix + "proj_out.bias": (output_dim,),
              prefix + "norm_out.weight": (output_dim,), prefix + "norm_out.bias": (output_dim,)}
    for i in range(depth):
        a, f = f"{prefix}layers.{i}.0.", f"{prefix}layers.{i}.1."
        shapes.update({a + "norm1.weight": (dim,), a + "norm1.bias": (dim,), a + "norm2.weight": (dim,),
                       a + "norm2.bias": (dim,), a + "to_q.weight": (inner, dim), a + "to_kv.weight": (2 * inner, dim),
                       a + "to_out.weight": (dim, inner), f + "0.weight": (dim,), f + "0.bias": (dim,),
                       f + "1.weight": (4 * dim, dim), f + "3.weight": (dim, 4 * dim)})
    return shapes


def _layers(layer_channels: list[int], context_dim: int) -> dict:
    shapes = {}
    for i, c in enumerate(layer_channels):
        shapes[f"ip_adapter.{2 * i + 1}.to_k_ip.weight"] = (c, context_dim)
        shapes[f"ip_adapter.{2 * i + 1}.to_v_ip.weight"] = (c, context_dim)
    return shapes


def _tensors(shapes: dict, seed: int) -> dict[str, torch.Tensor]:
    tensors = random_like({k: torch.Size(v) for k, v in shapes.items()}, seed, torch.float32)
    gen = torch.Generator().manual_seed(seed + 1)
    for k in sorted(tensors):
        if tensors[k].dim() == 1:  # norms and biases off their defaults
            tensors[k] = tensors[k] + 0.1 * torch.randn(tensors[k].shape, generator=gen)
    return tensors


def plus_tensors(layer_channels, queries=16, dim=128, depth=2, heads=2, embedding_dim=64, context_dim=768, seed=0):
    """ip-adapter-plus(_face)_sd15: a Resampler over CLIP hidden states."""
    shapes = {"image_proj.latents": (1, queries, dim)}
    shapes.update(_perceiver("image_proj.", dim, depth, heads * 64, embedding_dim, context_dim))
    shapes.update(_layers(layer_channels, context_dim))
    tensors = _tensors(shapes, seed)
    tensors["image_proj.latents"] = torch.randn(1, queries, dim, generator=torch.Generator().manual_seed(seed)) / dim ** 0.5
    return tensors


def faceid_plus_tensors(layer_channels, tokens=4, id_dim=512, depth=2, embedding_dim=64, context_dim=768, seed=0):
    """ip-adapter-faceid-plusv2_sd15: ArcFace MLP -> tokens, refined by a perceiver over CLIP hidden states."""
    shapes = {"image_proj.proj.0.weight": (2 * id_dim, id_dim), "image_proj.proj.0.bias": (2 * id_dim,),
              "image_proj.proj.2.weight": (tokens * context_dim, 2 * id_dim),
              "image_proj.proj.2.bias": (tokens * context_dim,),
              "image_proj.norm.weight": (context_dim,), "image_proj.norm.bias": (context_dim,)}
    shapes.update(_perceiver("image_proj.perceiver_resampler.", context_dim, depth, context_dim, embedding_dim,
                             context_dim))
    shapes.update(_layers(layer_channels, context_dim))
    return _tensors(shapes, seed)


def base_tensors(layer_channels, tokens=4, embeds_dim=1024, context_dim=768, seed=0):
    """ip-adapter_sd15: a linear projection of CLIP image embeds."""
    shapes = {"image_proj.proj.weight": (tokens * context_dim, embeds_dim), "image_proj.proj.bias": (tokens * context_dim,),
              "image_proj.norm.weight": (context_dim,), "image_proj.norm.bias": (context_dim,)}
    shapes.update(_layers(layer_channels, context_dim))
    return _tensors(shapes, seed)


def as_bin(tensors: dict) -> dict:
    """The nested layout of the original .bin files: {"image_proj": {...}, "ip_adapter": {...}}."""
    out = {"image_proj": {}, "ip_adapter": {}}
    for key, value in tensors.items():
        group, rest = key.split(".", 1)
        out[group][rest] = value
    return out
