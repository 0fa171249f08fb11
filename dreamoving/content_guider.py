"""Content Guider (DreaMoving Eq. 1): face and cloth image prompts with their own K/V in every
cross-attention layer of the U-Net:

    Z' = Attn(Q, K_t, V_t) + a_f Attn(Q, K_f, V_f) + a_c Attn(Q, K_c, V_c)

Each stream turns image features into tokens with a projection, IP-Adapter style:
``linear`` (IP-Adapter base: CLIP image embeds), ``resampler`` (IP-Adapter Plus: CLIP penultimate hidden
states), ``faceid`` (ArcFace embedding) and ``faceid_plus`` (FaceID-Plus/PlusV2: ArcFace embedding +
CLIP hidden states of the face crop). Module and key names follow IP-Adapter, so its files load as is.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .attention import AttentionCallable, sdpa_attention

STREAMS = ("face", "cloth")
# the features each projection kind takes: "embeds" (CLIP image embeds), "hidden" (CLIP penultimate
# hidden states), "id" (ArcFace embedding)
KIND_INPUTS = {"linear": ("embeds",), "resampler": ("hidden",), "faceid": ("id",), "faceid_plus": ("id", "hidden")}


def feed_forward(dim: int, mult: int = 4) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * mult, bias=False), nn.GELU(),
                         nn.Linear(dim * mult, dim, bias=False))


class PerceiverAttention(nn.Module):
    """Latents attend to [features, latents] (IP-Adapter's resampler attention)."""

    def __init__(self, dim: int, dim_head: int, heads: int):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim_head * heads, bias=False)
        self.to_kv = nn.Linear(dim, dim_head * heads * 2, bias=False)
        self.to_out = nn.Linear(dim_head * heads, dim, bias=False)

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        x, latents = self.norm1(x), self.norm2(latents)
        b, n, _ = latents.shape
        q = self.to_q(latents)
        k, v = self.to_kv(torch.cat((x, latents), dim=-2)).chunk(2, dim=-1)
        q, k, v = (t.reshape(b, -1, self.heads, self.dim_head).transpose(1, 2) for t in (q, k, v))
        scale = 1 / math.sqrt(math.sqrt(self.dim_head))
        weights = torch.softmax(((q * scale) @ (k * scale).transpose(-2, -1)).float(), dim=-1).to(q.dtype)
        return self.to_out((weights @ v).transpose(1, 2).reshape(b, n, -1))


class PerceiverStack(nn.Module):
    """proj_in -> (attention + feed-forward) x depth -> proj_out -> norm_out, on given latents."""

    def __init__(self, dim: int, depth: int, dim_head: int, heads: int, embedding_dim: int, output_dim: int):
        super().__init__()
        self.proj_in = nn.Linear(embedding_dim, dim)
        self.proj_out = nn.Linear(dim, output_dim)
        self.norm_out = nn.LayerNorm(output_dim)
        self.layers = nn.ModuleList(
            [nn.ModuleList([PerceiverAttention(dim, dim_head, heads), feed_forward(dim)]) for _ in range(depth)])

    def forward(self, latents: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        x = self.proj_in(x)
        for attn, ff in self.layers:
            latents = attn(x, latents) + latents
            latents = ff(latents) + latents
        return self.norm_out(self.proj_out(latents))


class Resampler(PerceiverStack):
    """IP-Adapter Plus: learned queries resample CLIP hidden states into tokens."""

    def __init__(self, dim: int, depth: int, dim_head: int, heads: int, num_queries: int, embedding_dim: int,
                 output_dim: int):
        super().__init__(dim, depth, dim_head, heads, embedding_dim, output_dim)
        self.latents = nn.Parameter(torch.zeros(1, num_queries, dim))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return super().forward(self.latents.repeat(hidden.shape[0], 1, 1), hidden)


class LinearProjection(nn.Module):
    """IP-Adapter base: CLIP image embeds -> ``tokens`` tokens."""

    def __init__(self, in_dim: int, tokens: int, dim: int):
        super().__init__()
        self.tokens, self.dim = tokens, dim
        self.proj = nn.Linear(in_dim, tokens * dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(embeds).reshape(-1, self.tokens, self.dim))


class FaceIDProjection(nn.Module):
    """IP-Adapter FaceID (ArcFace -> tokens); with ``perceiver_resampler`` FaceID-Plus, whose V2 adds the
    ID tokens back (``shortcut``) with ``shortcut_scale``."""

    def __init__(self, id_dim: int, tokens: int, dim: int, plus: dict | None = None, shortcut: bool = False,
                 shortcut_scale: float = 1.0):
        super().__init__()
        self.tokens, self.dim = tokens, dim
        self.shortcut, self.shortcut_scale = shortcut, shortcut_scale
        self.proj = nn.Sequential(nn.Linear(id_dim, id_dim * 2), nn.GELU(), nn.Linear(id_dim * 2, tokens * dim))
        self.norm = nn.LayerNorm(dim)
        self.perceiver_resampler = PerceiverStack(**plus) if plus else None

    def forward(self, id_embeds: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm(self.proj(id_embeds).reshape(-1, self.tokens, self.dim))
        if self.perceiver_resampler is None:
            return x
        out = self.perceiver_resampler(x, hidden)
        return x + self.shortcut_scale * out if self.shortcut else out


class GuiderLayer(nn.Module):
    """The face and cloth K/V projections of one cross-attention layer (``to_k_face``, ``to_v_cloth``...)."""

    def kv(self, stream: str, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"to_k_{stream}")(tokens), getattr(self, f"to_v_{stream}")(tokens)

    def add_stream(self, stream: str, context_dim: int, channels: int):
        setattr(self, f"to_k_{stream}", nn.Linear(context_dim, channels, bias=False))
        setattr(self, f"to_v_{stream}", nn.Linear(context_dim, channels, bias=False))


class ContentGuider(nn.Module):
    """Projections (``image_proj.<stream>``) and per-layer K/V (``layers.N``) of the face and cloth streams, and
    optionally the image encoder whose features they take (``image_encoder``; otherwise CLIP ViT-H/14).

    Layers are in IP-Adapter's order: input blocks, output blocks, then the middle block.
    """

    def __init__(self, layer_channels: list[int], context_dim: int = 768):
        super().__init__()
        self.context_dim = context_dim
        self.image_proj = nn.ModuleDict()
        self.layers = nn.ModuleList([GuiderLayer() for _ in layer_channels])
        self.layer_channels = list(layer_channels)
        self.kinds: dict[str, str] = {}
        self.image_encoder: nn.Module | None = None

    def add_stream(self, stream: str, kind: str, projection: nn.Module) -> None:
        if stream not in STREAMS or kind not in KIND_INPUTS:
            raise ValueError(f"stream must be one of {STREAMS} and kind one of {list(KIND_INPUTS)}")
        self.image_proj[stream] = projection
        self.kinds[stream] = kind
        for layer, channels in zip(self.layers, self.layer_channels):
            layer.add_stream(stream, self.context_dim, channels)

    def with_streams_of(self, other: "ContentGuider") -> "ContentGuider":
        """A guider with this one's streams and ``other``'s (which win); modules are shared, not copied."""
        if other.layer_channels != self.layer_channels or other.context_dim != self.context_dim:
            raise ValueError(f"guider: cannot combine guiders with layers {self.layer_channels} and "
                             f"{other.layer_channels}")
        merged = ContentGuider(self.layer_channels, self.context_dim)
        merged.image_encoder = other.image_encoder if other.image_encoder is not None else self.image_encoder
        for source in (self, other):
            for stream, kind in source.kinds.items():
                merged.image_proj[stream] = source.image_proj[stream]
                merged.kinds[stream] = kind
                for target, layer in zip(merged.layers, source.layers):
                    for kv in "kv":
                        setattr(target, f"to_{kv}_{stream}", getattr(layer, f"to_{kv}_{stream}"))
        return merged

    def tokens(self, stream: str, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Tokens of ``stream`` from the features its kind takes (see KIND_INPUTS)."""
        needed = KIND_INPUTS[self.kinds[stream]]
        missing = [f for f in needed if features.get(f) is None]
        if missing:
            raise ValueError(f"the {stream} stream ({self.kinds[stream]}) needs {missing} features")
        return self.image_proj[stream](*(features[f] for f in needed))


def guided_attention(q: torch.Tensor, text_out: torch.Tensor, terms: list[tuple[float, torch.Tensor, torch.Tensor]],
                     heads: int, attention: AttentionCallable = sdpa_attention) -> torch.Tensor:
    """Eq. 1: the text attention output plus ``weight * Attn(q, k, v)`` for each image stream.

    ``k``, ``v``: ``[g, n, c]`` where ``g`` divides q's batch; consecutive q rows (a video's frames) share one
    K/V, and attend to it as one long query sequence instead of a K/V copy per row.
    """
    out = text_out
    for weight, k, v in terms:
        if weight != 0:
            grouped = q.reshape(k.shape[0], -1, q.shape[-1])
            out = out + weight * attention(grouped, k, v, heads).reshape(q.shape)
    return out
