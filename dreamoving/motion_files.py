"""Motion module files: AnimateDiff v1 / v2 / DreaMoving layouts, detection, loading and export.

Keys follow AnimateDiff: ``down_blocks.N.motion_modules.M.temporal_transformer...``, ``up_blocks...``,
``mid_block.motion_modules.0...``. Files saved by AnimateDiff's current train.py lack ``pos_encoder.pe``
(a non-persistent buffer there): those are sinusoidal, like every AnimateDiff family member.
"""
from __future__ import annotations

import os
import re
from collections import defaultdict

import torch
from torch import nn

from .motion_module import MotionModel, MotionModuleSpec, sinusoid_table
from .weights import WeightFileError, decode_metadata_value, read_state_dict, write_state_dict

FORMAT = "dreamoving.motion_module"
FORMAT_VERSION = 1
DEFAULT_PE_LEN = 64
# AnimateDiff's modules were trained with linear betas (diffusers' "linear"), DESIGN §1.
ANIMATEDIFF_BETA_SCHEDULE = "linear"

_BLOCK_KEY = re.compile(r"(down_blocks|up_blocks)\.(\d+)\.motion_modules\.(\d+)\.|mid_block\.motion_modules\.(\d+)\.")


def motion_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The motion-module tensors of ``state`` with any prefix (``module.``, ``motion.``...) removed."""
    out = {}
    for key, value in state.items():
        match = _BLOCK_KEY.search(key)
        if match:
            out[key[match.start():]] = value
    return out


def spec_from_state_dict(state: dict[str, torch.Tensor], metadata: dict | None = None,
                         name: str = "motion module") -> MotionModuleSpec:
    """Infer the layout (channels, counts, block config, PE length) of AnimateDiff-layout tensors."""
    metadata = {k: decode_metadata_value(v) for k, v in (metadata or {}).items()}
    counts: dict[str, dict[int, int]] = {"down_blocks": defaultdict(int), "up_blocks": defaultdict(int)}
    channels: dict[tuple[str, int], int] = {}
    for key, value in state.items():
        match = _BLOCK_KEY.match(key)
        if not match:
            continue
        kind = match.group(1) or "mid_block"
        block = int(match.group(2) or 0)
        index = int(match.group(3) or match.group(4))
        if kind != "mid_block":
            counts[kind][block] = max(counts[kind][block], index + 1)
        if key.endswith("temporal_transformer.norm.weight"):
            channels[(kind, block)] = value.shape[0]
    if not counts["down_blocks"] and not counts["up_blocks"]:
        sample = ", ".join(sorted(state)[:3]) or "no tensors"
        raise WeightFileError(f"'{name}' is not a motion module: expected AnimateDiff keys like "
                              f"'down_blocks.0.motion_modules.0.temporal_transformer...', found {sample}")

    def per_block(kind):
        blocks = sorted(counts[kind])
        if blocks != list(range(len(blocks))):
            raise WeightFileError(f"'{name}': {kind} {blocks} are not numbered 0..{len(blocks) - 1}")
        return [channels[(kind, b)] for b in blocks], [counts[kind][b] for b in blocks]

    down_channels, down_counts = per_block("down_blocks")
    up_channels, up_counts = per_block("up_blocks")
    first = "down_blocks.0.motion_modules.0.temporal_transformer."
    layers = 1 + max(int(k[len(first):].split(".")[1]) for k in state if k.startswith(first + "transformer_blocks."))
    block0 = first + "transformer_blocks.0."
    attention_blocks = 1 + max(int(k[len(block0):].split(".")[1]) for k in state if k.startswith(block0 + "attention_blocks."))
    ff_mult = state[block0 + "ff.net.0.proj.weight"].shape[0] // 2 // down_channels[0]
    pe = state.get(block0 + "attention_blocks.0.pos_encoder.pe")
    return MotionModuleSpec(
        down_channels=down_channels, down_counts=down_counts, up_channels=up_channels, up_counts=up_counts,
        mid_channels=channels.get(("mid_block", 0)), heads=int(metadata.get("heads", 8)), layers=layers,
        attention_blocks=attention_blocks, ff_mult=ff_mult, pe_len=None if pe is None else pe.shape[1],
        extra={"beta_schedule": metadata.get("beta_schedule", ANIMATEDIFF_BETA_SCHEDULE),
               "family": describe_family(metadata, pe, ("mid_block", 0) in channels)})


def describe_family(metadata: dict, pe: torch.Tensor | None, has_mid: bool) -> str:
    if metadata.get("format") == FORMAT:
        return "DreaMoving"
    if pe is None:
        return "AnimateDiff (no stored PE)"
    return f"AnimateDiff {'v2' if has_mid else 'v1'} (PE {pe.shape[1]})"


def load_motion_model(path: str, pe_len: int = DEFAULT_PE_LEN, operations=nn) -> MotionModel:
    """Load a motion module file; its positional encoding is extended (sinusoidally) to ``pe_len`` rows."""
    raw, metadata = read_state_dict(path)
    return motion_model_from_state_dict(motion_state_dict(raw), metadata, os.path.basename(path), pe_len, operations)


def motion_model_from_state_dict(state: dict[str, torch.Tensor], metadata: dict, name: str,
                                 pe_len: int = DEFAULT_PE_LEN, operations=nn) -> MotionModel:
    """Build a MotionModel from AnimateDiff-layout tensors (no prefix); ``state`` is consumed."""
    spec = spec_from_state_dict(state, metadata, name)
    stored_pe = spec.pe_len
    spec.pe_len = max(pe_len, stored_pe or 0)
    with torch.device("meta"):
        model = MotionModel(spec, operations)
    for key, buffer in model.state_dict().items():
        if key.endswith("pos_encoder.pe"):
            table = sinusoid_table(spec.pe_len, buffer.shape[2])
            if key in state:
                table[:, :stored_pe] = state[key].float()
            state[key] = table
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise WeightFileError(f"'{name}' does not match the AnimateDiff motion-module layout: "
                              f"missing {missing[:4]}, unexpected {unexpected[:4]}")
    return model


def motion_metadata(spec: MotionModuleSpec, **extra) -> dict:
    return {"format": FORMAT, "version": FORMAT_VERSION, "heads": spec.heads, "pe_len": spec.pe_len,
            "beta_schedule": spec.extra.get("beta_schedule", ANIMATEDIFF_BETA_SCHEDULE), **extra}


def save_motion_model(model: MotionModel, path: str, **extra_metadata) -> None:
    """Export in AnimateDiff's layout (readable by AnimateDiff-Evolved), PE length and schedule in metadata."""
    write_state_dict(path, model.state_dict(), motion_metadata(model.spec, **extra_metadata))
