"""A small image encoder a Content Guider file can carry in place of CLIP ViT-H/14 (the embedded model's).

Images are resized to ``size`` x ``size``, cut into ``patch`` x ``patch`` pixel patches and linearly embedded
(weights seeded, never trained: a random projection keeps what the patches hold, and the guider's resampler
learns to read it), with fixed 2-D sinusoidal positions. It answers ``encode_image`` like ComfyUI's
CLIP_VISION (``penultimate_hidden_states``: a mean token, then one per patch; ``image_embeds``: the mean token)
and has ``image_mean``, so Content Guider Encode uses either the same way.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .seeded_weights import seeded_uniform

PREFIX = "image_encoder."


def sinusoidal_positions(rows: int, cols: int, dim: int) -> torch.Tensor:
    """[rows * cols, dim]: half the channels encode the row, half the column (transformer frequencies)."""
    quarter = dim // 4
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(quarter, dtype=torch.float64) / quarter)

    def encode(positions: torch.Tensor) -> torch.Tensor:
        angles = positions[:, None].double() * freqs[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    return torch.cat([encode(r.flatten()), encode(c.flatten())], dim=1).float()


class PatchImageEncoder(nn.Module):
    image_mean = (0.5, 0.5, 0.5)
    image_std = (0.5, 0.5, 0.5)

    def __init__(self, size: int = 112, patch: int = 8, dim: int = 256, seed: int | None = None):
        super().__init__()
        if size % patch or dim % 4:
            raise ValueError(f"image encoder: size {size} must be a multiple of patch {patch}, dim {dim} of 4")
        self.size, self.patch, self.dim = size, patch, dim
        self.patch_embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.register_buffer("positions", sinusoidal_positions(size // patch, size // patch, dim), persistent=False)
        if seed is not None:
            with torch.no_grad():
                fan_in = 3 * patch * patch
                self.patch_embed.weight.copy_(seeded_uniform(seed, "patch_embed.weight", self.patch_embed.weight.shape,
                                                             math.sqrt(3 / fan_in)))
                self.patch_embed.bias.zero_()

    def config(self) -> dict:
        return {"size": self.size, "patch": self.patch, "dim": self.dim}

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """[n, 3, H, W] in [0, 1] -> hidden states [n, 1 + patches, dim]."""
        x = F.interpolate(pixels, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(self.image_mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.image_std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        tokens = self.patch_embed((x - mean) / std).flatten(2).transpose(1, 2) + self.positions.to(x)
        return torch.cat([tokens.mean(1, keepdim=True), tokens], dim=1)

    def encode_image(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """ComfyUI IMAGE [n, H, W, 3] in [0, 1] -> CLIP_VISION-style outputs."""
        param = self.patch_embed.weight
        hidden = self(image.to(param.device, param.dtype).permute(0, 3, 1, 2))
        return {"penultimate_hidden_states": hidden, "image_embeds": hidden[:, 0]}


def image_encoder_from_state(state: dict[str, torch.Tensor], metadata: dict) -> PatchImageEncoder | None:
    """The encoder a guider file holds (``image_encoder.*`` keys), or None."""
    weight = state.get(PREFIX + "patch_embed.weight")
    if weight is None:
        return None
    encoder = PatchImageEncoder(int(metadata.get("image_encoder_size", 112)), weight.shape[-1], weight.shape[0])
    encoder.load_state_dict({k.removeprefix(PREFIX): v.float() for k, v in state.items() if k.startswith(PREFIX)})
    return encoder
