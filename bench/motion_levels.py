"""Where a motion step's time goes: per U-Net level, the time and FLOPs of the U-Net's own blocks and of the
motion blocks after them, measured inside a real ComfyUI sampling step (forward hooks on the blocks), on the
real-size random models (SD1.5, mm_sd_v15_v2) or the small test models.

"GFLOP/s" is FLOPs over time: a motion block far below the U-Net's rate at the same level is spending its time
on something other than arithmetic (layout copies, normalisation, many short attention sequences).

    python bench/motion_levels.py [--frames 16] [--size 128] [--models full] [--steps 2]
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch

from harness import Models, report, run, start_host


class BlockClock:
    """Forward hooks that add up, per (kind, level, part), the seconds and FLOPs of the layers of the U-Net's
    blocks (ComfyUI calls a block's layers one by one) and of the motion blocks among them."""

    def __init__(self, unet, motion_class):
        self.seconds, self.flops = defaultdict(float), defaultdict(float)
        self.counter = None
        self._handles = []
        blocks = [("down", b) for b in unet.input_blocks] + [("mid", unet.middle_block)] + \
                 [("up", b) for b in unet.output_blocks]
        for kind, block in blocks:
            for layer in block:
                self._watch(layer, kind, "motion" if isinstance(layer, motion_class) else "U-Net")

    def _watch(self, module, kind: str, part: str):
        started = []

        def pre(*_):
            started.append((time.perf_counter(), self._flops_now()))

        def post(_, args, output):
            start, flops = started.pop()
            key = (kind, tuple(output.shape[-2:]), output.shape[1], part)
            self.seconds[key] += time.perf_counter() - start
            self.flops[key] += self._flops_now() - flops

        self._handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]

    def _flops_now(self) -> float:
        return float(self.counter.get_total_flops()) if self.counter is not None else 0.0

    def close(self):
        for handle in self._handles:
            handle.remove()


def measure(models: Models, frames: int, size: int, steps: int):
    """Seconds per step (mean of ``steps`` steps after the first) and FLOPs per step of every (kind, level)."""
    from torch.utils.flop_counter import FlopCounterMode

    motion_class = models.host.pack_module("dreamoving.motion_module").VanillaTemporalModule
    run(models.motion, models.text, frames, size, 1)  # loads the models
    clock = BlockClock(models.motion.model.diffusion_model, motion_class)
    done = []

    def after_step(*_):  # the first step also prepares the sampling: not timed
        if not done:
            clock.seconds.clear()
        done.append(1)

    try:
        run(models.motion, models.text, frames, size, steps + 1, callback=after_step)
        seconds = {k: v / steps for k, v in clock.seconds.items()}
        with FlopCounterMode(display=False) as counter:
            clock.counter = counter
            run(models.motion, models.text, frames, size, 1)
        flops = dict(clock.flops)
    finally:
        clock.close()
    return seconds, flops


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2, help="sampling steps timed")
    parser.add_argument("--models", choices=("small", "full"), default="full")
    args = parser.parse_args()
    models = Models(start_host(), full=args.models == "full")
    seconds, flops = measure(models, args.frames, args.size, args.steps)
    rows, total_seconds, total_flops = [], defaultdict(float), defaultdict(float)
    order = ("down", "mid", "up")  # the order a step runs them: the encoder down the levels, the decoder up
    levels = sorted({k[:3] for k in seconds}, key=lambda k: (order.index(k[0]), k[1][0] * (1 if k[0] == "up" else -1), k[2]))
    for level in levels:
        for part in ("U-Net", "motion"):
            total_seconds[part] += seconds.get(level + (part,), 0.0)
            total_flops[part] += flops.get(level + (part,), 0.0)
        (s_u, s_m), (f_u, f_m) = ([figures.get(level + (part,), 0.0) for part in ("U-Net", "motion")]
                                  for figures in (seconds, flops))
        rows.append([level[0], f"{level[1][0]}x{level[1][1]}", level[2], s_u, s_m, s_m / s_u if s_u else "",
                     f_m / f_u if f_u else "", f_u / s_u / 1e9 if s_u else "", f_m / s_m / 1e9 if s_m else ""])
    rows.append(["all", "", "", total_seconds["U-Net"], total_seconds["motion"],
                 total_seconds["motion"] / total_seconds["U-Net"], total_flops["motion"] / total_flops["U-Net"], "", ""])
    report(f"motion step by level, {args.models} models, {args.frames} frames, {args.size}x{args.size}, cfg",
           ["blocks", "latent", "channels", "U-Net s/step", "motion s/step", "time ratio", "FLOP ratio",
            "U-Net GFLOP/s", "motion GFLOP/s"], rows,
           {"steps": args.steps, "models": args.models, "threads": torch.get_num_threads()})


if __name__ == "__main__":
    main()
