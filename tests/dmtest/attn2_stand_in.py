"""A test node that patches cross-attention the way IPAdapter_plus does (its ``set_model_patch_replace`` at
9d076a3): clone the model, shallow-copy the transformer_options dicts, and on a layer that already holds an attn2
replacement call that object's ``add(callback, **kwargs)``; elsewhere put its own replacement."""
from __future__ import annotations

import torch

NODE_ID = "DMTestIPAdapterProtocol"


def tanh_term(out, q, k, v, extra_options, weight, **kwargs):
    """The added attention term: ``weight * tanh(q)`` (linear in the weight, so stacked terms show)."""
    return weight * torch.tanh(q)


class _Replacement:
    """The stand-in's own attn2 replacement (IPAdapter_plus's Attn2Replace protocol: callbacks + add())."""

    def __init__(self, callback, **kwargs):
        self.callbacks = [(callback, kwargs)]

    def add(self, callback, **kwargs):
        self.callbacks.append((callback, kwargs))

    def __call__(self, q, k, v, extra_options):
        import comfy.ldm.modules.attention as attention

        out = attention.optimized_attention(q, k, v, extra_options["n_heads"])
        for callback, kwargs in self.callbacks:
            out = out + callback(out, q, k, v, extra_options, **kwargs)
        return out


def patch_replace(model, key, kwargs) -> None:
    options = model.model_options["transformer_options"].copy()
    options["patches_replace"] = dict(options.get("patches_replace", {}))
    options["patches_replace"]["attn2"] = dict(options["patches_replace"].get("attn2", {}))
    attn2 = options["patches_replace"]["attn2"]
    if key in attn2:
        attn2[key].add(tanh_term, **kwargs)  # in place, on the object the clone holds (as IPAdapter_plus does)
    else:
        attn2[key] = _Replacement(tanh_term, **kwargs)
        model.model_options["transformer_options"] = options


class IPAdapterProtocolStandIn:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "weight": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "apply"
    CATEGORY = "dmtest"

    def apply(self, model, weight):
        work = model.clone()
        for key in [("input", 1), ("input", 3), ("output", 0), ("output", 1), ("output", 2), ("output", 3),
                    ("middle", 0)]:  # the cross-attention layers of the small fixture U-Net
            patch_replace(work, key, {"weight": weight, "sigma_start": 999.0, "sigma_end": 0.0})
        return (work,)
