"""Long videos with context windows: the motion U-Net driven by the Video ControlNet (one control frame per
video frame), time per frame and peak memory for 64, 128, 256 frames (each length in a fresh process, so peaks
do not mix), beside ComfyUI's memory estimate for one window. Overlapping windows evaluate some frames twice;
"ms/window frame" (time per frame the windows evaluate) must stay flat. A step's time is the fastest timed step
(all but the first of ``--steps``).

    python bench/long_video.py [--lengths 64 128 256] [--context 64] [--size 128] [--steps 3]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time

import psutil
import torch


class PeakMemory:
    """Peak of CUDA allocated memory, or of the process RSS sampled every 5 ms on CPU (bytes above start)."""

    def __enter__(self):
        self.cuda = torch.cuda.is_available()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            self.process, self.start, self.peak, self.running = psutil.Process(), psutil.Process().memory_info().rss, 0, True
            self.thread = threading.Thread(target=self._watch, daemon=True)
            self.thread.start()
        return self

    def _watch(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc):
        if self.cuda:
            self.bytes = torch.cuda.max_memory_allocated() - self.start
        else:
            self.running = False
            self.thread.join()
            self.bytes = max(self.peak, self.process.memory_info().rss) - self.start


def one(length: int, context: int, size: int, steps: int) -> dict:
    from harness import Models, run, start_host, step_seconds

    models = Models(start_host())
    windowed, options = models.windowed(models.motion, context)
    warm_up = min(length, context)
    run(windowed, models.controlled(models.video_controlnet, warm_up, size), warm_up, size, 1)  # loads the models
    conds = models.controlled(models.video_controlnet, length, size)  # the control video is input, made before
    with PeakMemory() as peak:
        seconds = min(step_seconds(windowed, conds, length, size, steps))
    estimate = models.motion.model.memory_required([2 * min(length, context), 4, size // 8, size // 8])
    windows = models.host.pack_module("dreamoving.context_windows").context_windows(length, options)
    evaluated = sum(len(w) for w in windows)
    return {"frames": length, "s_per_step": seconds, "ms_per_frame_step": 1000 * seconds / length,
            "evaluated_per_frame": evaluated / length, "ms_per_evaluated_frame": 1000 * seconds / evaluated,
            "peak_MiB": peak.bytes / 2 ** 20, "comfy_estimate_MiB": estimate / 2 ** 20}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(one(args.one, args.context, args.size, args.steps)))
        return
    from harness import report

    rows = []
    for length in args.lengths:
        run = subprocess.run([sys.executable, __file__, "--one", str(length), "--context", str(args.context),
                              "--size", str(args.size), "--steps", str(args.steps)], capture_output=True, text=True)
        line = next((l for l in run.stdout.splitlines() if l.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"length {length} failed:\n{run.stderr[-3000:]}")
        r = json.loads(line[len("RESULT "):])
        rows.append([r["frames"], r["s_per_step"], r["ms_per_frame_step"], r["evaluated_per_frame"],
                     r["ms_per_evaluated_frame"], r["peak_MiB"], r["comfy_estimate_MiB"]])
    report(f"long videos, motion U-Net + Video ControlNet, context {args.context} (overlap {args.context // 4}), {args.size}x{args.size}",
           ["frames", "s/step", "ms/frame/step", "window frames/frame", "ms/window frame/step", "peak MiB",
            "ComfyUI estimate MiB (1 window)"], rows)


if __name__ == "__main__":
    main()
