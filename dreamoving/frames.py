"""Matching per-frame inputs (control frames, masks) to a video's frame count."""
from __future__ import annotations

import torch

FRAME_MODES = ("error", "repeat last", "loop")


def fit_frames(frames_in: torch.Tensor, frames: int, mode: str, what: str) -> torch.Tensor:
    """``frames_in`` with one entry per video frame. One entry is kept as is (it applies to every frame).

    ``mode``: "error" refuses a mismatch; "repeat last" pads with the last entry, "loop" cycles; both
    trim a longer sequence.
    """
    have = frames_in.shape[0]
    if have in (1, frames):
        return frames_in
    if mode == "error":
        raise ValueError(f"{what}: got {have} frames for a {frames}-frame video; give one per video frame, "
                         f"or set frame_mode to 'repeat last' or 'loop'")
    if mode not in FRAME_MODES:
        raise ValueError(f"frame_mode must be one of {FRAME_MODES}, got '{mode}'")
    if have > frames:
        return frames_in[:frames]
    if mode == "loop":
        return frames_in[torch.arange(frames) % have]
    return torch.cat([frames_in, frames_in[-1:].expand(frames - have, *frames_in.shape[1:])])
