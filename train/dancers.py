"""Synthetic dancer clips: rendered people driven by real motion capture, with pose, depth and a reference.

    python -m train.dancers --out DIR [--train-clips N] [--eval-clips M] [--frames F] [--eval-frames E]
                            [--width 64 --height 96] [--fps 15] [--pose-scale 4] [--seed 0]

writes, deterministically (the same arguments give byte-identical arrays), ``DIR/clips/<id>.npz`` (np.savez):
``frames`` uint8 [F, H, W, 3], ``pose`` uint8 [F, s*H, s*W, 3] (dreamoving.pose.draw_pose at ``pose_scale`` s:
what a full-resolution pose video looks like), ``depth`` uint8 [F, H, W] (near = bright, per clip over the body,
background 0), ``keypoints`` float32 [F, 18, 3] (OpenPose-18 at the frame size), ``mask`` bool [F, H, W], and
the same character at another moment through a front-facing camera: ``reference`` uint8 [s*H, s*W, 3],
``reference_keypoints`` [18, 3] and ``face`` uint8 [112, 112, 3] (a square crop around its head). Also
``DIR/index.json`` (every clip's split, motion, mirroring, speed, character seed, cameras and caption, and the
arguments) and ``DIR/captions.csv`` (``videoid,name``, WebVid style).

Held out for "eval": the motion ``dance_b`` (every other eval clip) and the characters (seeds from
EVAL_SEEDS up; train seeds lie below it).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from dreamoving.pose import Person, PoseFrame, draw_pose
from train import dancer_render, mocap

EVAL_MOTION = "dance_b"
TRAIN_MOTIONS = {"dance_a": 4.0, "walk": 2.5, "run": 2.0, "spin": 2.0, "spinkick": 1.5, "jump": 1.5, "kick": 1.0,
                 "punch": 1.0, "cartwheel": 1.0, "backflip": 1.0, "roll": 0.75, "crawl": 0.5, "getup_facedown": 0.5,
                 "getup_faceup": 0.5}
EVAL_SEEDS = 1_000_000   # character seeds: train in [0, EVAL_SEEDS), eval in [EVAL_SEEDS, 2 * EVAL_SEEDS)
SPLITS = ("train", "eval")
FACE_SIZE = 112
UPRIGHT_HEAD = 1.3       # metres: reference poses are taken where the head is at least this high
REFERENCE_FALLBACK = "walk"


@dataclass(frozen=True)
class ClipSpec:
    """Everything that decides one clip; angles in degrees."""
    clip_id: str
    split: str
    motion: str
    mirrored: bool
    speed: float
    start: float
    frames: int
    character_seed: int
    camera: dict
    reference: dict


def _weighted(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    p = np.array([weights[n] for n in names])
    return names[rng.choice(len(names), p=p / p.sum())]


def _motion(name: str, mirrored: bool) -> mocap.Motion:
    motion = mocap.load_motion(name)
    return mocap.mirrored(motion) if mirrored else motion


def _upright_times(motion: mocap.Motion) -> np.ndarray:
    """Keyframe times of ``motion`` where the head is high (a standing pose for a reference image)."""
    skeleton = mocap.load_skeleton()
    centre, _ = mocap.head_sphere(skeleton)
    head = mocap.link_point(skeleton, mocap.forward_kinematics(skeleton, motion.pose), "neck", centre)
    return motion.times[head[:, 1] >= UPRIGHT_HEAD]


def plan_clip(split: str, index: int, frames: int, fps: float, seed: int) -> ClipSpec:
    """The clip's motion, timing, character and cameras, drawn from (seed, split, index) alone."""
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    held_out = split == "eval" and index % 2 == 0
    name = EVAL_MOTION if held_out else _weighted(rng, TRAIN_MOTIONS)
    mirrored, speed = bool(rng.random() < 0.5), float(rng.uniform(0.75, 1.5))
    motion = _motion(name, mirrored)
    span = speed * (frames - 1) / fps
    start = float(rng.uniform(0, motion.duration if motion.loop else max(motion.duration - span, 0.0)))
    low = EVAL_SEEDS if split == "eval" else 0
    character_seed = int(rng.integers(low, low + EVAL_SEEDS))
    camera = {"yaw": float(rng.uniform(-60, 60)), "yaw_drift": float(rng.uniform(-20, 20)),
              "elevation": float(rng.uniform(-2, 15)), "distance": float(rng.uniform(3.5, 6.0)),
              "dolly": float(rng.uniform(-0.15, 0.15)), "fill": float(rng.uniform(0.62, 0.82))}
    upright = _upright_times(motion)
    reference_motion = name if len(upright) else REFERENCE_FALLBACK
    if not len(upright):
        upright = _upright_times(_motion(REFERENCE_FALLBACK, mirrored))
    reference = {"motion": reference_motion, "time": float(upright[rng.integers(len(upright))]),
                 "yaw": float(rng.uniform(-15, 15)), "elevation": float(rng.uniform(0, 8)),
                 "distance": float(rng.uniform(3.5, 5.0)), "fill": float(rng.uniform(0.75, 0.85))}
    return ClipSpec(f"{split}_{index:05d}", split, name, mirrored, speed, start, frames, character_seed, camera,
                    reference)


def pose_render(keypoints: np.ndarray, width: int, height: int, scale: int) -> np.ndarray:
    """The OpenPose drawing [scale*height, scale*width, 3] of keypoints [18, 3] given at width x height."""
    body = keypoints.copy()
    body[:, :2] *= scale
    return draw_pose(PoseFrame(scale * width, scale * height, [Person(body=body)]), body=True, hands=False,
                     face=False)


def depth_image(depth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """uint8 depth maps [F, H, W]: inverse depth normalised over the clip's body pixels to 32..255 (near =
    bright), background 0."""
    disparity = np.where(mask, 1 / np.where(mask, depth, 1), 0)
    body = disparity[mask] if mask.any() else np.ones(1)
    scaled = 32 + 223 * (disparity - body.min()) / max(body.max() - body.min(), 1e-6)
    return np.where(mask, np.round(scaled), 0).astype(np.uint8)


def face_crop(image: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """A square FACE_SIZE crop [112, 112, 3] around the head: centred on the face points (nose, eyes, ears),
    sized by the widest of the nose-neck, ear-ear and eye-eye spans (edges replicated outside the image)."""
    def span(a: int, b: int) -> float:
        return float(np.linalg.norm(keypoints[a, :2] - keypoints[b, :2]))
    centre = keypoints[list(dancer_render.FACE_POINTS), :2].mean(0)
    side = max(2.0 * span(0, 1), 1.6 * span(16, 17), 4.0 * span(14, 15), 8.0)
    pad = int(np.ceil(side))
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    x0, y0 = (np.round(centre - side / 2) + pad).astype(int)
    crop = padded[y0:y0 + int(round(side)), x0:x0 + int(round(side))]
    return cv2.resize(crop, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA)


def render_clip(spec: ClipSpec, width: int, height: int, fps: float, pose_scale: int) -> dict[str, np.ndarray]:
    """The clip's arrays (see the module docstring)."""
    skeleton = mocap.load_skeleton()
    character = dancer_render.Character.sample(spec.character_seed)
    body = dancer_render.Body(character, skeleton)
    posed = mocap.forward_kinematics(skeleton, mocap.resample(_motion(spec.motion, spec.mirrored), fps, spec.frames,
                                                              spec.speed, spec.start))
    cam = spec.camera
    cameras = dancer_render.clip_cameras(body, posed, fps, (width, height), np.radians(cam["yaw"]),
                                         np.radians(cam["yaw_drift"]), np.radians(cam["elevation"]), cam["distance"],
                                         cam["dolly"], cam["fill"])
    frames = dancer_render.render_frames(character, skeleton, posed, cameras)
    ref = spec.reference
    ref_posed = mocap.forward_kinematics(skeleton, mocap.sample(_motion(ref["motion"], spec.mirrored), [ref["time"]]))
    ref_camera = dancer_render.clip_cameras(body, ref_posed, fps, (pose_scale * width, pose_scale * height),
                                            np.radians(ref["yaw"]), 0.0, np.radians(ref["elevation"]),
                                            ref["distance"], 0.0, ref["fill"])
    reference = dancer_render.render_frames(character, skeleton, ref_posed, ref_camera)[0]
    keypoints = np.stack([f.keypoints for f in frames])
    mask = np.stack([f.mask for f in frames])
    return {"frames": np.stack([f.rgb for f in frames]),
            "pose": np.stack([pose_render(k, width, height, pose_scale) for k in keypoints]),
            "depth": depth_image(np.stack([f.depth for f in frames]), mask), "keypoints": keypoints, "mask": mask,
            "reference": reference.rgb, "reference_keypoints": reference.keypoints,
            "face": face_crop(reference.rgb, reference.keypoints)}


def clip_specs(train_clips: int, eval_clips: int, frames: int, eval_frames: int, fps: float,
               seed: int) -> list[ClipSpec]:
    return ([plan_clip("train", i, frames, fps, seed) for i in range(train_clips)]
            + [plan_clip("eval", i, eval_frames, fps, seed) for i in range(eval_clips)])


def generate(out: str, train_clips: int = 100, eval_clips: int = 10, frames: int = 48, eval_frames: int = 48,
             width: int = 64, height: int = 96, fps: float = 15, pose_scale: int = 4, seed: int = 0,
             log=print) -> str:
    """Write the dataset to ``out`` (see the module docstring); returns the index path."""
    arguments = {"train_clips": train_clips, "eval_clips": eval_clips, "frames": frames, "eval_frames": eval_frames,
                 "width": width, "height": height, "fps": fps, "pose_scale": pose_scale, "seed": seed}
    os.makedirs(os.path.join(out, "clips"), exist_ok=True)
    clips = {}
    for n, spec in enumerate(clip_specs(train_clips, eval_clips, frames, eval_frames, fps, seed)):
        arrays = render_clip(spec, width, height, fps, pose_scale)
        np.savez(os.path.join(out, "clips", f"{spec.clip_id}.npz"), **arrays)
        entry = asdict(spec)
        del entry["clip_id"]
        clips[spec.clip_id] = entry | {"caption": dancer_render.Character.sample(spec.character_seed).describe()}
        if log and (n + 1) % 20 == 0:
            log(f"dancers: {n + 1} clips")
    with open(os.path.join(out, "index.json"), "w", encoding="utf-8") as f:
        json.dump({"arguments": arguments, "clips": clips}, f, indent=1)
    with open(os.path.join(out, "captions.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["videoid", "name"])
        writer.writerows((clip_id, clip["caption"]) for clip_id, clip in clips.items())
    return os.path.join(out, "index.json")


def read_index(root: str) -> dict:
    path = os.path.join(root, "index.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"dancers: no index.json in '{root}'; write one with python -m train.dancers --out")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def summary(root: str) -> str:
    """Clips and frames per split and motion."""
    clips = read_index(root)["clips"].values()
    lines = []
    for split in SPLITS:
        mine = [c for c in clips if c["split"] == split]
        counts, frames = Counter(c["motion"] for c in mine), Counter()
        for c in mine:
            frames[c["motion"]] += c["frames"]
        lines.append(f"{split}: {len(mine)} clips, {sum(frames.values())} frames")
        lines += [f"  {motion}: {counts[motion]} clips, {frames[motion]} frames" for motion in sorted(counts)]
    return "\n".join(lines)


def _image(array: np.ndarray) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float [..., 3, H, W] in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(array)).movedim(-1, -3).float() / 255


class _DancerSplit(torch.utils.data.Dataset):
    """The clips of one split of a generated dataset."""

    def __init__(self, root: str, split: str):
        if split not in SPLITS:
            raise ValueError(f"dancers: split is '{split}', expected one of {SPLITS}")
        self.clips = {k: v for k, v in read_index(root)["clips"].items() if v["split"] == split}
        self.ids = list(self.clips)
        self.paths = [os.path.join(root, "clips", f"{clip_id}.npz") for clip_id in self.ids]
        if not self.ids:
            raise ValueError(f"dancers: '{root}' has no {split} clips")


class DancerClips(_DancerSplit):
    """``frames``-long windows of the clips: {"pixels" [frames, 3, H, W] in [-1, 1], "control" (the pose render
    resized to the frame size as ComfyUI resizes ControlNet hints) [frames, 3, H, W] in [0, 1], "caption",
    "reference" [3, Hr, Wr] and "face" [3, 112, 112] in [0, 1], "keypoints" [frames, 18, 3]}. ``start``:
    "first" frame, or "random" (a function of the index and ``seed`` only)."""

    def __init__(self, root: str, split: str, frames: int, start: str = "random", seed: int = 0):
        super().__init__(root, split)
        if start not in ("random", "first"):
            raise ValueError(f"dancers: start is '{start}', expected 'random' or 'first'")
        shortest = min(c["frames"] for c in self.clips.values())
        if frames > shortest:
            raise ValueError(f"dancers: {split} clips have {shortest} frames, fewer than the {frames} asked for")
        self.frames, self.start, self.seed = frames, start, seed

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        clip = self.clips[self.ids[index]]
        first = 0 if self.start == "first" else int(
            np.random.default_rng([self.seed, index]).integers(clip["frames"] - self.frames + 1))
        window = slice(first, first + self.frames)
        with np.load(self.paths[index]) as data:
            pixels = torch.from_numpy(data["frames"][window]).permute(0, 3, 1, 2).float() / 127.5 - 1
            control = F.interpolate(_image(data["pose"][window]), size=pixels.shape[-2:], mode="nearest-exact")
            return {"pixels": pixels, "control": control, "caption": clip["caption"],
                    "reference": _image(data["reference"]), "face": _image(data["face"]),
                    "keypoints": torch.from_numpy(data["keypoints"][window])}


class DancerImages(_DancerSplit):
    """Single frames of the clips for image training: {"pixels" [1, 3, H, W] in [-1, 1], "caption",
    "reference" and "face" (the clip's) in [0, 1]}."""

    def __init__(self, root: str, split: str):
        super().__init__(root, split)
        self.items = [(i, f) for i, clip_id in enumerate(self.ids) for f in range(self.clips[clip_id]["frames"])]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        clip, frame = self.items[index]
        with np.load(self.paths[clip]) as data:
            pixels = torch.from_numpy(data["frames"][frame:frame + 1]).permute(0, 3, 1, 2).float() / 127.5 - 1
            return {"pixels": pixels, "caption": self.clips[self.ids[clip]]["caption"],
                    "reference": _image(data["reference"]), "face": _image(data["face"])}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--train-clips", type=int, default=100)
    parser.add_argument("--eval-clips", type=int, default=10)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--eval-frames", type=int, default=None, help="default: --frames")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--fps", type=float, default=15)
    parser.add_argument("--pose-scale", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    generate(args.out, args.train_clips, args.eval_clips, args.frames, args.eval_frames or args.frames, args.width,
             args.height, args.fps, args.pose_scale, args.seed)
    print(summary(args.out))


if __name__ == "__main__":
    main()
