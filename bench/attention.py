"""Our short-key attentions on the real SD1.5 levels, with each of ComfyUI's attention kernels: the motion
blocks' attention across frames (one sequence per spatial position) and the Content Guider's attention to a few
image tokens. Prints each kernel's time, the kernel ``nodes.attention_choice`` runs, its speed-up over ComfyUI's
own pick and the largest difference between the two.

``--threads 1`` on CPU times the calling thread's CPU time (torch then computes in that thread), which other
load on the machine does not inflate; otherwise wall-clock time.

    python bench/attention.py [--frames 16 64] [--size 128] [--tokens 4 16] [--repeat 5] [--threads 1]
"""
from __future__ import annotations

import argparse
import time
from statistics import median

import torch

from harness import report, start_host

LEVELS = ((320, 8), (640, 16), (1280, 32), (1280, 64))  # SD1.5's channels and downscale from the pixels


def time_ms(attention, q, k, v, repeat: int) -> tuple[float, torch.Tensor]:
    clock = time.thread_time if q.device.type == "cpu" and torch.get_num_threads() == 1 else time.perf_counter
    out = attention(q, k, v, 8)
    times = []
    for _ in range(repeat):
        if q.is_cuda:
            torch.cuda.synchronize()
        start = clock()
        attention(q, k, v, 8)
        if q.is_cuda:
            torch.cuda.synchronize()
        times.append(clock() - start)
    return median(times) * 1e3, out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--size", type=int, default=128, help="pixels (latent = size / 8)")
    parser.add_argument("--tokens", type=int, nargs="+", default=[4, 16], help="guider image tokens")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    host = start_host()
    import comfy.ldm.modules.attention as comfy_attention
    import comfy.model_management

    choose = host.pack_module("nodes.attention_choice").short_key_attention
    device = comfy.model_management.get_torch_device()
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    kernels = {name: getattr(comfy_attention, f"attention_{name}") for name in ("sub_quad", "split", "basic", "pytorch")}
    picked, ours = comfy_attention.optimized_attention, choose(device)
    rows = []
    gen = torch.Generator().manual_seed(0)

    def measure(kind, length, channels, side, q, k, v):
        q, k, v = (t.to(device, dtype) for t in (q, k, v))
        timed = {kernel: time_ms(kernel, q, k, v, args.repeat) for kernel in kernels.values()}
        for kernel in (ours, picked):  # GPU picks (xformers, flash, sage) are not among the four
            if kernel not in timed:
                timed[kernel] = time_ms(kernel, q, k, v, args.repeat)
        (ours_ms, ours_out), (picked_ms, picked_out) = timed[ours], timed[picked]
        rows.append([kind, length, channels, f"{side}x{side}", *(timed[kernel][0] for kernel in kernels.values()),
                     ours.__name__, picked_ms / ours_ms, float((ours_out - picked_out).abs().max())])

    for frames in args.frames:
        for channels, down in LEVELS:
            side = args.size // down
            q, k, v = (torch.randn(2 * side * side, frames, channels, generator=gen) for _ in range(3))
            measure("motion (frames)", frames, channels, side, q, k, v)
        for tokens in args.tokens:
            for channels, down in LEVELS[:3]:
                side = args.size // down
                q = torch.randn(2, frames * side * side, channels, generator=gen)
                k, v = (torch.randn(2, tokens, channels, generator=gen) for _ in range(2))
                measure(f"guider ({frames} frames, tokens)", tokens, channels, side, q, k, v)
    report(f"short-key attentions, {args.size}x{args.size}, cfg (2 chunks), {dtype}; ComfyUI picked {picked.__name__}",
           ["attention", "keys", "channels", "latent", *(f"{n} ms" for n in kernels), "ours", "speed-up vs pick",
            "max |ours - pick|"], rows,
           {"repeat": args.repeat, "clock": "thread CPU time" if device.type == "cpu" and torch.get_num_threads() == 1
            else "wall"})


if __name__ == "__main__":
    main()
