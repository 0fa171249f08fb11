"""The base model's VAE: a TAESD-shaped autoencoder (``dreamoving.taesd``) trained from scratch on frames.

    python -m train.vae_training --data DANCERS_DIR --output runs/vae [--steps 1500] [--batch 8] [--crop 32] [--resume]

Convolutions are translation-equivariant, so it trains on random crops (``--crop`` pixels, a multiple of 8) of
whole frames: the cost of a step follows the crop, not the frame. Loss: L1 + MSE on [-1, 1] images and a colour anchor on
the latents (see ``reconstruction_loss``), with Gaussian noise on the latents (``--latent-noise``, relative to their spread) so the decoder tolerates the
imprecise latents a diffusion sampler returns. The export ``taesd.safetensors`` holds ComfyUI's TAESD keys with
``vae_scale``/``vae_shift`` calibrated on training frames (latents x 0.18215 have mean 0, std 1).
Checkpoints (``checkpoint-N.pt``, tensors only, read back with ``weights_only``) every ``--checkpoint-every``.
"""
from __future__ import annotations

import argparse
import os
import re

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from dreamoving.taesd import SD15_SCALE_FACTOR, TAESD


def crops_for_step(dataset, step: int, batch: int, crop: int, seed: int) -> torch.Tensor:
    """[batch, 3, crop, crop] crops of seeded frames: a function of (step, seed) only."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    out = []
    for index in torch.randint(0, len(dataset), (batch,), generator=gen).tolist():
        pixels = dataset[index]["pixels"][0]
        h, w = pixels.shape[-2:]
        top = int(torch.randint(0, (h - crop) // 8 + 1, (1,), generator=gen)) * 8
        left = int(torch.randint(0, (w - crop) // 8 + 1, (1,), generator=gen)) * 8
        out.append(pixels[:, top:top + crop, left:left + crop])
    return torch.stack(out)


def reconstruction_loss(model: TAESD, images: torch.Tensor, latent_noise: float, gen: torch.Generator) -> torch.Tensor:
    """L1 + MSE of the reconstruction, plus the colour anchor: the first three latent channels are pulled to the
    8x8 mean colour of their patch. Without it the encoder kept luminance alone on the rendered dancers (chroma of
    the patch means explained by the latents, R^2 per channel: 0.00 after 800 steps at lr 1e-3, 0.15/0.07/0.00
    after 700 steps at 3e-4; with the anchor 0.81/0.78/0.49 after those 700)."""
    latents = model.taesd_encoder(images * 0.5 + 0.5)
    noise = torch.randn(latents.shape, generator=gen) * latents.detach().std() * latent_noise
    decoded = model.taesd_decoder(latents + noise) * 2 - 1
    anchor = F.mse_loss(latents[:, :3], F.avg_pool2d(images, 8))
    return F.l1_loss(decoded, images) + F.mse_loss(decoded, images) + anchor


def _latest(output: str) -> tuple[str, int] | None:
    steps = [int(m.group(1)) for name in os.listdir(output) if (m := re.fullmatch(r"checkpoint-(\d+)\.pt", name))]
    return (os.path.join(output, f"checkpoint-{max(steps)}.pt"), max(steps)) if steps else None


def train_vae(dataset, output: str, steps: int, batch: int = 8, crop: int = 32, lr: float = 1e-3,
              latent_noise: float = 0.1, seed: int = 0, checkpoint_every: int = 250, resume: bool = False,
              log=print) -> TAESD:
    """Train, checkpoint, calibrate and export ``taesd.safetensors`` into ``output``; returns the model."""
    if crop % 8:
        raise ValueError(f"crop: expected a multiple of 8 pixels, got {crop}")
    os.makedirs(output, exist_ok=True)
    torch.manual_seed(seed)
    model = TAESD().to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    start = 0
    if resume and (found := _latest(output)):
        state = torch.load(found[0], weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = found[1]
        log(f"resumed from {found[0]}")
    for step in range(start, steps):
        gen = torch.Generator().manual_seed(seed * 7_919 + step)
        images = crops_for_step(dataset, step, batch, crop, seed).contiguous(memory_format=torch.channels_last)
        loss = reconstruction_loss(model, images, latent_noise, gen)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step == start or (step + 1) % 25 == 0 or step + 1 == steps:
            log(f"vae step {step + 1}/{steps} loss {loss.item():.5f}")
        if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()},
                       os.path.join(output, f"checkpoint-{step + 1}.pt"))
    with torch.no_grad():
        frames = torch.stack([dataset[i]["pixels"][0] for i in range(0, len(dataset), max(1, len(dataset) // 64))])
        model.calibrate(model.taesd_encoder(frames * 0.5 + 0.5))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(output, "taesd.safetensors"),
              metadata={"format": "dreamoving.taesd", "version": "1", "steps": str(steps),
                        "latent_scale_factor": str(SD15_SCALE_FACTOR)})
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.vae_training", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a dataset written by python -m train.dancers")
    parser.add_argument("--output", required=True)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--latent-noise", type=float, default=0.1)
    parser.add_argument("--checkpoint-every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    from .dancers import DancerImages

    train_vae(DancerImages(args.data, "train"), args.output, args.steps, args.batch, args.crop, args.lr,
              args.latent_noise, args.seed, args.checkpoint_every, args.resume)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
