"""Content Guider files: ours (both streams) and the public IP-Adapter SD1.5 files (one stream each).

Ours: ``image_proj.face.*``, ``image_proj.cloth.*``, ``layers.N.to_{k,v}_{face,cloth}.weight`` with
metadata ``{"format": "dreamoving.content_guider", "face_kind", "cloth_kind", "face_tokens", ...}``; a guider
that brings its own image encoder (``dreamoving.image_encoder``) holds it under ``image_encoder.*``.
IP-Adapter: ``image_proj.*`` + ``ip_adapter.<2N+1>.to_{k,v}_ip.weight`` (base, plus, plus-face, FaceID,
FaceID-Plus/PlusV2), as ``.safetensors`` or the nested ``.bin`` dictionaries.
"""
from __future__ import annotations

import os
import re

import torch
from torch import nn

from .content_guider import STREAMS, ContentGuider, FaceIDProjection, LinearProjection, Resampler
from .image_encoder import image_encoder_from_state
from .weights import WeightFileError, decode_metadata_value, read_state_dict, write_state_dict

FORMAT = "dreamoving.content_guider"
FORMAT_VERSION = 1
_DIM_HEAD = 64


def _count(state: dict, prefix: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return max(found) + 1 if found else 0


def _perceiver_config(state: dict, prefix: str, dim_head: int) -> dict:
    inner, dim = state[prefix + "layers.0.0.to_q.weight"].shape
    return {"dim": dim, "depth": _count(state, prefix + "layers."), "dim_head": dim_head, "heads": inner // dim_head,
            "embedding_dim": state[prefix + "proj_in.weight"].shape[1],
            "output_dim": state[prefix + "proj_out.weight"].shape[0]}


def projection_from_state(state: dict[str, torch.Tensor], name: str, faceid_v2: bool = False,
                          shortcut_scale: float = 1.0, dim_head: int = _DIM_HEAD) -> tuple[str, nn.Module]:
    """(kind, module) for IP-Adapter projection tensors (keys without ``image_proj.``), built from their shapes;
    ``dim_head`` (64 in every IP-Adapter file) is not visible in the shapes."""
    with torch.device("meta"):
        if "latents" in state:
            _, queries, _ = state["latents"].shape
            kind, module = "resampler", Resampler(num_queries=queries, **_perceiver_config(state, "", dim_head))
        elif "proj.0.weight" in state:
            hidden, id_dim = state["proj.0.weight"].shape
            dim = state["norm.weight"].shape[0]
            plus = _perceiver_config(state, "perceiver_resampler.", dim_head) \
                if "perceiver_resampler.proj_in.weight" in state else None
            kind = "faceid_plus" if plus else "faceid"
            module = FaceIDProjection(id_dim, state["proj.2.weight"].shape[0] // dim, dim, plus,
                                      shortcut=faceid_v2, shortcut_scale=shortcut_scale)
        elif "proj.weight" in state and "norm.weight" in state:
            dim = state["norm.weight"].shape[0]
            out, in_dim = state["proj.weight"].shape
            kind, module = "linear", LinearProjection(in_dim, out // dim, dim)
        else:
            raise WeightFileError(f"'{name}': unknown image projection (keys like {sorted(state)[:3]})")
    missing, unexpected = module.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise WeightFileError(f"'{name}': the {kind} projection does not match: missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}")
    return kind, module


def _strip(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_content_guider(path: str, stream: str | None = None, faceid_shortcut_scale: float = 1.0) -> ContentGuider:
    """Our file (both streams), or an IP-Adapter file loaded into ``stream`` ("face" or "cloth")."""
    name = os.path.basename(path)
    state, metadata = read_state_dict(path)
    metadata = {k: decode_metadata_value(v) for k, v in metadata.items()}
    if metadata.get("format") == FORMAT:
        return _load_ours(state, metadata, name)
    if not any(k.startswith("ip_adapter.") for k in state) or not any(k.startswith("image_proj.") for k in state):
        raise WeightFileError(f"'{name}' is neither a DreaMoving Content Guider nor an IP-Adapter file "
                              f"(expected image_proj.* and ip_adapter.* keys, found {sorted(state)[:3]})")
    if stream not in STREAMS:
        raise ValueError(f"stream: an IP-Adapter file goes into one stream, {STREAMS}; got {stream!r}")
    numbers = sorted({int(k.split(".")[1]) for k in state if k.startswith("ip_adapter.") and k.endswith("to_k_ip.weight")})
    guider = ContentGuider([state[f"ip_adapter.{n}.to_k_ip.weight"].shape[0] for n in numbers],
                           state[f"ip_adapter.{numbers[0]}.to_k_ip.weight"].shape[1])
    faceid_v2 = "v2" in name.lower()
    kind, projection = projection_from_state(_strip(state, "image_proj."), name, faceid_v2, faceid_shortcut_scale)
    guider.add_stream(stream, kind, projection)
    layer_state = {}
    for i, n in enumerate(numbers):
        for kv in ("k", "v"):
            layer_state[f"layers.{i}.to_{kv}_{stream}.weight"] = state[f"ip_adapter.{n}.to_{kv}_ip.weight"]
    _load_layers(guider, layer_state, name)
    return guider


def _load_ours(state: dict, metadata: dict, name: str) -> ContentGuider:
    streams = [s for s in STREAMS if any(k.startswith(f"image_proj.{s}.") for k in state)]
    if not streams:
        raise WeightFileError(f"'{name}' holds no face or cloth stream")
    first = streams[0]
    count = _count(state, "layers.")
    guider = ContentGuider([state[f"layers.{i}.to_k_{first}.weight"].shape[0] for i in range(count)],
                           state[f"layers.0.to_k_{first}.weight"].shape[1])
    for stream in streams:
        kind, projection = projection_from_state(
            _strip(state, f"image_proj.{stream}."), name, bool(metadata.get(f"{stream}_shortcut", False)),
            float(metadata.get(f"{stream}_shortcut_scale", 1.0)), int(metadata.get(f"{stream}_dim_head", _DIM_HEAD)))
        if kind != metadata.get(f"{stream}_kind", kind):
            raise WeightFileError(f"'{name}': {stream} projection is {kind}, metadata says {metadata[f'{stream}_kind']}")
        guider.add_stream(stream, kind, projection)
    _load_layers(guider, {k: v for k, v in state.items() if k.startswith("layers.")}, name)
    guider.image_encoder = image_encoder_from_state(state, metadata)
    return guider


def _load_layers(guider: ContentGuider, layer_state: dict, name: str) -> None:
    missing, unexpected = guider.layers.load_state_dict(_strip(layer_state, "layers."), strict=False, assign=True)
    if missing or unexpected:
        raise WeightFileError(f"'{name}': per-layer K/V do not match: missing {missing[:3]}, unexpected {unexpected[:3]}")


def guider_metadata(guider: ContentGuider) -> dict:
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "context_dim": guider.context_dim,
            "layers": len(guider.layers), "layer_order": "input blocks, output blocks, middle block (IP-Adapter)"}
    for stream, kind in guider.kinds.items():
        projection = guider.image_proj[stream]
        meta[f"{stream}_kind"] = kind
        meta[f"{stream}_tokens"] = projection.latents.shape[1] if kind == "resampler" else projection.tokens
        if kind == "faceid_plus":
            meta[f"{stream}_shortcut"] = projection.shortcut
            meta[f"{stream}_shortcut_scale"] = projection.shortcut_scale
        perceiver = {"resampler": projection, "faceid_plus": getattr(projection, "perceiver_resampler", None)}.get(kind)
        if perceiver is not None:
            meta[f"{stream}_dim_head"] = perceiver.layers[0][0].dim_head
    if guider.image_encoder is not None:
        meta.update({f"image_encoder_{k}": v for k, v in guider.image_encoder.config().items()})
    return meta


def save_content_guider(guider: ContentGuider, path: str, **extra_metadata) -> None:
    write_state_dict(path, guider.state_dict(), {**guider_metadata(guider), **extra_metadata})
