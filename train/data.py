"""Training data: WebVid-style clips (a CSV of ``videoid,name`` + a folder of ``<videoid>.mp4``)."""
from __future__ import annotations

import csv
import os

import av
import numpy as np
import torch
import torch.nn.functional as F


def read_frames(path: str, start: int, count: int, stride: int = 1) -> np.ndarray:
    """``count`` RGB frames [count, H, W, 3] from ``start`` every ``stride`` (the last frame repeats if short)."""
    frames = []
    with av.open(path) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= start and (i - start) % stride == 0:
                frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) == count:
                    break
    if not frames:
        raise ValueError(f"video '{path}' has no frame at {start}")
    return np.stack(frames + [frames[-1]] * (count - len(frames)))


def resize_center_crop(frames: np.ndarray, size: int) -> torch.Tensor:
    """[T, H, W, 3] uint8 -> [T, 3, size, size] in [-1, 1]: shorter side to ``size``, then a centre crop."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    x = F.interpolate(x, size=(max(size, round(h * scale)), max(size, round(w * scale))), mode="bilinear",
                      align_corners=False, antialias=True)
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    return x[..., top:top + size, left:left + size]


class WebVidClips(torch.utils.data.Dataset):
    """``frames`` consecutive frames of each listed video, resized and centre-cropped, with its caption."""

    def __init__(self, csv_path: str, video_folder: str, frames: int, resolution: int, stride: int = 1):
        with open(csv_path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        self.items = [(os.path.join(video_folder, f"{r['videoid']}.mp4"), r["name"]) for r in rows]
        missing = [p for p, _ in self.items if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(f"{len(missing)} videos listed in '{csv_path}' are missing, e.g. {missing[0]}")
        self.frames, self.resolution, self.stride = frames, resolution, stride

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        path, caption = self.items[index]
        frames = read_frames(path, 0, self.frames, self.stride)
        return {"pixels": resize_center_crop(frames, self.resolution), "caption": caption}


class ControlledClips(WebVidClips):
    """WebVid-style clips plus their control videos (pose renders or depth maps: ``<videoid>.mp4`` in
    ``control_folder``, frame-aligned), cropped alike; ``control`` is in [0, 1]."""

    def __init__(self, csv_path: str, video_folder: str, control_folder: str, frames: int, resolution: int,
                 stride: int = 1):
        super().__init__(csv_path, video_folder, frames, resolution, stride)
        self.controls = [os.path.join(control_folder, os.path.basename(path)) for path, _ in self.items]
        missing = [p for p in self.controls if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(f"{len(missing)} control videos are missing, e.g. {missing[0]}")

    def __getitem__(self, index: int) -> dict:
        item = super().__getitem__(index)
        control = read_frames(self.controls[index], 0, self.frames, self.stride)
        item["control"] = (resize_center_crop(control, self.resolution) + 1) / 2
        return item
