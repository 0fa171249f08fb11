"""Temporal attention: our motion block with the attention backend ComfyUI picked, vs a naive softmax
reference on the same inputs (time and largest difference).

    python bench/attention.py [--frames 64] [--tokens 1024] [--channels 320] [--repeat 5]
"""
from __future__ import annotations

import argparse
import math
import time

import torch

from harness import report, start_host

from dmtest.reference import softmax_attention  # noqa: E402  (harness puts tests/ on the path)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=1024, help="spatial positions (h * w)")
    parser.add_argument("--channels", type=int, default=320)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    host = start_host()
    import comfy.ldm.modules.attention as comfy_attention
    import comfy.model_management

    module_cls = host.pack_module("dreamoving.motion_module")
    layout = host.pack_module("dreamoving.unet_layout").UNetLayout(args.channels, (1,), (1,))
    device = comfy.model_management.get_torch_device()
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    block = module_cls.MotionModel(layout.motion_spec()).down_blocks[0].motion_modules[0].to(device, dtype)
    side = int(math.sqrt(args.tokens))
    x = torch.randn(2 * args.frames, args.channels, side, side, device=device, dtype=dtype)
    rows, outputs = [], {}
    for name, attention in (("ComfyUI: " + comfy_attention.optimized_attention.__name__,
                             comfy_attention.optimized_attention), ("naive softmax", softmax_attention)):
        with torch.no_grad():
            block(x, args.frames, attention=attention)
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(args.repeat):
                outputs[name] = block(x, args.frames, attention=attention)
            if device.type == "cuda":
                torch.cuda.synchronize()
        rows.append([name, (time.perf_counter() - start) / args.repeat])
    first, second = outputs.values()
    for row in rows:
        row.append(rows[1][1] / row[1])
    report(f"temporal attention block, {args.frames} frames x 2 chunks, {side}x{side}, {args.channels} ch, {dtype}",
           ["attention", "s/call", "speed-up vs naive"], rows,
           {"max_abs_difference": float((first - second).abs().max())})


if __name__ == "__main__":
    main()
