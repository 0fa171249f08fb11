"""Sliding context windows over frames: which frames each window holds, and how overlaps are fused.

Host-independent: the ComfyUI adapter slices the latent, timesteps, per-frame conditioning and
ControlNet hints to each window's indices and fuses the window outputs with ``fuse_weights``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

SCHEDULES = ("static", "uniform", "batched")
FUSE_METHODS = ("pyramid", "flat", "overlap-linear")


@dataclass(frozen=True)
class ContextOptions:
    """``length`` frames per window, ``overlap`` shared between neighbours."""

    length: int = 64
    overlap: int = 16
    schedule: str = "static"
    fuse_method: str = "pyramid"

    def __post_init__(self):
        if self.length < 1:
            raise ValueError(f"context_length must be at least 1, got {self.length}")
        if not 0 <= self.overlap < self.length:
            raise ValueError(f"context_overlap must be at least 0 and less than context_length ({self.length}), "
                             f"got {self.overlap}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"context_schedule must be one of {SCHEDULES}, got '{self.schedule}'")
        if self.fuse_method not in FUSE_METHODS:
            raise ValueError(f"fuse_method must be one of {FUSE_METHODS}, got '{self.fuse_method}'")


def _bit_reversed_fraction(step: int) -> float:
    """0, 1/2, 1/4, 3/4, 1/8, ...: spreads the per-step shift of "uniform" windows evenly."""
    value, fraction, bit = step, 0.0, 0.5
    while value:
        fraction += bit * (value & 1)
        value >>= 1
        bit /= 2
    return fraction


def context_windows(frames: int, options: ContextOptions, step: int = 0) -> list[list[int]]:
    """Frame indices of each window; every frame is covered, windows keep ``options.length`` frames."""
    length = options.length
    if frames <= length:
        return [list(range(frames))]
    if options.schedule == "batched":
        return [list(range(s, min(s + length, frames))) for s in range(0, frames, length)]
    delta = length - options.overlap
    last = frames - length
    starts = set(range(0, last, delta)) | {last}
    if options.schedule == "uniform":  # seams move from step to step: the grid is shifted, ends stay covered
        shift = round(_bit_reversed_fraction(step) * delta)
        starts = {0, last} | set(range(shift, last, delta))
    return [list(range(s, s + length)) for s in sorted(starts)]


def fuse_weights(window: list[int], frames: int, options: ContextOptions) -> torch.Tensor:
    """Per-frame weights of one window's output in the weighted average over windows."""
    n = len(window)
    if options.fuse_method == "flat":
        return torch.ones(n)
    if options.fuse_method == "pyramid":  # highest in the middle of the window (FreeNoise-style)
        pos = torch.arange(n, dtype=torch.float32)
        return torch.minimum(pos + 1, n - pos)
    weights = torch.ones(n)  # overlap-linear: ramps only across the overlap, not at the video's ends
    ramp = max(options.overlap, 1)
    if window[0] > 0:
        weights[:ramp] = torch.linspace(1.0 / (ramp + 1), 1.0, ramp)
    if window[-1] < frames - 1:
        weights[-ramp:] = torch.minimum(weights[-ramp:], torch.linspace(1.0, 1.0 / (ramp + 1), ramp))
    return weights
