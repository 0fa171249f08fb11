"""The attention kernel of our short-key attentions: the motion blocks' attention across frames and the Content
Guider's attention to a few image tokens.

ComfyUI's pick, except on CPU where ComfyUI fell back by default (no flag asked for it) to a memory-saving kernel,
sub-quadratic or split. Those chunk the queries and copy per head to bound the score matrix, which for these
attentions is small anyway; torch's SDPA (ComfyUI's ``attention_pytorch``) was faster at every real SD1.5 level
measured: 1.5-2.8x at 16 and 64 frames (3-5x at 128-256), 1.1-1.7x for 4-16 image tokens
(``bench/attention.py``, bench/RESULTS.md).
"""
from __future__ import annotations

import torch

import comfy.ldm.modules.attention as comfy_attention
from comfy.cli_args import args


def short_key_attention(device: torch.device):
    """The attention callable for a short-key attention of tensors on ``device``."""
    chosen = comfy_attention.optimized_attention
    memory_saving = chosen in (comfy_attention.attention_sub_quad, comfy_attention.attention_split)
    asked = args.use_split_cross_attention or args.use_quad_cross_attention
    if device.type == "cpu" and memory_saving and not asked:
        return comfy_attention.attention_pytorch
    return chosen
