"""Sampling videos from the train-side models, as the training's visual log and for the evaluation: DDIM with
AnimateDiff's linear betas, classifier-free guidance, the Video ControlNet's residuals, the Content Guider's
tokens and, for videos longer than one window, sliding context windows fused as the DreaMoving Sampler fuses
them (``dreamoving.context_windows``).

The sampler is the one ComfyUI users get: DDIM (= Euler in ComfyUI's sigma space) from the noisiest step
(t = 999, "trailing" spacing, as ComfyUI's schedulers start) and no clamping of the predicted clean latents.
diffusers' DDIM clamps them to [-1, 1] by default (``clip_sample``), which hides a weak model's drift at the
noisy steps: with it the embedded model's evaluation read far better than the same weights in ComfyUI."""
from __future__ import annotations

from typing import Callable

import torch
from diffusers import DDIMScheduler

from dreamoving.context_windows import ContextOptions, context_windows, fuse_weights

from .motion_unet import MotionUNet, VideoControlNetModel
from .sd15 import SD15Parts

# AnimateDiff's training schedule: linear betas (DESIGN §1)
SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear")
SAMPLING = dict(timestep_spacing="trailing", clip_sample=False)


@torch.no_grad()
def sample_latents(unet: MotionUNet, parts: SD15Parts, caption: str, frames: int, latent_hw: tuple[int, int],
                   steps: int = 10, cfg: float = 7.5, seed: int = 0, controlnet: VideoControlNetModel | None = None,
                   control: torch.Tensor | None = None, guide: Callable[[int], None] | None = None,
                   context: ContextOptions | None = None, negative: str = "") -> torch.Tensor:
    """Latents [frames, C, h, w] of one video. ``control``: [frames, 3, 8h, 8w] in [0, 1]; ``guide(n)`` readies
    the Content Guider for a batch of n conditional then n unconditional frames; ``context``: windows (one window
    of all frames when None)."""
    scheduler = DDIMScheduler(**SCHEDULE, **SAMPLING)
    scheduler.set_timesteps(steps)
    device = next(parts.unet.parameters()).device
    context = context or ContextOptions(length=frames, overlap=0)
    x = torch.randn(frames, parts.unet.config.in_channels, *latent_hw,
                    generator=torch.Generator().manual_seed(seed)).to(device)
    text = torch.cat([parts.encode_text([caption]), parts.encode_text([negative])])
    for step, t in enumerate(scheduler.timesteps):
        eps, total = torch.zeros_like(x), torch.zeros(frames, 1, 1, 1, device=device)
        for window in context_windows(frames, context, step):
            n = len(window)
            pair, timesteps, window_text = torch.cat([x[window]] * 2), t.repeat(2 * n).to(device), \
                text.repeat_interleave(n, 0)
            residuals = {}
            if controlnet is not None:
                hint = control[window].to(device)
                down, mid = controlnet(pair, timesteps, window_text, torch.cat([hint, hint]), frames=n)
                residuals = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
            if guide is not None:
                guide(n)
            cond, uncond = unet(pair, timesteps, window_text, frames=n, **residuals).chunk(2)
            weight = fuse_weights(window, frames, context).to(device).view(-1, 1, 1, 1)
            eps[window] += weight * (uncond + cfg * (cond - uncond))
            total[window] += weight
        x = scheduler.step(eps / total, t, x).prev_sample
    return x


def to_uint8(parts: SD15Parts, latents: torch.Tensor) -> torch.Tensor:
    """Decoded frames as uint8 [frames, H, W, 3]."""
    images = parts.decode_latents(latents)
    return ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu()
