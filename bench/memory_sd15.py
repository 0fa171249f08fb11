"""Peak memory of the motion U-Net at the real SD1.5 size (random weights of the real shapes), beside
ComfyUI's own estimate. On a GPU: 64 frames at 512x512 in fp16 (ComfyUI's default there). On CPU the same
path runs a reduced case (``--frames``/``--size``) and reports process RSS growth.

    python bench/memory_sd15.py [--frames 64] [--size 512]
"""
from __future__ import annotations

import argparse

import torch

from harness import report, run, start_host, step_seconds, text_conds
from long_video import PeakMemory


def main():
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=64 if cuda else 4)
    parser.add_argument("--size", type=int, default=512 if cuda else 128)
    parser.add_argument("--steps", type=int, default=2, help="steps; all but the first are timed")
    args = parser.parse_args()
    start_host()
    from dmtest import fixtures

    fixtures.ensure_full_sd15()
    import comfy.model_management
    import nodes

    model, clip = nodes.CheckpointLoaderSimple().load_checkpoint(fixtures.FULL_CKPT)[:2]
    motion = nodes.NODE_CLASS_MAPPINGS["DreaMovingMotionUNetLoader"].execute(
        model, fixtures.FULL_MM, 1.0, 1.0, "autoselect").result[0]
    conds = text_conds(clip)
    run(motion, conds, 1, 64, 1)  # loads the models
    estimate = motion.model.memory_required([2 * args.frames, 4, args.size // 8, args.size // 8])
    with PeakMemory() as peak:  # the weights are loaded (and the motion blocks injected) before this
        seconds = min(step_seconds(motion, conds, args.frames, args.size, args.steps))
    weights = comfy.model_management.module_size(motion.model.diffusion_model)
    report(f"motion U-Net at SD1.5 size, {args.frames} frames, {args.size}x{args.size}, {motion.model.get_dtype()}",
           ["frames", "size", "s/step", "peak MiB above loaded weights", "ComfyUI activation estimate MiB",
            "weights MiB (U-Net + motion blocks)"],
           [[args.frames, args.size, seconds, peak.bytes / 2 ** 20, estimate / 2 ** 20, weights / 2 ** 20]],
           {"what_peak_measures": "CUDA allocated" if cuda else "process RSS"})


if __name__ == "__main__":
    main()
