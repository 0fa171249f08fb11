"""Stage settings: the paper's values (DESIGN §1), overridable from a JSON file or the command line."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass


@dataclass
class StageConfig:
    stage: int
    name: str
    trains: str               # what gets gradients
    resolution: int           # square training size in pixels
    frames: int               # frames per clip (1 = images)
    lr: float
    weight_decay: float
    batch_size: int           # global batch (split over processes)
    steps: int
    mixed_precision: str = "fp16"   # "no" on CPU
    gradient_checkpointing: bool = True
    caption_dropout: float = 0.1    # empty caption, for classifier-free guidance
    timesteps: str = "uniform"      # or "cubic": T2I-Adapter's bias towards the noisy steps, where layout forms
    checkpoint_every: int = 1000
    sample_every: int = 1000
    seed: int = 0

    def with_overrides(self, overrides: dict) -> "StageConfig":
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"config: unknown settings {sorted(unknown)}")
        return dataclasses.replace(self, **overrides)


PAPER = {
    1: StageConfig(1, "content_guider", "guider projections + face/cloth K/V", 512, 1, 1e-4, 1e-2, 16 * 8, 100_000),
    2: StageConfig(2, "long_frame_pretraining", "U-Net motion blocks", 256, 64, 1e-4, 1e-2, 1, 10_000),
    3: StageConfig(3, "video_controlnet", "ControlNet + its motion blocks", 352, 64, 1e-4, 1e-2, 1, 25_000),
    4: StageConfig(4, "expression_finetuning", "U-Net motion blocks", 512, 64, 5e-5, 1e-2, 1, 20_000),
}


def load_config(stage: int, path: str | None = None, **overrides) -> StageConfig:
    """The paper's config for ``stage``, then a JSON file's settings, then ``overrides``."""
    config = PAPER[stage]
    if path:
        with open(path, encoding="utf-8") as f:
            config = config.with_overrides(json.load(f))
    return config.with_overrides({k: v for k, v in overrides.items() if v is not None})
