"""Depth sequences for the depth Video ControlNet, from an estimator the user supplies as a local folder.

Any ``transformers`` depth-estimation model saved with ``save_pretrained`` (Depth-Anything, ZoeDepth as in
the paper, DPT) loads with ``local_files_only``; nothing is downloaded. Output follows the ControlNet depth
convention: near is bright, values in [0, 1], normalised per frame or over the whole video.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

METRIC_MODELS = ("zoedepth",)  # these predict distance (far = large); the others predict relative inverse depth


class DepthEstimator:
    def __init__(self, folder: str, device: str | torch.device = "cpu"):
        if not os.path.isfile(os.path.join(folder, "config.json")):
            raise FileNotFoundError(f"depth model: '{folder}' holds no config.json; save a transformers "
                                    f"depth-estimation model there (e.g. Depth-Anything) with save_pretrained")
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        self.processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        self.model = AutoModelForDepthEstimation.from_pretrained(folder, local_files_only=True).to(device).eval()
        self.device = device
        self.metric = self.model.config.model_type in METRIC_MODELS

    @torch.no_grad()
    def nearness(self, frames: np.ndarray, batch: int = 8) -> torch.Tensor:
        """[N, H, W] un-normalised nearness (larger = closer) of RGB uint8 frames [N, H, W, 3]."""
        out = []
        for start in range(0, len(frames), batch):
            chunk = list(frames[start:start + batch])
            inputs = self.processor(images=chunk, return_tensors="pt").to(self.device)
            depth = self.model(**inputs).predicted_depth.float()
            depth = F.interpolate(depth[:, None], size=frames.shape[1:3], mode="bicubic", align_corners=False)[:, 0]
            out.append((1.0 / depth.clamp(min=1e-3) if self.metric else depth).cpu())
        return torch.cat(out)


def normalise_nearness(nearness: torch.Tensor, per_video: bool) -> torch.Tensor:
    """Min-max to [0, 1], per frame or with one range for the whole video (steadier)."""
    dims = tuple(range(nearness.ndim)) if per_video else tuple(range(1, nearness.ndim))
    low, high = nearness.amin(dim=dims, keepdim=True), nearness.amax(dim=dims, keepdim=True)
    return (nearness - low) / (high - low).clamp(min=1e-8)
