"""The embedded DreaMoving from nothing: data, VAE, image U-Net, then the paper's stages 1-4, and the shipped
files (``dreamoving.embedded_model`` installs them). One resumable command:

    python -m train.embedded all --out runs/embedded [--small] [--export weights/embedded]

Each part writes its export into its own folder under ``--out`` and is skipped when that export exists, so an
interrupted run continues where it stopped (a part in progress resumes from its newest checkpoint). A shipped
part is packed (``dreamoving.packed_weights``: int8 rows, so the whole model fits the repository) into
``shipped/`` and installed from there into ``installed/`` exactly as users get it; the parts after it train
against that installed copy (the guider and the Video ControlNet see the shipped U-Net, stage 4 the shipped
Video ControlNet), so what ships is what was trained together. ``SMALL`` is the same command at a size CI runs
in minutes.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass

import torch

from dreamoving.controlnet_files import encoder_motion_state
from dreamoving.embedded_model import (BASE_FILE, CONTROLNET_FILE, GUIDER_FILE, INSTALLED, MANIFEST, MOTION_FILE,
                                       TEXT_ENCODER_PREFIX, UNET_CONFIG, file_digest, install_file)
from dreamoving.image_encoder import PatchImageEncoder
from dreamoving.motion_files import load_motion_model, motion_model_from_state_dict
from dreamoving.motion_module import MotionModel
from dreamoving.packed_weights import pack_file
from dreamoving.unet_layout import UNetLayout
from dreamoving.weights import read_state_dict

from .clip_tokenizer import clip_tokenizer_folder
from .config import StageConfig
from .embedded import BASE_CONFIG, base_parts, train_base_unet
from .sd15 import SD15Parts, load_sd15

PE_LEN = 64
ENCODER_SEED = 2312  # the guider's patch image encoder: generated, frozen, shipped inside the guider file
MOTION_SEED = 5107
VAE_LR = 3e-4  # after 300 steps the reconstruction L1 was 0.11 at 3e-4 and 0.26 at 1e-3 (train_vae's default)


def _stage(stage: int, name: str, trains: str, frames: int, lr: float, batch: int, steps: int,
           timesteps: str = "uniform") -> StageConfig:
    return StageConfig(stage, name, trains, 0, frames, lr, 1e-2, batch, steps, mixed_precision="fp16",
                       gradient_checkpointing=False, checkpoint_every=100, sample_every=10 ** 9, timesteps=timesteps)


@dataclass(frozen=True)
class Recipe:
    """Sizes of every part of the embedded model's training."""
    train_clips: int
    eval_clips: int
    clip_frames: int
    eval_frames: int
    vae_steps: int
    vae_batch: int
    unet: StageConfig
    guider: StageConfig       # stage 1
    motion: StageConfig       # stage 2
    controlnet: StageConfig   # stage 3
    expression: StageConfig   # stage 4
    motion_ff_mult: int = 1
    guider_width: int = 256
    guider_depth: int = 2
    encoder_dim: int = 256

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


FULL = Recipe(train_clips=100, eval_clips=10, clip_frames=48, eval_frames=128, vae_steps=4000, vae_batch=8,
              unet=BASE_CONFIG.with_overrides(dict(steps=1500, batch_size=8, checkpoint_every=100)),
              guider=_stage(1, "content_guider", "guider projections + face/cloth K/V", 1, 2e-4, 8, 400),
              motion=_stage(2, "long_frame_pretraining", "U-Net motion blocks", 16, 2e-4, 1, 300),
              # stage 3: 800 uniform steps left the figure near chance; 1400 read silhouette IoU 0.42 (uniform) /
              # 0.35 (cubic, with half the frame-to-frame flicker and the lower L1); 2026-12-07 in bench/RESULTS.md
              controlnet=_stage(3, "video_controlnet", "ControlNet + its motion blocks", 8, 2e-4, 1, 2000, "cubic"),
              expression=_stage(4, "expression_finetuning", "U-Net motion blocks", 16, 1e-4, 1, 200))
SMALL = dataclasses.replace(
    FULL, train_clips=4, eval_clips=2, clip_frames=8, eval_frames=8, vae_steps=6, vae_batch=2,
    unet=FULL.unet.with_overrides(dict(steps=4, batch_size=2, checkpoint_every=2)),
    guider=FULL.guider.with_overrides(dict(steps=3, batch_size=2)),
    motion=FULL.motion.with_overrides(dict(steps=3, frames=4)),
    controlnet=FULL.controlnet.with_overrides(dict(steps=3, frames=4)),
    expression=FULL.expression.with_overrides(dict(steps=2, frames=4)),
    guider_width=64, guider_depth=1, encoder_dim=32)


class Paths:
    """Where each part of a run writes its export, its shipped (packed) file and its installed copy."""

    def __init__(self, out: str):
        self.out = out
        self.data = os.path.join(out, "data")
        self.tokenizer = os.path.join(out, "tokenizer")
        self.vae = os.path.join(out, "vae", "taesd.safetensors")
        self.checkpoint = os.path.join(out, "unet", "checkpoint.safetensors")
        self.guider = os.path.join(out, "stage1", "content_guider.safetensors")
        self.motion = os.path.join(out, "stage2", "motion_module.safetensors")
        self.controlnet = os.path.join(out, "stage3", "video_controlnet.safetensors")
        self.expression = os.path.join(out, "stage4", "motion_module.safetensors")
        self.controlnet_no_motion = os.path.join(out, "ablation_stage3_no_motion", "video_controlnet.safetensors")

    def shipped(self, name: str) -> str:
        return os.path.join(self.out, "shipped", name)

    def installed(self, name: str) -> str:
        folder, target = INSTALLED[name]
        return os.path.join(self.out, "installed", folder, target)


# {shipped name: (the export it packs, keys left out, keys stored exactly)}: the guider's generated image encoder
# made its training features, so it ships bit for bit
SHIPPED = {BASE_FILE: (lambda p: p.checkpoint, TEXT_ENCODER_PREFIX, ()),
           GUIDER_FILE: (lambda p: p.guider, None, ("image_encoder.",)),
           CONTROLNET_FILE: (lambda p: p.controlnet, None, ()),
           MOTION_FILE: (lambda p: p.expression, None, ())}


def ship(paths: Paths, name: str) -> str:
    """Pack the export behind ``name`` and install it as users will; returns the installed copy."""
    if not os.path.exists(paths.installed(name)):
        source, drop, exact = SHIPPED[name]
        os.makedirs(os.path.dirname(paths.shipped(name)), exist_ok=True)
        pack_file(source(paths), paths.shipped(name), drop, exact)
        install_file(name, paths.shipped(name), paths.installed(name))
    return paths.installed(name)


def new_motion_model(layout: UNetLayout, ff_mult: int, seed: int) -> MotionModel:
    """Fresh motion blocks as AnimateDiff starts them: ``proj_out`` zeroed, so each block is the identity."""
    torch.manual_seed(seed)
    model = MotionModel(layout.motion_spec(ff_mult=ff_mult, pe_len=PE_LEN))
    with torch.no_grad():
        for *_, module in model.placements():
            module.temporal_transformer.proj_out.weight.zero_()
            module.temporal_transformer.proj_out.bias.zero_()
    return model


def installed_parts(paths: Paths) -> SD15Parts:
    """The shipped base as installed (fresh each time: stages patch the U-Net's processors)."""
    return load_sd15(paths.installed(BASE_FILE), clip_tokenizer_folder(paths.tokenizer), UNET_CONFIG)


def run_all(out: str, recipe: Recipe = FULL, log=print) -> Paths:
    """Train every missing part of the embedded model under ``out``; returns where the exports are."""
    from diffusers import ControlNetModel

    from .dancers import DancerClips, DancerImages, generate
    from .guider_training import EncodedReferences, new_content_guider, train_guider
    from .motion_training import train_expression, train_motion, train_video_controlnet
    from .motion_unet import VideoControlNetModel
    from .vae_training import train_vae

    paths = Paths(out)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "recipe.json"), "w", encoding="utf-8") as f:
        json.dump(recipe.as_dict(), f, indent=1)
    if not os.path.exists(os.path.join(paths.data, "index.json")):
        log("== data: rendered dancers")
        generate(paths.data, recipe.train_clips, recipe.eval_clips, recipe.clip_frames, recipe.eval_frames)
    if not os.path.exists(paths.vae):
        log("== VAE")
        train_vae(DancerImages(paths.data, "train"), os.path.dirname(paths.vae), recipe.vae_steps, recipe.vae_batch,
                  lr=VAE_LR, resume=True, log=log)
    if not os.path.exists(paths.checkpoint):
        log("== image U-Net")
        train_base_unet(recipe.unet, base_parts(paths.vae, paths.tokenizer), DancerImages(paths.data, "train"),
                        os.path.dirname(paths.checkpoint), resume=True, log=log)
    ship(paths, BASE_FILE)
    layout = UNetLayout.from_config(UNET_CONFIG)
    if not os.path.exists(paths.guider):
        log("== stage 1: Content Guider")
        parts = installed_parts(paths)
        encoder = PatchImageEncoder(dim=recipe.encoder_dim, seed=ENCODER_SEED)
        guider = new_content_guider(parts.unet, encoder.dim, face_kind="resampler", width=recipe.guider_width,
                                    depth=recipe.guider_depth)
        train_guider(recipe.guider, parts, guider, EncodedReferences(DancerImages(paths.data, "train"), encoder),
                     os.path.dirname(paths.guider), resume=True, log=log, image_encoder=encoder)
    ship(paths, GUIDER_FILE)
    clips = {name: DancerClips(paths.data, "train", config.frames)
             for name, config in (("motion", recipe.motion), ("controlnet", recipe.controlnet),
                                  ("expression", recipe.expression))}
    if not os.path.exists(paths.motion):
        log("== stage 2: motion blocks")
        train_motion(recipe.motion, installed_parts(paths), new_motion_model(layout, recipe.motion_ff_mult, MOTION_SEED),
                     clips["motion"], os.path.dirname(paths.motion), resume=True, log=log)
    if not os.path.exists(paths.controlnet):
        log("== stage 3: Video ControlNet")
        parts = installed_parts(paths)
        state, metadata = read_state_dict(paths.motion)
        controlnet_motion = motion_model_from_state_dict(encoder_motion_state(state), metadata, paths.motion, PE_LEN)
        train_video_controlnet(recipe.controlnet, parts, load_motion_model(paths.motion, PE_LEN),
                               ControlNetModel.from_unet(parts.unet), controlnet_motion, clips["controlnet"],
                               os.path.dirname(paths.controlnet), resume=True, log=log)
    controlnet = ship(paths, CONTROLNET_FILE)
    if not os.path.exists(paths.expression):
        log("== stage 4: expression fine-tuning")
        parts = installed_parts(paths)
        train_expression(recipe.expression, parts, load_motion_model(paths.motion, PE_LEN),
                         VideoControlNetModel.from_file(controlnet, parts.unet), clips["expression"],
                         os.path.dirname(paths.expression), resume=True, log=log)
    ship(paths, MOTION_FILE)
    return paths


def run_ablations(out: str, recipe: Recipe = FULL, log=print) -> Paths:
    """What the evaluation compares the shipped parts with that needs training of its own: the Video ControlNet
    without motion blocks, trained as stage 3 (same data, steps, seeds) after ``run_all``."""
    from diffusers import ControlNetModel

    from .dancers import DancerClips
    from .motion_training import train_video_controlnet

    paths = Paths(out)
    if not os.path.exists(paths.controlnet_no_motion):
        log("== ablation: stage 3 without motion blocks")
        parts = installed_parts(paths)
        train_video_controlnet(recipe.controlnet, parts, load_motion_model(paths.motion, PE_LEN),
                               ControlNetModel.from_unet(parts.unet), None,
                               DancerClips(paths.data, "train", recipe.controlnet.frames),
                               os.path.dirname(paths.controlnet_no_motion), resume=True, log=log)
    return paths


def export_weights(paths: Paths, target: str, recipe: Recipe, commit: str = "") -> dict:
    """Copy the shipped files into ``target`` with a manifest of their digests (which
    ``dreamoving.embedded_model.install_embedded`` checks), the recipe and the commit that trained them."""
    os.makedirs(target, exist_ok=True)
    for name in SHIPPED:
        shutil.copyfile(paths.shipped(name), os.path.join(target, name))
    manifest = {"files": {name: file_digest(os.path.join(target, name)) for name in SHIPPED},
                "recipe": recipe.as_dict(), "commit": commit}
    with open(os.path.join(target, MANIFEST), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
    return manifest
