"""Reading and writing weight files safely: safetensors, or weights-only torch pickles; never full unpickling."""
from __future__ import annotations

import json
import os

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


class WeightFileError(ValueError):
    """A weight file is missing, unreadable or of the wrong kind; the message names the file."""


def read_state_dict(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and string metadata of ``path``; a ``state_dict`` wrapper (training checkpoints) is unwrapped."""
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise WeightFileError(f"weight file '{path}' does not exist")
    if path.lower().endswith(SAFETENSORS_SUFFIXES):
        try:
            with safe_open(path, framework="pt", device="cpu") as f:
                return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
        except (SafetensorError, OSError, ValueError) as err:
            raise WeightFileError(f"'{name}' is not a readable safetensors file: {err}") from err
    if not path.lower().endswith(PICKLE_SUFFIXES):
        raise WeightFileError(f"'{name}': expected a {'/'.join(SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES)} file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        raise WeightFileError(f"'{name}' cannot be read as a weights-only checkpoint "
                              f"(corrupt, or it holds more than tensors): {err}") from err
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise WeightFileError(f"'{name}' holds a {type(data).__name__}, not a dictionary of tensors")
    return _flatten(data), {}


def _flatten(data: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    """Tensors of nested dictionaries (IP-Adapter .bin: {"image_proj": {...}, "ip_adapter": {...}}) as dotted keys."""
    out = {}
    for key, value in data.items():
        if isinstance(value, torch.Tensor):
            out[prefix + key] = value
        elif isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
    return out


def encode_metadata(fields: dict) -> dict[str, str]:
    """safetensors metadata is string -> string: strings stay, everything else is JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}


def decode_metadata_value(value: str):
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def save_byte_stable(path: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """``save_file``, then the header rewritten with sorted keys: safetensors writes its metadata map in an order
    that varies from run to run, so the same tensors and metadata would not always give the same bytes (and
    digest). The rewritten header is still a valid safetensors header (data offsets are relative to its end)."""
    save_file(tensors, path, metadata=metadata)
    with open(path, "rb") as f:
        length = int.from_bytes(f.read(8), "little")
        header, data = json.loads(f.read(length)), f.read()
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + data)


def write_state_dict(path: str, tensors: dict[str, torch.Tensor], metadata: dict) -> None:
    """Write contiguous CPU copies of ``tensors`` with ``metadata`` (see ``encode_metadata``)."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    save_file(tensors, path, metadata=encode_metadata(metadata))
