"""The attention call shared by our modules; hosts may swap in their own backend with the same signature."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

AttentionCallable = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head softmax attention on ``[batch, tokens, heads * dim]`` tensors (ComfyUI's calling convention)."""
    b, _, inner = q.shape
    dim = inner // heads
    q, k, v = (t.reshape(b, -1, heads, dim).transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v)
    return out.transpose(1, 2).reshape(b, -1, inner)
