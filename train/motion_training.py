"""Training the U-Net's motion blocks (stage 2, long-frame pretraining; the loop stage 4 reuses).

Everything random is drawn from generators seeded by (seed, step, clip index), and each step's clips are a
function of the step: a resumed run, and a run split over processes (torchrun + accelerate, DDP), take
the same path as one uninterrupted single-process run with the same global batch.
"""
from __future__ import annotations

import os
import re

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers import DDIMScheduler, DDPMScheduler

from dreamoving.motion_files import save_motion_model
from dreamoving.motion_module import MotionModel

from .config import StageConfig
from .motion_unet import MotionUNet
from .sd15 import SD15Parts

# AnimateDiff's training schedule: linear betas (DESIGN §1)
SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear")


def clips_for_step(step: int, dataset_size: int, batch: int, seed: int) -> list[int]:
    """The global batch of clip indices at ``step``: epochs are seeded permutations, walked in order."""
    out = []
    for k in range(step * batch, (step + 1) * batch):
        epoch, position = divmod(k, dataset_size)
        order = torch.randperm(dataset_size, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        out.append(int(order[position]))
    return out


def _generator(seed: int, step: int, clip: int) -> torch.Generator:
    return torch.Generator().manual_seed(((seed * 1_000_003 + step) * 1_000_003 + clip) % 2 ** 63)


def latest_checkpoint(output_dir: str) -> tuple[str, int] | None:
    steps = [int(m.group(1)) for d in os.listdir(output_dir) if (m := re.fullmatch(r"checkpoint-(\d+)", d))] \
        if os.path.isdir(output_dir) else []
    return (os.path.join(output_dir, f"checkpoint-{max(steps)}"), max(steps)) if steps else None


def clip_inputs(parts: SD15Parts, item: dict, scheduler, gen: torch.Generator, caption_dropout: float) -> dict:
    """One clip's latents, noise, timestep and caption (dropped to "" with ``caption_dropout``), from ``gen``."""
    latents = parts.encode_pixels(item["pixels"], gen)
    noise = torch.randn(latents.shape, generator=gen)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (1,), generator=gen)
    dropped = torch.rand(1, generator=gen).item() < caption_dropout
    return {"latents": latents, "noise": noise, "t": t, "caption": "" if dropped else item["caption"]}


def batch_loss(model, parts: SD15Parts, inputs: list[dict], scheduler, device) -> torch.Tensor:
    """The noise-prediction MSE of ``model`` on prepared clips (frames ride in the batch)."""
    frames = inputs[0]["latents"].shape[0]
    latents = torch.cat([i["latents"] for i in inputs]).to(device)
    noise = torch.cat([i["noise"] for i in inputs]).to(device)
    t = torch.cat([i["t"] for i in inputs]).repeat_interleave(frames).to(device)
    text = parts.encode_text([i["caption"] for i in inputs]).repeat_interleave(frames, 0)
    prediction = model(scheduler.add_noise(latents, noise, t), t, text, frames=frames)
    return F.mse_loss(prediction.float(), noise.float())


def train_motion(config: StageConfig, parts: SD15Parts, motion: MotionModel, dataset, output_dir: str,
                 resume: bool = False, log=print) -> MotionModel:
    """Train ``motion`` (the rest frozen) on ``dataset`` clips; checkpoints, samples and the export go to
    ``output_dir``. Returns the trained motion model."""
    precision = config.mixed_precision if torch.cuda.is_available() else "no"  # fp16 autocast needs a GPU
    accelerator = Accelerator(mixed_precision=precision, project_dir=output_dir)
    for frozen in (parts.unet, parts.vae, parts.text_encoder):
        frozen.requires_grad_(False).to(accelerator.device)
    motion.float().requires_grad_(True)
    model = MotionUNet(parts.unet, motion)
    if config.gradient_checkpointing:
        parts.unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(motion.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    scheduler = DDPMScheduler(**SCHEDULE)
    start = 0
    if resume and (found := latest_checkpoint(output_dir)):
        accelerator.load_state(found[0])
        start = found[1]
        log(f"resumed from {found[0]}")
    world, rank = accelerator.num_processes, accelerator.process_index
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} must split evenly over {world} processes")
    for step in range(start, config.steps):
        clips = clips_for_step(step, len(dataset), config.batch_size, config.seed)[rank::world]
        inputs = [clip_inputs(parts, dataset[c], scheduler, _generator(config.seed, step, c), config.caption_dropout)
                  for c in clips]
        with accelerator.autocast():
            loss = batch_loss(model, parts, inputs, scheduler, accelerator.device)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        mean_loss = accelerator.gather(loss.detach()[None]).mean().item()
        log(f"step {step + 1}/{config.steps} loss {mean_loss:.6f}")
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
            accelerator.save_state(os.path.join(output_dir, f"checkpoint-{step + 1}"))
        if accelerator.is_main_process and (step + 1) % config.sample_every == 0:
            latents = inputs[0]["latents"]
            write_sample_video(accelerator.unwrap_model(model), parts, dataset[0]["caption"], latents.shape[0],
                               latents.shape[-1], os.path.join(output_dir, f"sample-{step + 1}.mp4"))
    trained = accelerator.unwrap_model(model).motion
    if accelerator.is_main_process:
        save_motion_model(trained, os.path.join(output_dir, "motion_module.safetensors"),
                          trained_by=f"dreamoving train stage {config.stage} ({config.name})", steps=config.steps)
    accelerator.wait_for_everyone()
    return trained


@torch.no_grad()
def write_sample_video(model: MotionUNet, parts: SD15Parts, caption: str, frames: int, latent_size: int, path: str,
                       steps: int = 10, cfg: float = 7.5, seed: int = 0) -> None:
    """A short DDIM sample of the current model, decoded and written as an mp4 (the training's visual log)."""
    import av

    scheduler = DDIMScheduler(**SCHEDULE)
    scheduler.set_timesteps(steps)
    device = parts.vae.device
    channels = parts.unet.config.in_channels
    x = torch.randn(frames, channels, latent_size, latent_size, generator=torch.Generator().manual_seed(seed)).to(device)
    text = torch.cat([parts.encode_text([caption]), parts.encode_text([""])]).repeat_interleave(frames, 0)
    for t in scheduler.timesteps:
        eps = model(torch.cat([x, x]), t.repeat(2 * frames).to(device), text, frames=frames)
        cond, uncond = eps.chunk(2)
        x = scheduler.step(uncond + cfg * (cond - uncond), t, x).prev_sample
    images = parts.vae.decode(x / parts.vae.config.scaling_factor).sample
    images = ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    with av.open(path, mode="w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.height, stream.width = images.shape[1] // 2 * 2, images.shape[2] // 2 * 2
        stream.pix_fmt = "yuv420p"
        for image in images:
            frame = av.VideoFrame.from_ndarray(image[:stream.height, :stream.width].copy(), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
