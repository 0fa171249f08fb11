"""Reference math written out plainly, for tests and benchmarks to compare against."""
from __future__ import annotations

import math

import torch


def softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d)) V per head, on ``[batch, tokens, heads * d]`` tensors."""
    b, n, c = q.shape
    d = c // heads
    split = lambda t: t.reshape(b, -1, heads, d).transpose(1, 2)  # noqa: E731
    weights = torch.softmax(split(q) @ split(k).transpose(-1, -2) / math.sqrt(d), dim=-1)
    return (weights @ split(v)).transpose(1, 2).reshape(b, n, c)
