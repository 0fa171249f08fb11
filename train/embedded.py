"""The embedded model's base (see ``dreamoving.embedded_model``): its parts for training, the image U-Net's own
training stage, and the single-file SD1.5 checkpoint that ComfyUI's Load Checkpoint reads.

    python -m train.embedded unet --data DANCERS_DIR --vae runs/vae/taesd.safetensors --output runs/unet \\
        [--steps 3000] [--batch 16] [--lr 2e-4] [--resume]
    python -m train.embedded all --out runs/embedded [--small] [--export weights/embedded] [--ablations]

The image U-Net learns the dancers' frames (one frame per sample, its caption as text; 10% empty captions) with
the TAESD VAE and the generated CLIP-L frozen, through the same loop as the paper's stages; it exports
``unet.safetensors`` (LDM keys under ``model.diffusion_model.``, fp16) and ``checkpoint.safetensors`` (U-Net +
VAE + text encoder), which the paper's stages then start from (``--sd15 checkpoint.safetensors``).
"""
from __future__ import annotations

import argparse
import os

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from dreamoving.embedded_model import UNET_CONFIG, generated_text_encoder
from dreamoving.ldm_keys import unet_to_ldm
from dreamoving.taesd import TAESD

from .clip_tokenizer import clip_tokenizer_folder
from .config import StageConfig
from .motion_training import _batch, run_training
from .sd15 import SD15Parts, _original_config, clip_text_model

UNET_PREFIX, VAE_PREFIX = "model.diffusion_model.", "first_stage_model."
BASE_CONFIG = StageConfig(0, "image_unet", "the image U-Net", 0, 1, 2e-4, 1e-2, 16, 3000, mixed_precision="fp16",
                          gradient_checkpointing=False, checkpoint_every=500, sample_every=10 ** 9)


def new_unet(seed: int = 0):
    """A freshly initialised diffusers U-Net in the embedded layout."""
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import create_unet_diffusers_config_from_ldm

    torch.manual_seed(seed)
    return UNet2DConditionModel(**create_unet_diffusers_config_from_ldm(_original_config(UNET_CONFIG), {}))


def text_encoder():
    """The generated CLIP-L as a transformers CLIPTextModel (fp32 of the fp16 values ComfyUI loads)."""
    return clip_text_model(generated_text_encoder(), "generated text encoder").eval()


def load_taesd(path: str) -> TAESD:
    vae = TAESD()
    vae.load_state_dict(load_file(path))
    return vae.eval()


def base_parts(vae_path: str, tokenizer_dir: str, unet=None) -> SD15Parts:
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(clip_tokenizer_folder(tokenizer_dir), local_files_only=True)
    return SD15Parts(unet if unet is not None else new_unet(), load_taesd(vae_path), text_encoder(), tokenizer)


class ImageUNet(torch.nn.Module):
    """The U-Net on single images (what ``run_training`` calls)."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timesteps, text):
        return self.unet(sample, timesteps, encoder_hidden_states=text).sample


def image_loss(model: ImageUNet, parts: SD15Parts, inputs: list[dict], scheduler, device) -> torch.Tensor:
    noisy, noise, t, text, _ = _batch(parts, inputs, scheduler, device)
    return F.mse_loss(model(noisy, t, text).float(), noise.float())


def write_checkpoint(path: str, unet_state: dict, vae_state: dict) -> None:
    """A single-file SD1.5 checkpoint: U-Net (LDM keys), TAESD VAE and the generated text encoder, fp16."""
    tensors = {UNET_PREFIX + k: v.half().contiguous() for k, v in unet_state.items()}
    tensors.update({VAE_PREFIX + k: v.half().contiguous() for k, v in vae_state.items()})
    tensors.update(generated_text_encoder())
    save_file(tensors, path, metadata={"format": "pt", "dreamoving": "embedded base"})


def train_base_unet(config: StageConfig, parts: SD15Parts, dataset, output_dir: str, resume: bool = False,
                    log=print):
    """Train the image U-Net; exports ``unet.safetensors`` and ``checkpoint.safetensors`` into ``output_dir``."""
    layers = parts.unet.config.layers_per_block

    def export(trained: ImageUNet):
        ldm = unet_to_ldm(trained.unet.state_dict(), layers)
        save_file({UNET_PREFIX + k: v.half().contiguous() for k, v in ldm.items()},
                  os.path.join(output_dir, "unet.safetensors"),
                  metadata={"format": "dreamoving.unet", "version": "1", "steps": str(config.steps)})
        write_checkpoint(os.path.join(output_dir, "checkpoint.safetensors"), ldm, parts.vae.state_dict())

    model = ImageUNet(parts.unet)
    return run_training(config, parts, model, parts.unet, lambda m, i, s, d: image_loss(m, parts, i, s, d), export,
                        dataset, output_dir, resume, log).unet


def _git_commit() -> str:
    import subprocess

    done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.abspath(__file__)))
    return done.stdout.strip() if done.returncode == 0 else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.embedded", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="part", required=True)
    unet = sub.add_parser("unet", help="train the image U-Net")
    unet.add_argument("--data", required=True, help="a dataset written by python -m train.dancers")
    unet.add_argument("--vae", required=True, help="taesd.safetensors from python -m train.vae_training")
    unet.add_argument("--output", required=True)
    unet.add_argument("--tokenizer-dir", help="where the CLIP tokenizer files are written (default: in --output)")
    unet.add_argument("--steps", type=int, default=BASE_CONFIG.steps)
    unet.add_argument("--batch", type=int, default=BASE_CONFIG.batch_size)
    unet.add_argument("--lr", type=float, default=BASE_CONFIG.lr)
    unet.add_argument("--resume", action="store_true")
    every = sub.add_parser("all", help="train every part from nothing (resumable) and export the shipped files")
    every.add_argument("--out", required=True, help="the run's folder (parts already exported there are kept)")
    every.add_argument("--small", action="store_true", help="the small configuration CI runs")
    every.add_argument("--export", help="write the shipped files here (e.g. weights/embedded)")
    every.add_argument("--ablations", action="store_true", help="then train what the evaluation compares against "
                       "(the Video ControlNet without motion blocks)")
    args = parser.parse_args(argv)
    if args.part == "all":
        from .embedded_recipe import FULL, SMALL, export_weights, run_ablations, run_all

        recipe = SMALL if args.small else FULL
        paths = run_all(args.out, recipe)
        if args.export:
            export_weights(paths, args.export, recipe, _git_commit())
        if args.ablations:
            run_ablations(args.out, recipe)
        return 0
    from .dancers import DancerImages

    config = BASE_CONFIG.with_overrides(dict(steps=args.steps, batch_size=args.batch, lr=args.lr))
    parts = base_parts(args.vae, args.tokenizer_dir or os.path.join(args.output, "tokenizer"))
    train_base_unet(config, parts, DancerImages(args.data, "train"), args.output, args.resume)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
