"""The training loop of the video stages: 2 (U-Net motion blocks), 3 (Video ControlNet + its motion blocks,
U-Net frozen) and 4 (U-Net motion blocks with the Video ControlNet in the loop).

Everything random is drawn from generators seeded by (seed, step, clip index), and each step's clips are a
function of the step: a resumed run, and a run split over processes (torchrun + accelerate, DDP), take
the same path as one uninterrupted single-process run with the same global batch.
"""
from __future__ import annotations

import os
import re
from typing import Callable

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers import DDPMScheduler

from dreamoving.controlnet_files import save_video_controlnet
from dreamoving.ldm_keys import controlnet_to_ldm
from dreamoving.motion_files import save_motion_model
from dreamoving.motion_module import MotionModel

from .config import StageConfig
from .motion_unet import MotionUNet, VideoControlNetModel
from .prepare import write_video
from .sampling import SCHEDULE, sample_latents, to_uint8
from .sd15 import SD15Parts


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


TIMESTEP_SAMPLING = ("uniform", "cubic")


def draw_timestep(total: int, gen: torch.Generator, sampling: str = "uniform") -> torch.Tensor:
    """One training timestep in [0, total): uniform, or ``cubic`` (T2I-Adapter, Mou et al. 2023, §3.4:
    t = (1 - u^3) T, so most draws are noisy steps, where the layout a control dictates is decided)."""
    if sampling == "uniform":
        return torch.randint(0, total, (1,), generator=gen)
    if sampling == "cubic":
        u = torch.rand(1, generator=gen)
        return ((1 - u ** 3) * total).long().clamp(max=total - 1)
    raise ValueError(f"timesteps: expected one of {TIMESTEP_SAMPLING}, got {sampling!r}")


def clip_inputs(parts: SD15Parts, item: dict, scheduler, gen: torch.Generator, caption_dropout: float,
                timesteps: str = "uniform") -> dict:
    """One clip's latents, noise, timestep (drawn as ``timesteps`` says), caption (dropped to "" with
    ``caption_dropout``), control and image features (where the item has them)."""
    latents = parts.encode_pixels(item["pixels"], gen)
    noise = torch.randn(latents.shape, generator=gen)
    t = draw_timestep(scheduler.config.num_train_timesteps, gen, timesteps)
    dropped = torch.rand(1, generator=gen).item() < caption_dropout
    inputs = {"latents": latents, "noise": noise, "t": t, "caption": "" if dropped else item["caption"],
              "control": item.get("control")}
    if "features" in item:  # stage 1: image features, dropped (to the item's uncond_features, else zeros) as
        inputs.update(features=item["features"], uncond_features=item.get("uncond_features"),  # often as captions
                      drop_image=torch.rand(1, generator=gen).item() < caption_dropout)
    return inputs


def _batch(parts: SD15Parts, inputs: list[dict], scheduler, device):
    frames = inputs[0]["latents"].shape[0]
    latents = torch.cat([i["latents"] for i in inputs]).to(device)
    noise = torch.cat([i["noise"] for i in inputs]).to(device)
    t = torch.cat([i["t"] for i in inputs]).repeat_interleave(frames).to(device)
    text = parts.encode_text([i["caption"] for i in inputs]).repeat_interleave(frames, 0)
    return scheduler.add_noise(latents, noise, t), noise, t, text, frames


def batch_loss(model: MotionUNet, parts: SD15Parts, inputs: list[dict], scheduler, device) -> torch.Tensor:
    """Stage 2: the noise-prediction MSE of the motion U-Net on prepared clips."""
    noisy, noise, t, text, frames = _batch(parts, inputs, scheduler, device)
    return F.mse_loss(model(noisy, t, text, frames=frames).float(), noise.float())


def controlled_loss(unet: MotionUNet, controlnet: VideoControlNetModel, parts: SD15Parts, inputs: list[dict],
                    scheduler, device) -> torch.Tensor:
    """Stage 3: the same MSE with the Video ControlNet's residuals added to the frozen motion U-Net."""
    noisy, noise, t, text, frames = _batch(parts, inputs, scheduler, device)
    control = torch.cat([i["control"] for i in inputs]).to(device)
    control = F.interpolate(control, size=(noisy.shape[-2] * 8, noisy.shape[-1] * 8), mode="bilinear",
                            align_corners=False)
    down, mid = controlnet(noisy, t, text, control, frames=frames)
    prediction = unet(noisy, t, text, frames=frames, down_block_additional_residuals=down,
                      mid_block_additional_residual=mid)
    return F.mse_loss(prediction.float(), noise.float())


def run_training(config: StageConfig, parts: SD15Parts, model: torch.nn.Module, trained: torch.nn.Module,
                 loss_fn: Callable[[torch.nn.Module, list[dict], object, object], torch.Tensor],
                 export: Callable[[torch.nn.Module], None], dataset, output_dir: str, resume: bool = False,
                 log=print, sample: Callable | None = None) -> torch.nn.Module:
    """The shared loop: ``model`` (what ``loss_fn`` calls; wrapped for DDP) learns ``loss_fn``'s objective
    through ``trained``, its only part with gradients; everything else stays frozen."""
    os.makedirs(output_dir, exist_ok=True)
    precision = config.mixed_precision if torch.cuda.is_available() else "no"  # fp16 autocast needs a GPU
    accelerator = Accelerator(mixed_precision=precision, project_dir=output_dir)
    for frozen in (parts.unet, parts.vae, parts.text_encoder, model):
        frozen.requires_grad_(False).to(accelerator.device)
    trained.float().requires_grad_(True)
    if config.gradient_checkpointing:
        parts.unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(trained.parameters(), lr=config.lr, weight_decay=config.weight_decay)
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
        inputs = [clip_inputs(parts, dataset[c], scheduler, _generator(config.seed, step, c), config.caption_dropout,
                              config.timesteps) for c in clips]
        with accelerator.autocast():
            loss = loss_fn(model, inputs, scheduler, accelerator.device)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        log(f"step {step + 1}/{config.steps} loss {accelerator.gather(loss.detach()[None]).mean().item():.6f}")
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
            accelerator.save_state(os.path.join(output_dir, f"checkpoint-{step + 1}"))
        if sample and accelerator.is_main_process and (step + 1) % config.sample_every == 0:
            sample(accelerator.unwrap_model(model), inputs[0], os.path.join(output_dir, f"sample-{step + 1}.mp4"))
    trained = accelerator.unwrap_model(model)
    if accelerator.is_main_process:
        export(trained)
    accelerator.wait_for_everyone()
    return trained


def _motion_export(config: StageConfig, output_dir: str):
    def export(trained: MotionUNet):
        save_motion_model(trained.motion, os.path.join(output_dir, "motion_module.safetensors"),
                          trained_by=f"dreamoving train stage {config.stage} ({config.name})", steps=config.steps)
    return export


def train_motion(config: StageConfig, parts: SD15Parts, motion: MotionModel, dataset, output_dir: str,
                 resume: bool = False, log=print) -> MotionModel:
    """Stage 2: the U-Net's motion blocks on video clips; exports ``motion_module.safetensors``."""
    unet = MotionUNet(parts.unet, motion)

    def sample(trained: MotionUNet, clip: dict, path: str):
        write_sample_video(trained, parts, clip, path)

    return run_training(config, parts, unet, motion, lambda m, i, s, d: batch_loss(m, parts, i, s, d),
                        _motion_export(config, output_dir), dataset, output_dir, resume, log, sample).motion


def _controlled_stage(parts: SD15Parts, frozen: torch.nn.Module, trains_unet: bool):
    """Loss and sampler of a stage where one of (motion U-Net, Video ControlNet) trains and the other is frozen."""
    def pair(model):
        return (model, frozen) if trains_unet else (frozen, model)

    def loss(model, inputs, scheduler, device):
        frozen.to(device)
        return controlled_loss(*pair(model), parts, inputs, scheduler, device)

    def sample(model, clip: dict, path: str):
        unet, controlnet = pair(model)
        write_sample_video(unet, parts, clip, path, controlnet=controlnet)

    return loss, sample


def train_video_controlnet(config: StageConfig, parts: SD15Parts, unet_motion: MotionModel, controlnet: torch.nn.Module,
                           controlnet_motion: MotionModel | None, dataset, output_dir: str, resume: bool = False,
                           log=print) -> VideoControlNetModel:
    """Stage 3: a ControlNet and its motion blocks (``None``: none, the ablation) on controlled clips, the motion
    U-Net frozen; exports ``video_controlnet.safetensors`` in our single-file format."""
    unet = MotionUNet(parts.unet, unet_motion.float().requires_grad_(False))
    layers = parts.unet.config.layers_per_block
    if config.gradient_checkpointing:
        controlnet.enable_gradient_checkpointing()

    def export(trained: VideoControlNetModel):
        save_video_controlnet(os.path.join(output_dir, "video_controlnet.safetensors"),
                              controlnet_to_ldm(trained.net.state_dict(), layers), trained.motion,
                              trained_by=f"dreamoving train stage {config.stage} ({config.name})", steps=config.steps)

    loss, sample = _controlled_stage(parts, frozen=unet, trains_unet=False)
    video_controlnet = VideoControlNetModel(controlnet, controlnet_motion)
    return run_training(config, parts, video_controlnet, video_controlnet, loss, export, dataset, output_dir, resume,
                        log, sample)


def write_sample_video(model: MotionUNet, parts: SD15Parts, clip: dict, path: str,
                       controlnet: VideoControlNetModel | None = None) -> None:
    """A short DDIM sample of the current model for a prepared ``clip`` (its caption, length and size; its
    control frames drive ``controlnet`` when given), written as an mp4: the training's visual log."""
    frames, latent_hw = clip["latents"].shape[0], tuple(clip["latents"].shape[-2:])
    control = None if controlnet is None else F.interpolate(clip["control"], size=(latent_hw[0] * 8, latent_hw[1] * 8),
                                                            mode="bilinear")
    latents = sample_latents(model, parts, clip["caption"], frames, latent_hw, controlnet=controlnet, control=control)
    write_video(path, to_uint8(parts, latents).numpy(), 8)


def train_expression(config: StageConfig, parts: SD15Parts, unet_motion: MotionModel,
                     video_controlnet: VideoControlNetModel, dataset, output_dir: str, resume: bool = False,
                     log=print) -> MotionModel:
    """Stage 4: the U-Net's motion blocks again, now with the (frozen) stage-3 Video ControlNet in the loop."""
    video_controlnet.float().requires_grad_(False)
    loss, sample = _controlled_stage(parts, frozen=video_controlnet, trains_unet=True)
    return run_training(config, parts, MotionUNet(parts.unet, unet_motion), unet_motion, loss,
                        _motion_export(config, output_dir), dataset, output_dir, resume, log, sample).motion
