"""Run a training stage (DESIGN §1). One process:

    python -m train.run --stage 2 --sd15 SD15_DIFFUSERS_FOLDER --motion-init mm_sd_v15.ckpt \\
        --videos-csv results_2M_val.csv --videos-dir videos/ --output runs/stage2 [--config my.json] [--resume]

Several GPUs or nodes: the same arguments under ``torchrun --nproc_per_node N [--nnodes M ...] -m train.run``
(accelerate picks up the distributed environment; the global batch is split over the processes).
Stages 1 and 3 are not implemented yet; 4 reuses stage 2's loop once the Video ControlNet is in it.
"""
from __future__ import annotations

import argparse

from dreamoving.motion_files import load_motion_model

from .config import load_config
from .data import WebVidClips
from .motion_training import train_motion
from .sd15 import SD15_UNET, load_sd15


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", type=int, choices=[2], required=True)
    parser.add_argument("--sd15", required=True, help="SD1.5 in the diffusers layout (vae/, text_encoder/, tokenizer/, unet/)")
    parser.add_argument("--unet-file", help="take the U-Net from a single-file SD1.5 checkpoint instead")
    parser.add_argument("--motion-init", required=True, help="AnimateDiff motion module to start from (mm_sd_v15*.ckpt)")
    parser.add_argument("--videos-csv", required=True)
    parser.add_argument("--videos-dir", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--config", help="JSON file overriding the paper's settings")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output")
    args = parser.parse_args(argv)
    config = load_config(args.stage, args.config, steps=args.steps)
    parts = load_sd15(args.sd15, args.unet_file, SD15_UNET)
    motion = load_motion_model(args.motion_init, pe_len=max(64, config.frames))
    dataset = WebVidClips(args.videos_csv, args.videos_dir, config.frames, config.resolution)
    train_motion(config, parts, motion, dataset, args.output, resume=args.resume)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
