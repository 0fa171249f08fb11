"""Shared set-up for the benchmarks: a ComfyUI host in-process with this pack and the generated test models.

The models are the test fixtures (SD1.5-detected U-Net at model_channels 320, AnimateDiff-layout motion
module, SD1.5 ControlNet, Video ControlNet, Content Guider); absolute times are for them, ratios carry over.
"""
from __future__ import annotations

import asyncio
import datetime
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from dmtest import comfy_host, fixtures  # noqa: E402
from dmtest.inprocess import InProcessHost  # noqa: E402
from dreamoving.comfy_launch import write_base  # noqa: E402


def start_host() -> InProcessHost:
    root, how = comfy_host.locate_comfyui()
    if root is None:
        raise SystemExit(f"no ComfyUI host: {how}")
    base = Path(tempfile.mkdtemp(prefix="dm_bench_"))
    host = InProcessHost(root, base, write_base(base, fixtures.model_folders()))
    fixtures.ensure_all()
    assert host.load_pack(), "the pack failed to load"
    return host


def text_conds(clip) -> tuple:
    import nodes

    return nodes.CLIPTextEncode().encode(clip, "a dancer")[0], nodes.CLIPTextEncode().encode(clip, "")[0]


class Models:
    """The model variants a benchmark compares, built once through the nodes' own code: on the small test
    models, or (``full``) on random weights of the real SD1.5, mm_sd_v15_v2, ControlNet and guider sizes."""

    def __init__(self, host: InProcessHost, full: bool = False, ade: str | None = None):
        import comfy.controlnet
        import nodes

        if full:
            fixtures.ensure_full_sd15()
        names = (fixtures.FULL_CKPT, fixtures.FULL_MM, fixtures.FULL_CN, fixtures.FULL_VIDEO_CN, fixtures.FULL_GUIDER) \
            if full else (fixtures.SMALL_CKPT, fixtures.SMALL_MM, fixtures.SMALL_CN, fixtures.VIDEO_CN, fixtures.GUIDER)
        checkpoint, motion, controlnet, video_controlnet, guider = names
        folders = fixtures.model_folders()
        self.nodes, self.host = nodes, host
        model, clip, _ = nodes.CheckpointLoaderSimple().load_checkpoint(checkpoint)[:3]
        self.plain, self.clip = model, clip
        self.text = text_conds(clip)
        loader = nodes.NODE_CLASS_MAPPINGS["DreaMovingMotionUNetLoader"]
        self.motion = loader.execute(model, motion, 1.0, 1.0, "use existing").result[0]
        self.video_controlnet = host.pack_module("nodes.video_controlnet").load_video_controlnet(
            str(folders["controlnet"] / video_controlnet))
        self.native_controlnet = comfy.controlnet.load_controlnet(str(folders["controlnet"] / controlnet))
        guider = host.pack_module("dreamoving.guider_files").load_content_guider(str(folders["dreamoving"] / guider))
        gen = torch.Generator().manual_seed(0)
        tokens = {s: (torch.randn(1, n, 768, generator=gen), torch.zeros(1, n, 768)) for s, n in (("face", 4), ("cloth", 16))}
        self.guided_motion = host.pack_module("nodes.guider_patch").attach_guider(
            self.motion, guider, tokens, {"face": 1.0, "cloth": 1.0}, 0.0, 1.0)
        self.ade_motion = self._ade_motion(ade, model, motion) if ade else None

    def _ade_motion(self, checkout: str, model, motion_file: str):
        """The same motion module through AnimateDiff-Evolved (a checkout of it, loaded as ComfyUI loads a custom
        node pack) for a side-by-side run."""
        if not asyncio.run(self.nodes.load_custom_node(str(Path(checkout).resolve()))):
            raise SystemExit(f"AnimateDiff-Evolved at {checkout} failed to load")
        loader = self.nodes.NODE_CLASS_MAPPINGS["ADE_AnimateDiffLoaderGen1"]()
        return loader.load_mm_and_inject_params(model, motion_file, "autoselect")[0]

    def windowed(self, model, context_length: int):
        """``model`` sampling in context windows of ``context_length`` frames (overlap a quarter); and the options."""
        options = self.host.pack_module("dreamoving.context_windows").ContextOptions(context_length, context_length // 4)
        return self.host.pack_module("nodes.context_patch").attach_context_windows(model, options), options

    def controlled(self, control, frames: int, size: int):
        """positive/negative with ``control`` applied to ``frames`` hint frames."""
        hint = torch.rand(frames, size, size, 3, generator=torch.Generator().manual_seed(1))
        return self.nodes.ControlNetApplyAdvanced().apply_controlnet(*self.text, control, hint, 1.0, 0.0, 1.0)[:2]


def run(model, conds, frames: int, size: int, steps: int, callback=None) -> None:
    """One sampling run (cond + uncond: ``conds``) of ``model`` on a ``frames``-frame latent; loads the models."""
    import comfy.sample

    positive, negative = conds
    latent = torch.zeros(frames, 4, size // 8, size // 8)
    comfy.sample.sample(model, comfy.sample.prepare_noise(latent, 0), steps, 7.0, "euler", "normal", positive,
                        negative, latent, callback=callback, disable_pbar=True, seed=0)


def step_seconds(model, conds, frames: int, size: int, steps: int) -> list[float]:
    """Seconds of each sampling step after the first (the first also loads models, prepares hints and
    estimates memory)."""
    if steps < 2:
        raise ValueError(f"steps: at least 2 (the first is set-up), got {steps}")
    stamps = []

    def stamp(*_):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    run(model, conds, frames, size, steps, stamp)
    return [b - a for a, b in zip(stamps, stamps[1:])]


def flops_per_step(model, conds, frames: int, size: int) -> float:
    """FLOPs of one sampling step after the first (two steps minus one), by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    counts = []
    for steps in (1, 2):
        with FlopCounterMode(display=False) as counter:
            run(model, conds, frames, size, steps)
        counts.append(counter.get_total_flops())
    return float(counts[1] - counts[0])


def machine() -> dict:
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return {"device": device, "date": datetime.date.today().isoformat(), "commit": commit.stdout.strip(),
            "torch": torch.__version__}


def report(title: str, columns: list[str], rows: list[list], extra: dict | None = None) -> None:
    """Print one table and a JSON line (prefixed ``JSON:``) with the same figures."""
    widths = [max(len(str(c)), *(len(_fmt(r[i])) for r in rows)) for i, c in enumerate(columns)]
    print(f"\n{title}  [{machine()['device']}]")
    print("  ".join(str(c).ljust(w) for c, w in zip(columns, widths)))
    for row in rows:
        print("  ".join(_fmt(v).ljust(w) for v, w in zip(row, widths)))
    print("JSON: " + json.dumps({"title": title, "machine": machine(), "columns": columns, "rows": rows,
                                 **(extra or {})}))


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
