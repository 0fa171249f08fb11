"""Sampling cost per step and per frame: plain U-Net vs motion U-Net vs motion + Video ControlNet + Content
Guider, each as a ratio to the plain U-Net measured in the same run, beside the ratio their FLOP counts
predict. Also the Video ControlNet against a native ControlNet (same file) + the plain motion U-Net.

A step's time is the fastest of ``--repeats`` x (``--steps`` - 1) timed steps (the first step of a run is
set-up and not timed), with the variants interleaved so that load changes on the machine hit them alike;
"spread" is the slowest timed step over the fastest, a measure of the run's noise.

    python bench/cost_per_frame.py [--frames 16 32 64] [--size 128] [--steps 3] [--repeats 2]
"""
from __future__ import annotations

import argparse

from harness import Models, flops_per_step, report, run, start_host, step_seconds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--size", type=int, default=128, help="pixels (latent = size / 8)")
    parser.add_argument("--steps", type=int, default=3, help="steps per run; all but the first are timed")
    parser.add_argument("--repeats", type=int, default=2, help="runs per variant, interleaved")
    args = parser.parse_args()
    models = Models(start_host())
    rows = []
    for frames in args.frames:
        full = models.controlled(models.video_controlnet, frames, args.size)
        native = models.controlled(models.native_controlnet, frames, args.size)
        variants = {"plain": (models.plain, models.text), "motion": (models.motion, models.text),
                    "motion+VideoCN+guider": (models.guided_motion, full),
                    "motion+nativeCN": (models.motion, native), "motion+VideoCN": (models.motion, full)}
        run(models.plain, models.text, frames, args.size, 1)  # warm-up: loads the models
        timed = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, (m, c) in variants.items():
                timed[name] += step_seconds(m, c, frames, args.size, args.steps)
        measured = {name: min(times) for name, times in timed.items()}
        flops = {name: flops_per_step(m, c, frames, args.size) for name, (m, c) in variants.items()}
        for name in variants:
            ratio, predicted = measured[name] / measured["plain"], flops[name] / flops["plain"]
            rows.append([frames, name, measured[name], measured[name] / frames, ratio, predicted,
                         ratio / predicted - 1.0, max(timed[name]) / measured[name] - 1.0])
        video_vs_native = (measured["motion+VideoCN"] / measured["motion+nativeCN"],
                           flops["motion+VideoCN"] / flops["motion+nativeCN"])
        rows.append([frames, "VideoCN / (nativeCN + motion)", "", "", video_vs_native[0], video_vs_native[1],
                     video_vs_native[0] / video_vs_native[1] - 1.0, ""])
    report(f"cost per step, {args.size}x{args.size}, cfg (cond+uncond)",
           ["frames", "model", "s/step", "s/frame/step", "ratio", "FLOP ratio", "ratio/FLOP-1", "spread"], rows,
           {"steps": args.steps, "repeats": args.repeats})


if __name__ == "__main__":
    main()
