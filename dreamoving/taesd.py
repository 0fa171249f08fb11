"""A TAESD-shaped autoencoder (madebyollin's Tiny AutoEncoder for SD; ComfyUI's ``comfy/taesd/taesd.py`` layout):
the small VAE the embedded model trains. Key names equal ComfyUI's (``taesd_encoder.*``, ``taesd_decoder.*``,
``vae_scale``, ``vae_shift``), so a checkpoint holding it under ``first_stage_model.`` loads as a TAESD VAE.

``encode`` / ``decode`` are ComfyUI's: images in [-1, 1], raw latents (``(encoder(x) / vae_scale) + vae_shift``);
the U-Net sees raw latents times SD1.5's scale factor 0.18215.
"""
from __future__ import annotations

import torch
from torch import nn

SD15_SCALE_FACTOR = 0.18215


def _conv(n_in: int, n_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    """Three 3x3 convolutions with a residual (64 channels throughout here, so the skip is the identity)."""

    def __init__(self, channels: int = 64):
        super().__init__()
        self.conv = nn.Sequential(_conv(channels, channels), nn.ReLU(), _conv(channels, channels), nn.ReLU(),
                                  _conv(channels, channels))
        self.fuse = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.conv(x) + x)


def encoder(latent_channels: int = 4) -> nn.Sequential:
    """[0, 1] images -> latents at 1/8 of the size."""
    def down():
        return [_conv(64, 64, stride=2, bias=False), Block(), Block(), Block()]
    return nn.Sequential(_conv(3, 64), Block(), *down(), *down(), *down(), _conv(64, latent_channels))


def decoder(latent_channels: int = 4) -> nn.Sequential:
    """latents -> [0, 1] images at 8 times the size."""
    def up():
        return [nn.Upsample(scale_factor=2), _conv(64, 64, bias=False)]
    return nn.Sequential(Clamp(), _conv(latent_channels, 64), nn.ReLU(), Block(), Block(), Block(), *up(),
                         Block(), Block(), Block(), *up(), Block(), Block(), Block(), *up(), Block(), _conv(64, 3))


class TAESD(nn.Module):
    def __init__(self, latent_channels: int = 4):
        super().__init__()
        self.taesd_encoder = encoder(latent_channels)
        self.taesd_decoder = decoder(latent_channels)
        self.vae_scale = nn.Parameter(torch.tensor(1.0))
        self.vae_shift = nn.Parameter(torch.tensor(0.0))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """[n, 3, H, W] in [-1, 1] -> raw latents [n, 4, H/8, W/8]."""
        return self.taesd_encoder(images * 0.5 + 0.5) / self.vae_scale + self.vae_shift

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """raw latents -> [n, 3, 8h, 8w] in [-1, 1] (not clamped, as ComfyUI's)."""
        return self.taesd_decoder((latents - self.vae_shift) * self.vae_scale) * 2 - 1

    @torch.no_grad()
    def calibrate(self, raw_encoder_outputs: torch.Tensor) -> None:
        """Set ``vae_scale`` and ``vae_shift`` so encoded latents, times 0.18215, have mean 0 and std 1 over the
        given encoder outputs (the scale SD1.5's U-Net expects); decoding stays the same function of the image."""
        mean, std = raw_encoder_outputs.mean(), raw_encoder_outputs.std()
        self.vae_scale.fill_(float(std * SD15_SCALE_FACTOR))
        self.vae_shift.fill_(float(-mean / self.vae_scale))
