"""Sampling cost per step and per frame: plain U-Net vs motion U-Net vs motion + Video ControlNet + Content
Guider, each as a ratio to the plain U-Net measured in the same run, beside the ratio their FLOP counts
predict. Also the Video ControlNet against a native ControlNet (same file) + the plain motion U-Net.

The variants run one after another in ``--repeats`` rounds. In a round, a variant's step time is the median of
its timed steps (the first step of a run is set-up and not timed) and its ratio is taken against the plain
U-Net of the same round, so load changes on the machine between rounds cancel out. The reported ratio is the
median over rounds; "rounds" gives the lowest and highest round's ratio, a measure of the run's noise.

    python bench/cost_per_frame.py [--frames 16 32 64] [--size 128] [--steps 4] [--repeats 3] [--models full]

``--models full`` runs random weights of the real sizes (SD1.5, mm_sd_v15_v2, an SD1.5 ControlNet with motion
blocks, a Content Guider on all 16 cross-attention layers) instead of the small test models. ``--ade PATH`` (a
checkout of AnimateDiff-Evolved) adds the same motion module through its loader, and our motion U-Net's step
over its.
"""
from __future__ import annotations

import argparse
from statistics import median

from harness import Models, flops_per_step, report, run, start_host, step_seconds


def round_ratios(rounds: list[dict], name: str, base: str) -> list[float]:
    """``name``'s step time over ``base``'s, one ratio per round."""
    return [r[name] / r[base] for r in rounds]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--size", type=int, default=128, help="pixels (latent = size / 8)")
    parser.add_argument("--steps", type=int, default=4, help="steps per run; all but the first are timed")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of all variants")
    parser.add_argument("--models", choices=("small", "full"), default="small")
    parser.add_argument("--ade", help="a checkout of ComfyUI-AnimateDiff-Evolved to run beside ours")
    args = parser.parse_args()
    models = Models(start_host(), full=args.models == "full", ade=args.ade)
    rows = []
    for frames in args.frames:
        full = models.controlled(models.video_controlnet, frames, args.size)
        native = models.controlled(models.native_controlnet, frames, args.size)
        variants = {"plain": (models.plain, models.text), "motion": (models.motion, models.text),
                    "motion+VideoCN+guider": (models.guided_motion, full),
                    "motion+nativeCN": (models.motion, native), "motion+VideoCN": (models.motion, full)}
        if models.ade_motion is not None:
            variants["ADE motion"] = (models.ade_motion, models.text)
        run(models.plain, models.text, frames, args.size, 1)  # warm-up: loads the models
        rounds = [{name: median(step_seconds(m, c, frames, args.size, args.steps)) for name, (m, c) in variants.items()}
                  for _ in range(args.repeats)]
        flops = {name: flops_per_step(m, c, frames, args.size) for name, (m, c) in variants.items()}
        for name in variants:
            seconds = median(r[name] for r in rounds)
            compared = _against_flops(round_ratios(rounds, name, "plain"), flops[name] / flops["plain"])
            rows.append([frames, name, seconds, seconds / frames, *compared[:3], compared[3] if name != "plain" else ""])
        rows.append([frames, "VideoCN / (nativeCN + motion)", "", "",
                     *_against_flops(round_ratios(rounds, "motion+VideoCN", "motion+nativeCN"),
                                     flops["motion+VideoCN"] / flops["motion+nativeCN"])])
        if "ADE motion" in variants:
            rows.append([frames, "motion / ADE motion", "", "",
                         *_against_flops(round_ratios(rounds, "motion", "ADE motion"),
                                         flops["motion"] / flops["ADE motion"])])
    report(f"cost per step, {args.models} models, {args.size}x{args.size}, cfg (cond+uncond)",
           ["frames", "model", "s/step", "s/frame/step", "ratio", "FLOP ratio", "ratio/FLOP-1", "rounds"], rows,
           {"steps": args.steps, "repeats": args.repeats, "models": args.models})


def _against_flops(ratios: list[float], predicted: float) -> list:
    """Columns ratio, FLOP ratio, ratio/FLOP-1 (median round) and rounds (lowest..highest round, e.g. -3%..+5%)."""
    ratio = median(ratios)
    return [ratio, predicted, ratio / predicted - 1.0,
            f"{min(ratios) / predicted - 1.0:+.1%}..{max(ratios) / predicted - 1.0:+.1%}"]


if __name__ == "__main__":
    main()
