"""The Content Guider in ComfyUI: an attn2 replacement per cross-attention layer.

Each replacement computes the attention that was there (ComfyUI's, or another pack's attn2
replacement, e.g. IPAdapter_plus's) and adds ``a * Attn(Q, K_s, V_s)`` for the face and cloth streams,
with cond or uncond tokens per chunk by ``cond_or_uncond``. It also speaks IPAdapter_plus's ``add``
protocol, so IPAdapter applied after us adds its terms here instead of failing. The guider's weights
ride as an additional model.

Isolation: ``add()`` changes the replacement, so every clone of a guided model gets its own replacement
objects when it is made (an ON_CLONE callback), whether or not the host deep-copies ``model_options``
(v0.3.64 does; v0.33.0 shares every object that is not a dict or list between clones).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

import comfy.ldm.modules.attention as comfy_attention
from comfy.ldm.modules.attention import SpatialTransformer
from comfy.patcher_extension import CallbacksMP

from ..dreamoving.content_guider import ContentGuider, guided_attention
from .additional_models import riding_patcher
from .attention_choice import short_key_attention

GUIDER_KEY = "dreamoving_content_guider"


def cross_attention_blocks(model) -> list[tuple[tuple[str, int], int]]:
    """((block, id), channels) of every cross-attention layer, in IP-Adapter's order (input, output, middle)."""
    unet = model.model.diffusion_model
    found = []
    for name, blocks in (("input", unet.input_blocks), ("output", unet.output_blocks), ("middle", [unet.middle_block])):
        for block_id, block in enumerate(blocks):
            for layer in block:
                if isinstance(layer, SpatialTransformer):
                    if len(layer.transformer_blocks) != 1:
                        raise ValueError("model: the Content Guider needs an SD1.5 U-Net (one transformer per block)")
                    found.append(((name, block_id), layer.transformer_blocks[0].attn2.to_q.out_features))
    return found


@dataclass
class StreamTerm:
    """One image stream in one layer: its tokens (cond, uncond: ``[1, n, context]``) and weight."""

    stream: str
    cond: torch.Tensor
    uncond: torch.Tensor
    weight: float


class GuidedCrossAttention:
    """attn2 replacement for layer ``layer`` of ``guider``; ``previous`` is the replacement it wraps."""

    def __init__(self, guider: ContentGuider, layer: int, terms: list[StreamTerm], sigma_range, previous=None):
        self.guider, self.layer, self.terms = guider, layer, terms
        self.sigma_start, self.sigma_end = sigma_range
        self.previous = previous
        self.callbacks: list[tuple] = []  # IPAdapter_plus's add() protocol

    def __deepcopy__(self, memo):
        """A deep copy (v0.3.64's clone) shares the guider's weights and tokens, and copies the rest."""
        return self._copy(copy.deepcopy(self.previous, memo))

    def own_copy(self) -> "GuidedCrossAttention":
        """The copy a new clone holds: its own callback list (and a guider replacement it wraps copied too);
        another pack's replacement it wraps is shared, as we never change it."""
        previous = self.previous.own_copy() if isinstance(self.previous, GuidedCrossAttention) else self.previous
        return self._copy(previous)

    def _copy(self, previous):
        new = copy.copy(self)
        new.previous = previous
        new.callbacks = [(callback, dict(kwargs)) for callback, kwargs in self.callbacks]
        return new

    def add(self, callback, **kwargs):
        self.callbacks.append((callback, kwargs))

    def to(self, *args, **kwargs):
        return self

    def __call__(self, q, k, v, extra_options):
        heads = extra_options["n_heads"]
        if self.previous is not None:
            out = self.previous(q, k, v, extra_options)
        else:
            out = comfy_attention.optimized_attention(q, k, v, heads, attn_precision=extra_options.get("attn_precision"))
        sigma = float(extra_options["sigmas"][0]) if "sigmas" in extra_options else None
        if sigma is None or self.sigma_end <= sigma <= self.sigma_start:
            chunks = extra_options.get("cond_or_uncond") or [0]
            layer = self.guider.layers[self.layer]
            attention_terms = []
            for term in self.terms:
                if term.weight == 0:
                    continue
                tokens = torch.cat([(term.cond, term.uncond)[min(c, 1)] for c in chunks]).to(q)
                attention_terms.append((term.weight, *layer.kv(term.stream, tokens)))  # one K/V per chunk
            out = guided_attention(q, out, attention_terms, heads, short_key_attention(q.device))
        for callback, kwargs in self.callbacks:
            if sigma is None or kwargs.get("sigma_end", 0.0) <= sigma <= kwargs.get("sigma_start", float("inf")):
                out = out + callback(out, q, k, v, extra_options, **kwargs)
        return out


def own_guided_attention(parent, clone) -> None:
    """ON_CLONE callback: ``clone`` replaces each guided attn2 replacement it shares with ``parent`` by its own copy."""
    attn2 = clone.model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn2", {})
    for key, patch in attn2.items():
        if isinstance(patch, GuidedCrossAttention):
            attn2[key] = patch.own_copy()


def attach_guider(model, guider: ContentGuider, tokens: dict[str, tuple[torch.Tensor, torch.Tensor]],
                  weights: dict[str, float], start_percent: float, end_percent: float):
    """A clone of ``model`` whose cross-attention layers add the guider's streams (``tokens``: cond, uncond)."""
    blocks = cross_attention_blocks(model)
    channels = [c for _, c in blocks]
    if channels != guider.layer_channels:
        raise ValueError(f"guider: its {len(guider.layer_channels)} layers ({guider.layer_channels}) do not match "
                         f"the model's {len(channels)} cross-attention layers ({channels}); "
                         f"use an SD1.5 Content Guider or IP-Adapter file")
    patched = model.clone()
    existing = patched.get_additional_models_with_key(GUIDER_KEY)
    if all(m.model is not guider for m in existing):
        patched.set_additional_models(GUIDER_KEY, existing + [riding_patcher(model, guider)])
    sampling = patched.get_model_object("model_sampling")
    sigma_range = (float(sampling.percent_to_sigma(start_percent)), float(sampling.percent_to_sigma(end_percent)))
    terms = [StreamTerm(s, *tokens[s], float(weights[s])) for s in tokens]
    replaced = patched.model_options["transformer_options"].get("patches_replace", {}).get("attn2", {})
    for i, (key, _) in enumerate(blocks):
        patched.set_model_attn2_replace(GuidedCrossAttention(guider, i, terms, sigma_range, replaced.get(key)), *key)
    patched.remove_callbacks_with_key(CallbacksMP.ON_CLONE, GUIDER_KEY)
    patched.add_callback_with_key(CallbacksMP.ON_CLONE, GUIDER_KEY, own_guided_attention)
    return patched
