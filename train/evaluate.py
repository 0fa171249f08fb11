"""Evaluate the embedded DreaMoving on held-out clips (characters and the dance_b motion never seen in training)
against their ground-truth renders, with the ablations the paper claims:

    python -m train.evaluate --run runs/embedded [--clips 4] [--frames 64] [--steps 12] [--cfg 5] [--seed 0]
                             [--out bench/out/eval] [--variants shipped,guider_off,...]

Each clip is driven by its own pose render (the Video ControlNet's input), guided by the held-out character's
reference image and face crop, with its caption as the prompt. Prints one row per variant (means over clips) with
the measures of ``train.video_metrics`` and the ground truth's own reading as the ceiling; writes
``results.json`` and, for the shipped model, side-by-side videos (reference | pose | ours | ground truth).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from dreamoving.context_windows import ContextOptions
from dreamoving.embedded_model import BASE_FILE, CONTROLNET_FILE, GUIDER_FILE, MOTION_FILE
from dreamoving.guider_files import load_content_guider
from dreamoving.motion_files import load_motion_model

from .dancers import DancerClips
from .embedded_recipe import PE_LEN, Paths, installed_parts
from .guider_training import EncodedReferences, GuidedUNet
from .motion_unet import MotionUNet, VideoControlNetModel
from .prepare import write_video
from .sampling import sample_latents, to_uint8
from .video_metrics import ceiling, video_metrics

METRICS = ("l1", "psnr", "ssim", "silhouette_iou", "pose_specificity", "colour_error", "frame_change",
           "frame_change_truth", "denoising_mse")
DENOISING_TIMESTEPS = (200, 500, 800)
PER_FRAME = ("frames", "mask", "keypoints", "pose")


@dataclass(frozen=True)
class Variant:
    """One row: which files drive the model and how. ``controlnet``/``motion``/``guider``: a Paths attribute or
    a shipped file name (its installed copy); ``motion=None``: no U-Net motion blocks."""
    name: str
    what: str
    motion: str | None = MOTION_FILE
    controlnet: str = CONTROLNET_FILE
    guider: str = GUIDER_FILE
    guide: bool = True
    length_factor: int = 1  # x the evaluated frames, through context windows of the evaluated length


VARIANTS = {v.name: v for v in (
    Variant("shipped", "DreaMoving, shipped files (int8-packed, as installed)"),
    Variant("guider_off", "Content Guider off (a_f = a_c = 0)", guide=False),
    Variant("motion_off", "U-Net motion blocks off", motion=None),
    Variant("exports", "DreaMoving, unpacked fp32 exports", motion="expression", controlnet="controlnet",
            guider="guider"),
    Variant("controlnet_no_motion", "Video ControlNet without motion blocks (fp32; trained as stage 3)",
            motion="expression", controlnet="controlnet_no_motion", guider="guider"),
    Variant("windows", "shipped, twice the frames through context windows", length_factor=2),
)}


def _file(paths: Paths, name: str) -> str:
    return paths.installed(name) if name in (BASE_FILE, MOTION_FILE, CONTROLNET_FILE, GUIDER_FILE) \
        else getattr(paths, name)


@torch.no_grad()
def denoising_error(unet: MotionUNet, parts, controlnet: VideoControlNetModel, guide, item: dict, frames: int,
                    seed: int) -> float:
    """The noise-prediction MSE on the clip's first ``frames`` frames at t = 200, 500 and 800 (seeded noise):
    the training objective on held-out data, a steadier measure than the sampled videos."""
    from diffusers import DDPMScheduler

    from .sampling import SCHEDULE

    scheduler, gen = DDPMScheduler(**SCHEDULE), torch.Generator().manual_seed(seed)
    latents = parts.encode_pixels(item["pixels"][:frames], gen)
    text = parts.encode_text([item["caption"]]).expand(frames, -1, -1)
    errors = []
    for t in DENOISING_TIMESTEPS:
        noise, timesteps = torch.randn(latents.shape, generator=gen), torch.full((frames,), t)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        down, mid = controlnet(noisy, timesteps, text, item["control"][:frames], frames=frames)
        guide(frames, conditional_only=True)
        prediction = unet(noisy, timesteps, text, frames=frames, down_block_additional_residuals=down,
                          mid_block_additional_residual=mid)
        errors.append(torch.nn.functional.mse_loss(prediction, noise).item())
    return float(np.mean(errors))


def load_truth(data: str, clip_id: str, frames: int) -> dict:
    with np.load(os.path.join(data, "clips", f"{clip_id}.npz")) as arrays:
        truth = {k: arrays[k][:frames] for k in PER_FRAME}
        truth.update(reference=arrays["reference"], reference_keypoints=arrays["reference_keypoints"])
    return truth


def side_by_side(truth: dict, generated: np.ndarray) -> np.ndarray:
    """[F, H, 4W, 3]: reference | pose | generated | ground truth, at the frame size."""
    import cv2

    h, w = generated.shape[1:3]
    reference = cv2.resize(truth["reference"], (w, h), interpolation=cv2.INTER_AREA)
    panels = [(reference, pose, frame, gt) for pose, frame, gt in zip(
        (cv2.resize(p, (w, h), interpolation=cv2.INTER_AREA) for p in truth["pose"]), generated, truth["frames"])]
    return np.stack([np.concatenate(row, axis=1) for row in panels])


def evaluate(run: str, clips: int = 4, frames: int = 64, steps: int = 12, cfg: float = 5.0, seed: int = 0,
             variants: list[str] | None = None, out: str | None = None, log=print) -> dict:
    """Metrics per variant (means over the first ``clips`` eval clips) and the ground truth's ceiling."""
    paths = Paths(run)
    parts = installed_parts(paths)
    parts.unet.eval()
    chosen = [VARIANTS[name] for name in (variants or VARIANTS)]
    longest = frames * max(v.length_factor for v in chosen)
    dataset = DancerClips(paths.data, "eval", longest, start="first")
    ids = dataset.ids[:clips]
    results = {"ceiling": {}, "variants": {}, "clips": ids, "frames": frames, "steps": steps, "cfg": cfg,
               "seed": seed}
    truths = [load_truth(paths.data, clip_id, longest) for clip_id in ids]
    results["ceiling"] = _mean([dict(ceiling(_first(truth, frames)), denoising_mse=float("nan")) for truth in truths])
    for variant in chosen:
        start = time.perf_counter()
        unet = MotionUNet(parts.unet, load_motion_model(_file(paths, variant.motion), PE_LEN).float()
                          if variant.motion else None)
        controlnet = VideoControlNetModel.from_file(_file(paths, variant.controlnet), parts.unet).float().eval()
        guider = load_content_guider(_file(paths, variant.guider)).float()
        guided = GuidedUNet(parts.unet, guider)
        encoded = EncodedReferences(None, guider.image_encoder)
        weight = 1.0 if variant.guide else 0.0
        n = frames * variant.length_factor
        scores = []
        for index, (clip_id, truth) in enumerate(zip(ids, truths)):
            item = dataset[index]
            features = [encoded.features(item), encoded.uncond]

            def guide(count, features=features, conditional_only=False):
                guided.set_features(features[:1] if conditional_only else features,
                                    {"face": weight, "cloth": weight}, item["pixels"], repeats=count)

            latents = sample_latents(unet, parts, item["caption"], n, (item["pixels"].shape[-2] // 8,
                                     item["pixels"].shape[-1] // 8), steps, cfg, seed, controlnet,
                                     item["control"][:n], guide, ContextOptions(length=frames, overlap=frames // 4))
            generated = to_uint8(parts, latents).numpy()
            clip_truth = _first(truth, n)
            scores.append(dict(video_metrics(generated, clip_truth),
                               denoising_mse=denoising_error(unet, parts, controlnet, guide, item, frames, seed)))
            if out and variant.name == "shipped":
                os.makedirs(out, exist_ok=True)
                write_video(os.path.join(out, f"{clip_id}_side_by_side.mp4"), side_by_side(clip_truth, generated), 15)
        results["variants"][variant.name] = dict(_mean(scores), what=variant.what, frames=n,
                                                 seconds=round(time.perf_counter() - start, 1))
        log(format_row(variant.name, results["variants"][variant.name]))
    if out:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
    return results


def _first(truth: dict, frames: int) -> dict:
    """The clip's arrays over its first ``frames`` frames."""
    return {k: v[:frames] if k in PER_FRAME else v for k, v in truth.items()}


def _mean(rows: list[dict]) -> dict:
    return {k: float(np.mean([r[k] for r in rows])) for k in METRICS}


def format_row(name: str, row: dict) -> str:
    return (f"| {name} | {row.get('frames', '')} | {row['l1']:.4f} | {row['psnr']:.2f} | {row['ssim']:.3f} | "
            f"{row['silhouette_iou']:.3f} | {row['pose_specificity']:+.3f} | {row['colour_error']:.1f} | "
            f"{row['frame_change']:.2f} ({row['frame_change_truth']:.2f}) | {row['denoising_mse']:.5f} |")


def table(results: dict) -> str:
    lines = ["| variant | frames | L1 | PSNR | SSIM | silhouette IoU | pose specificity | colour error | "
             "frame change (truth) | denoising MSE |",
             "|---|---|---|---|---|---|---|---|---|---|",
             format_row("ground truth (ceiling)", dict(results["ceiling"], frames=results["frames"]))]
    lines += [format_row(name, row) for name, row in results["variants"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="the folder of python -m train.embedded all --out")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--cfg", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", help=f"comma-separated, of {', '.join(VARIANTS)} (default: all)")
    parser.add_argument("--out", help="write results.json and side-by-side videos here")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    results = evaluate(args.run, args.clips, args.frames, args.steps, args.cfg, args.seed,
                       args.variants.split(",") if args.variants else None, args.out)
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
