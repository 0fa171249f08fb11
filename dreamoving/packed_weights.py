"""Compact storage for weights the repository ships: matrices and convolution kernels as int8 with one fp16 scale
per output row (symmetric, round to nearest), everything else as it was stored.

The packed file is a safetensors file (``format: dreamoving.packed``) whose metadata keeps the original file's
metadata; ``unpack`` rebuilds the fp16 tensors ComfyUI's loaders read. Dequantising is one exact fp32 product
per element, then a cast to fp16, so every machine gets the same tensors. A per-row int8 error is at most half a
step (row max / 254), about 0.2% of the row's largest weight.
"""
from __future__ import annotations

import json

import torch

from .weights import read_state_dict, save_byte_stable

PACKED_FORMAT = "dreamoving.packed"
SCALE_SUFFIX = ":scale"
MIN_PACKED_SIZE = 4096  # smaller tensors (biases, norms, small matrices) stay as they are


def _packs(key: str, tensor: torch.Tensor, exact_prefixes: tuple[str, ...]) -> bool:
    return (tensor.is_floating_point() and tensor.ndim >= 2 and tensor.numel() >= MIN_PACKED_SIZE
            and not key.startswith(exact_prefixes))


def pack_state_dict(state: dict[str, torch.Tensor], exact_prefixes: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """int8 rows + fp16 scales for large float tensors, fp16 for other float tensors; keys under
    ``exact_prefixes`` keep their dtype and values."""
    packed = {}
    for key, tensor in state.items():
        if _packs(key, tensor, exact_prefixes):
            rows = tensor.float().reshape(tensor.shape[0], -1)
            scale = (rows.abs().amax(dim=1) / 127).clamp_min(torch.finfo(torch.float16).tiny).half()
            packed[key] = (rows / scale.float()[:, None]).round().clamp(-127, 127).to(torch.int8).reshape(tensor.shape)
            packed[key + SCALE_SUFFIX] = scale
        elif tensor.is_floating_point() and not key.startswith(exact_prefixes):
            packed[key] = tensor.half()
        else:
            packed[key] = tensor
    return {k: v.contiguous() for k, v in packed.items()}


def unpack_state_dict(packed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors ``pack_state_dict`` stored: packed ones as fp16, the others as stored."""
    state = {}
    for key, tensor in packed.items():
        if key.endswith(SCALE_SUFFIX):
            continue
        if (scale := packed.get(key + SCALE_SUFFIX)) is not None:
            rows = tensor.reshape(tensor.shape[0], -1).float() * scale.float()[:, None]
            tensor = rows.half().reshape(tensor.shape)
        state[key] = tensor.contiguous()
    return state


def pack_file(source: str, target: str, drop_prefix: str | None = None, exact_prefixes: tuple[str, ...] = ()) -> None:
    """``source`` packed into ``target`` (without keys under ``drop_prefix``); its metadata is kept inside."""
    state, metadata = read_state_dict(source)
    state = {k: v for k, v in state.items() if not (drop_prefix and k.startswith(drop_prefix))}
    save_byte_stable(target, pack_state_dict(state, exact_prefixes),
                     {"format": PACKED_FORMAT, "original_metadata": json.dumps(metadata, sort_keys=True)})


def unpack_file(source: str, target: str, extra: dict[str, torch.Tensor] | None = None) -> None:
    """A packed file back as the safetensors file ComfyUI loads (fp16, the original metadata), plus ``extra``."""
    packed, metadata = read_state_dict(source)
    if metadata.get("format") != PACKED_FORMAT:
        raise ValueError(f"'{source}': expected a packed weight file (format {PACKED_FORMAT}), found format "
                         f"{metadata.get('format')!r}")
    save_byte_stable(target, {**unpack_state_dict(packed), **(extra or {})}, json.loads(metadata["original_metadata"]))
