"""Data preparation for the video stages: a folder of dance videos -> clips cut inside shots (8-10 s, no
transition), a WebVid-style CSV of captions, and cached control videos (DWPose renders or depth maps).

    python -m train.prepare --videos raw/ --out data/ [--captions captions.csv | --captioner MODEL_FOLDER]
                            [--dwpose DWPOSE_FOLDER] [--depth DEPTH_MODEL_FOLDER] [--min-seconds 8 --max-seconds 10]

Captions come from a captioner (a local transformers image-to-text model prompted MiniGPT-v2-style on the
clip's middle frame) or a caption file (``videoid,name`` rows, videoid = clip file stem, or the source video
stem for all its clips).
"""
from __future__ import annotations

import argparse
import csv
import os
from typing import Protocol

import av
import numpy as np

CAPTION_PROMPT = "[grounding] describe this frame in a detailed manner"  # the paper's MiniGPT-v2 prompt


class Captioner(Protocol):
    def __call__(self, frames: np.ndarray) -> str: ...


class CaptionFile:
    """Captions from a CSV (``videoid,name``): by clip stem, else by the source video's stem."""

    def __init__(self, path: str):
        with open(path, newline="", encoding="utf-8") as f:
            self.captions = {row["videoid"]: row["name"] for row in csv.DictReader(f)}

    def for_clip(self, clip_id: str, source_id: str) -> str:
        caption = self.captions.get(clip_id, self.captions.get(source_id))
        if caption is None:
            raise KeyError(f"captions: no caption for clip '{clip_id}' or its video '{source_id}'")
        return caption


class TransformersCaptioner:
    """A local transformers image-to-text model (e.g. a BLIP/LLaVA folder), prompted on the middle frame."""

    def __init__(self, folder: str, prompt: str = CAPTION_PROMPT):
        from transformers import pipeline

        self.pipe, self.prompt = pipeline("image-to-text", model=folder, local_files_only=True), prompt

    def __call__(self, frames: np.ndarray) -> str:
        from PIL import Image

        image = Image.fromarray(frames[len(frames) // 2])
        return self.pipe(image, prompt=self.prompt)[0]["generated_text"].replace(self.prompt, "").strip()


def read_video(path: str) -> tuple[np.ndarray, float]:
    with av.open(path) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 25)
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    return frames, fps


def write_video(path: str, frames: np.ndarray, fps: float) -> None:
    with av.open(path, mode="w") as container:
        stream = container.add_stream("libx264", rate=round(fps))
        stream.height, stream.width = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(
                np.ascontiguousarray(frame[:stream.height, :stream.width]), format="rgb24")))
        container.mux(stream.encode())


def shot_boundaries(frames: np.ndarray, threshold: float = 0.5) -> list[int]:
    """Indices where a new shot starts: colour histograms of neighbouring frames differ by more than
    ``threshold`` (half the total variation distance, 0..1)."""
    def histogram(frame):
        h = np.concatenate([np.histogram(frame[..., c], bins=32, range=(0, 256))[0] for c in range(3)]).astype(float)
        return h / h.sum()

    hists = [histogram(f) for f in frames]
    return [i for i in range(1, len(frames)) if 0.5 * np.abs(hists[i] - hists[i - 1]).sum() > threshold]


def clip_ranges(frame_count: int, cuts: list[int], fps: float, min_seconds: float, max_seconds: float) -> list[range]:
    """Back-to-back clips of ``max_seconds`` (the last may be down to ``min_seconds``) inside each shot."""
    ranges, bounds = [], [0, *cuts, frame_count]
    longest, shortest = round(max_seconds * fps), round(min_seconds * fps)
    for start, end in zip(bounds, bounds[1:]):
        while end - start >= shortest:
            ranges.append(range(start, min(start + longest, end)))
            start += longest
    return ranges


def prepare(videos: str, out: str, caption: Captioner | CaptionFile, min_seconds: float = 8, max_seconds: float = 10, controls=(),
            log=print) -> str:
    """Cut, caption and (for each ``(name, frames -> frames)`` in ``controls``) extract control videos,
    skipping what is already there. Returns the CSV path."""
    clips_dir = os.path.join(out, "clips")
    os.makedirs(clips_dir, exist_ok=True)
    rows = []
    for name in sorted(os.listdir(videos)):
        source_id, ext = os.path.splitext(name)
        if ext.lower() not in (".mp4", ".mov", ".mkv", ".webm", ".avi"):
            continue
        frames, fps = read_video(os.path.join(videos, name))
        for k, span in enumerate(clip_ranges(len(frames), shot_boundaries(frames), fps, min_seconds, max_seconds)):
            clip_id = f"{source_id}_{k:03d}"
            clip = frames[span.start:span.stop]
            path = os.path.join(clips_dir, f"{clip_id}.mp4")
            if not os.path.exists(path):
                write_video(path, clip, fps)
            for control_name, extract in controls:
                target = os.path.join(out, control_name, f"{clip_id}.mp4")
                if not os.path.exists(target):
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    write_video(target, extract(clip), fps)
            text = caption.for_clip(clip_id, source_id) if isinstance(caption, CaptionFile) else caption(clip)
            rows.append((clip_id, text))
        log(f"{name}: {sum(1 for r in rows if r[0].startswith(source_id + '_'))} clips")
    path = os.path.join(out, "clips.csv")
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["videoid", "name"])
        writer.writerows(rows)
    return path


def unpack_webdataset(shards: list[str], folder: str) -> int:
    """LAION-style webdataset shards (``key.jpg|png`` + ``key.txt`` or ``key.json`` with a "caption") -> the
    image folder stage 1 reads (``key.png|jpg`` + ``key.txt``). Returns the number of images."""
    import json
    import tarfile

    os.makedirs(folder, exist_ok=True)
    count = 0
    for shard in shards:
        with tarfile.open(shard) as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            for name, member in members.items():
                key, ext = os.path.splitext(name)
                if ext.lower() not in (".jpg", ".jpeg", ".png"):
                    continue
                if key + ".txt" in members:
                    caption = tar.extractfile(members[key + ".txt"]).read().decode("utf-8").strip()
                elif key + ".json" in members:
                    caption = json.loads(tar.extractfile(members[key + ".json"]).read()).get("caption", "")
                else:
                    continue
                stem = os.path.join(folder, os.path.basename(key))
                with open(stem + ext.lower(), "wb") as f:
                    f.write(tar.extractfile(member).read())
                with open(stem + ".txt", "w", encoding="utf-8") as f:
                    f.write(caption)
                count += 1
    return count


def dwpose_controls(folder: str, providers: list[str]):
    """(name, extractor) rendering DWPose skeletons of every frame (the last pose carried over gaps)."""
    from dreamoving.dwpose import DWPose
    from dreamoving.pose import PoseFrame, draw_pose

    estimator = DWPose(os.path.join(folder, "yolox_l.onnx"), os.path.join(folder, "dw-ll_ucoco_384.onnx"), providers)

    def extract(frames: np.ndarray) -> np.ndarray:
        poses = []
        for frame in frames:
            pose = estimator(frame)
            poses.append(pose if pose.people or not poses else PoseFrame(pose.width, pose.height, poses[-1].people))
        return np.stack([draw_pose(p) for p in poses])

    return "poses", extract


def depth_controls(folder: str, device: str = "cpu"):
    from dreamoving.depth import DepthEstimator, normalise_nearness

    estimator = DepthEstimator(folder, device)

    def extract(frames: np.ndarray) -> np.ndarray:
        depth = normalise_nearness(estimator.nearness(frames), per_video=True)
        return (depth[..., None].repeat(1, 1, 1, 3).numpy() * 255).round().astype(np.uint8)

    return "depth", extract


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.prepare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", required=True)
    parser.add_argument("--out", required=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--captions", help="CSV of videoid,name")
    source.add_argument("--captioner", help="a local transformers image-to-text model folder")
    parser.add_argument("--dwpose", help="folder with yolox_l.onnx and dw-ll_ucoco_384.onnx")
    parser.add_argument("--depth", help="a transformers depth model folder")
    parser.add_argument("--min-seconds", type=float, default=8)
    parser.add_argument("--max-seconds", type=float, default=10)
    args = parser.parse_args(argv)
    import torch

    from dreamoving.face_analysis import onnx_providers

    device = "cuda" if torch.cuda.is_available() else "cpu"
    controls = ([dwpose_controls(args.dwpose, onnx_providers(device))] if args.dwpose else []) + \
        ([depth_controls(args.depth, device)] if args.depth else [])
    caption = CaptionFile(args.captions) if args.captions else TransformersCaptioner(args.captioner)
    print(prepare(args.videos, args.out, caption, args.min_seconds, args.max_seconds, controls))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
