"""ComfyUI IMAGE batches as the uint8 arrays the onnx/insightface/transformers preprocessors take."""
from __future__ import annotations

import numpy as np
import torch


def uint8_frames(images: torch.Tensor) -> np.ndarray:
    """[N, H, W, 3] floats in [0, 1] -> [N, H, W, 3] uint8."""
    return (images.cpu().numpy() * 255).round().clip(0, 255).astype(np.uint8)
