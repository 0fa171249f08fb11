"""AnimateDiff motion-module tensors in the real files' key layout, written out independently of our modules."""
from __future__ import annotations

import torch

from dmtest.fixtures import random_like

# The two real SD1.5 families: v1 (mm_sd_v14/v15: no mid block, PE 24) and v2 (mm_sd_v15_v2: mid block, PE 32).
SD15_CHANNELS = [320, 640, 1280, 1280]


def module_shapes(prefix: str, c: int, pe_len: int | None, layers: int = 1, attention_blocks: int = 2) -> dict:
    """Key -> shape of one AnimateDiff ``VanillaTemporalModule`` with ``c`` channels."""
    t = prefix + "temporal_transformer."
    shapes = {t + "norm.weight": (c,), t + "norm.bias": (c,), t + "proj_in.weight": (c, c), t + "proj_in.bias": (c,),
              t + "proj_out.weight": (c, c), t + "proj_out.bias": (c,)}
    for layer in range(layers):
        b = f"{t}transformer_blocks.{layer}."
        for a in range(attention_blocks):
            attn = f"{b}attention_blocks.{a}."
            shapes.update({attn + "to_q.weight": (c, c), attn + "to_k.weight": (c, c), attn + "to_v.weight": (c, c),
                           attn + "to_out.0.weight": (c, c), attn + "to_out.0.bias": (c,),
                           f"{b}norms.{a}.weight": (c,), f"{b}norms.{a}.bias": (c,)})
            if pe_len:
                shapes[attn + "pos_encoder.pe"] = (1, pe_len, c)
        shapes.update({b + "ff.net.0.proj.weight": (8 * c, c), b + "ff.net.0.proj.bias": (8 * c,),
                       b + "ff.net.2.weight": (c, 4 * c), b + "ff.net.2.bias": (c,),
                       b + "ff_norm.weight": (c,), b + "ff_norm.bias": (c,)})
    return shapes


def motion_file_tensors(channels: list[int], res_blocks: int, mid: bool, pe_len: int | None, seed: int = 0,
                        zero_out: bool = False, dtype=torch.float32) -> dict[str, torch.Tensor]:
    """A whole motion module for a U-Net with ``channels`` per level and ``res_blocks`` per level."""
    shapes = {}
    for i, c in enumerate(channels):
        for m in range(res_blocks):
            shapes.update(module_shapes(f"down_blocks.{i}.motion_modules.{m}.", c, pe_len))
    for i, c in enumerate(channels[::-1]):
        for m in range(res_blocks + 1):
            shapes.update(module_shapes(f"up_blocks.{i}.motion_modules.{m}.", c, pe_len))
    if mid:
        shapes.update(module_shapes("mid_block.motion_modules.0.", channels[-1], pe_len))
    tensors = random_like({k: torch.Size(s) for k, s in shapes.items() if not k.endswith(".pe")}, seed, dtype)
    gen = torch.Generator().manual_seed(seed + 1)
    for key in sorted(shapes):
        shape = shapes[key]
        if key.endswith(".pe"):
            tensors[key] = sinusoid(shape[1], shape[2]).to(dtype)
        elif "proj_out" in key and zero_out:
            tensors[key] = torch.zeros(shape, dtype=dtype)
        elif len(shape) == 1:  # norms and biases off their defaults, so a reference sees them applied
            tensors[key] = tensors[key] + (0.1 * torch.randn(shape, generator=gen)).to(dtype)
    return tensors


def sinusoid(length: int, dim: int) -> torch.Tensor:
    """AnimateDiff's PositionalEncoding table, as its code builds it."""
    import math

    position = torch.arange(length).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    pe = torch.zeros(1, length, dim)
    pe[0, :, 0::2] = torch.sin(position * div_term)
    pe[0, :, 1::2] = torch.cos(position * div_term)
    return pe
