"""AnimateDiff's motion block (temporal transformer), with AnimateDiff's math and key names.

Frames ride in the batch dimension: a block input is ``[(b f), c, h, w]`` and attention runs over ``f``
for every spatial position. ``operations`` is any namespace with ``Linear``, ``GroupNorm`` and
``LayerNorm`` (``torch.nn`` by default; a host passes its own casting layers).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .attention import AttentionCallable, sdpa_attention


def sinusoid_table(length: int, dim: int, start: int = 0) -> torch.Tensor:
    """AnimateDiff's positional encoding rows ``start .. length-1``: ``[1, length - start, dim]``."""
    position = torch.arange(start, length, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(1, length - start, dim)
    pe[0, :, 0::2] = torch.sin(position * div_term)
    pe[0, :, 1::2] = torch.cos(position * div_term)
    return pe


class PositionalEncoding(nn.Module):
    """Adds ``pe[:, :f]``; rows past the stored table are generated (sinusoidal) on demand."""

    def __init__(self, dim: int, max_len: int):
        super().__init__()
        self.register_buffer("pe", sinusoid_table(max_len, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames, stored = x.shape[1], self.pe.shape[1]
        pe = self.pe[:, :frames]
        if frames > stored:
            extra = sinusoid_table(frames, self.pe.shape[2], start=stored).to(self.pe)
            pe = torch.cat([self.pe, extra], dim=1)
        return x + pe.to(x.dtype)


class TemporalAttention(nn.Module):
    """AnimateDiff's ``VersatileAttention`` in "Temporal" mode: self-attention across frames."""

    def __init__(self, dim: int, heads: int, pe_len: int | None, operations=nn):
        super().__init__()
        self.heads = heads
        self.to_q = operations.Linear(dim, dim, bias=False)
        self.to_k = operations.Linear(dim, dim, bias=False)
        self.to_v = operations.Linear(dim, dim, bias=False)
        self.to_out = nn.ModuleList([operations.Linear(dim, dim), nn.Dropout(0.0)])
        self.pos_encoder = PositionalEncoding(dim, pe_len) if pe_len else None

    def forward(self, x: torch.Tensor, scale: float = 1.0, attention: AttentionCallable = sdpa_attention) -> torch.Tensor:
        """``x``: ``[(b d), f, c]``, one sequence of frames per spatial position."""
        if self.pos_encoder is not None:
            x = self.pos_encoder(x)
        q, k, v = self.to_q(x), self.to_k(x), self.to_v(x)
        if scale != 1.0:
            k = k * scale  # sharpens (>1) or flattens (<1) the temporal attention, as AnimateDiff-Evolved's scale
        return self.to_out[0](attention(q, k, v, self.heads))


class GEGLU(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, operations=nn):
        super().__init__()
        self.proj = operations.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden, gate = self.proj(x).chunk(2, dim=-1)
        return hidden * nn.functional.gelu(gate)


class FeedForward(nn.Module):
    """diffusers' GEGLU feed-forward: ``net.0`` (GEGLU), ``net.1`` (dropout), ``net.2`` (Linear)."""

    def __init__(self, dim: int, inner: int, operations=nn):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, inner, operations), nn.Dropout(0.0), operations.Linear(inner, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class TemporalTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, attention_blocks: int, ff_inner: int, pe_len: int | None, operations=nn):
        super().__init__()
        self.attention_blocks = nn.ModuleList(
            [TemporalAttention(dim, heads, pe_len, operations) for _ in range(attention_blocks)])
        self.norms = nn.ModuleList([operations.LayerNorm(dim) for _ in range(attention_blocks)])
        self.ff = FeedForward(dim, ff_inner, operations)
        self.ff_norm = operations.LayerNorm(dim)

    def forward(self, x, scale=1.0, attention=sdpa_attention):
        for attn, norm in zip(self.attention_blocks, self.norms):
            x = attn(norm(x), scale, attention) + x
        return self.ff(self.ff_norm(x)) + x


class TemporalTransformer3DModel(nn.Module):
    """GroupNorm -> proj_in -> transformer blocks -> proj_out, plus the residual."""

    def __init__(self, channels: int, heads: int, layers: int, attention_blocks: int, ff_inner: int,
                 pe_len: int | None, operations=nn):
        super().__init__()
        self.norm = operations.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)
        self.proj_in = operations.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList(
            [TemporalTransformerBlock(channels, heads, attention_blocks, ff_inner, pe_len, operations)
             for _ in range(layers)])
        self.proj_out = operations.Linear(channels, channels)

    def forward(self, x, frames, scale=1.0, attention=sdpa_attention):
        """``x``: ``[(b f), c, h, w]``. The blocks run on ``[(b h w), f, c]``: one layout change in, one out."""
        bf, c, h, w = x.shape
        b = bf // frames
        hidden = self.norm(x).reshape(b, frames, c, h * w).permute(0, 3, 1, 2).reshape(b * h * w, frames, c)
        hidden = self.proj_in(hidden)
        for block in self.transformer_blocks:
            hidden = block(hidden, scale, attention)
        hidden = self.proj_out(hidden).view(b, h, w, frames, c).permute(0, 3, 4, 1, 2)
        return (x.view(b, frames, c, h, w) + hidden).reshape(bf, c, h, w)


class VanillaTemporalModule(nn.Module):
    """One motion block, placed after a U-Net block. ``effect`` blends its output with its input."""

    def __init__(self, channels: int, spec: "MotionModuleSpec", operations=nn):
        super().__init__()
        self.temporal_transformer = TemporalTransformer3DModel(
            channels, spec.heads, spec.layers, spec.attention_blocks, channels * spec.ff_mult, spec.pe_len, operations)

    def forward(self, x: torch.Tensor, frames: int, scale: float = 1.0, effect: float = 1.0,
                attention: AttentionCallable = sdpa_attention) -> torch.Tensor:
        if x.shape[0] % frames:
            raise ValueError(f"motion block: batch of {x.shape[0]} is not a whole number of {frames}-frame videos")
        if effect == 0.0:
            return x
        out = self.temporal_transformer(x, frames, scale, attention)
        return out if effect == 1.0 else x + (out - x) * effect


@dataclass
class MotionModuleSpec:
    """The shape of a motion model: channels and module counts per U-Net block, plus the block config."""

    down_channels: list[int]
    down_counts: list[int]
    up_channels: list[int]
    up_counts: list[int]
    mid_channels: int | None
    heads: int = 8
    layers: int = 1
    attention_blocks: int = 2
    ff_mult: int = 4
    pe_len: int | None = 64
    extra: dict = field(default_factory=dict)

    @property
    def module_count(self) -> int:
        return sum(self.down_counts) + sum(self.up_counts) + (self.mid_channels is not None)


class MotionBlock(nn.Module):
    def __init__(self, channels: int, count: int, spec: MotionModuleSpec, operations=nn):
        super().__init__()
        self.motion_modules = nn.ModuleList([VanillaTemporalModule(channels, spec, operations) for _ in range(count)])


class MotionModel(nn.Module):
    """All motion blocks of a U-Net, keyed as AnimateDiff's files: ``down_blocks.N.motion_modules.M...``."""

    def __init__(self, spec: MotionModuleSpec, operations=nn):
        super().__init__()
        self.spec = spec
        self.down_blocks = nn.ModuleList(
            [MotionBlock(c, n, spec, operations) for c, n in zip(spec.down_channels, spec.down_counts)])
        self.up_blocks = nn.ModuleList(
            [MotionBlock(c, n, spec, operations) for c, n in zip(spec.up_channels, spec.up_counts)])
        self.mid_block = MotionBlock(spec.mid_channels, 1, spec, operations) if spec.mid_channels else None

    def placements(self) -> list[tuple[str, int, int, VanillaTemporalModule]]:
        """``(kind, block, index, module)`` for every motion block; kind is "down", "mid" or "up"."""
        out = []
        for kind, blocks in (("down", self.down_blocks), ("up", self.up_blocks)):
            for b, block in enumerate(blocks):
                out += [(kind, b, m, module) for m, module in enumerate(block.motion_modules)]
        if self.mid_block is not None:
            out.append(("mid", 0, 0, self.mid_block.motion_modules[0]))
        return out
