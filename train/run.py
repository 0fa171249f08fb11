"""Run a training stage (DESIGN §1). One process:

    python -m train.run --stage 2 --sd15 SD15_DIFFUSERS_FOLDER --motion-init mm_sd_v15.ckpt \\
        --videos-csv results_2M_val.csv --videos-dir videos/ --output runs/stage2 [--config my.json] [--resume]
    python -m train.run --stage 3 --sd15 SD15_DIFFUSERS_FOLDER --unet-motion runs/stage2/motion_module.safetensors \\
        --motion-init mm_sd_v15.ckpt --videos-csv dance.csv --videos-dir clips/ --controls-dir poses/ \\
        --output runs/stage3 [--controlnet DIFFUSERS_CONTROLNET_FOLDER]

Several GPUs or nodes: the same arguments under ``torchrun --nproc_per_node N [--nnodes M ...] -m train.run``
(accelerate picks up the distributed environment; the global batch is split over the processes).
Stage 3 starts the ControlNet from ``--controlnet`` (diffusers layout) or from the U-Net's weights, and its
motion blocks from ``--motion-init``'s encoder and middle blocks. Stage 4 takes the same data plus
``--video-controlnet`` (stage 3's export, frozen) and trains the U-Net's motion blocks. Stage 1:

    python -m train.run --stage 1 --sd15 SD15_DIFFUSERS_FOLDER --images people/ --clip-vision CLIP_VIT_H_FOLDER \\
        --insightface INSIGHTFACE_ROOT --output runs/stage1
"""
from __future__ import annotations

import argparse

from dreamoving.controlnet_files import encoder_motion_state
from dreamoving.motion_files import load_motion_model, motion_model_from_state_dict
from dreamoving.weights import read_state_dict

from .config import load_config
from .data import ControlledClips, WebVidClips
from .motion_training import train_expression, train_motion, train_video_controlnet
from .motion_unet import VideoControlNetModel, controlnet_from_ldm
from .sd15 import SD15_UNET, load_sd15


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", type=int, choices=[1, 2, 3, 4], required=True)
    parser.add_argument("--sd15", required=True, help="SD1.5: a diffusers-layout folder, or a single-file checkpoint "
                                                      "(then also --tokenizer)")
    parser.add_argument("--tokenizer", help="CLIP tokenizer folder for a single-file --sd15 (e.g. ComfyUI/comfy/sd1_tokenizer)")
    parser.add_argument("--motion-init", help="stages 2, 3: AnimateDiff motion module to start from (mm_sd_v15*.ckpt)")
    parser.add_argument("--videos-csv", help="stages 2-4: WebVid-style CSV (videoid, name)")
    parser.add_argument("--videos-dir", help="stages 2-4: folder of <videoid>.mp4")
    parser.add_argument("--images", help="stage 1: folder of person images with .txt captions")
    parser.add_argument("--shards", nargs="+", help="stage 1: webdataset .tar shards, unpacked into --images first")
    parser.add_argument("--clip-vision", help="stage 1: CLIP ViT-H/14: a transformers folder (IP-Adapter's "
                                              "image_encoder) or an OpenCLIP checkpoint file")
    parser.add_argument("--insightface", help="stage 1: insightface root (packs under <root>/models/)")
    parser.add_argument("--insightface-pack", default="buffalo_l")
    parser.add_argument("--face-init", help="stage 1: start the face stream from an IP-Adapter file (e.g. FaceID-PlusV2)")
    parser.add_argument("--cloth-init", help="stage 1: start the cloth stream from an IP-Adapter file (e.g. Plus)")
    parser.add_argument("--controls-dir", help="stages 3, 4: control videos (pose renders / depth), one per clip")
    parser.add_argument("--unet-motion", help="stages 3, 4: the U-Net's motion module (stage 2's export)")
    parser.add_argument("--controlnet", help="stage 3: an SD1.5 ControlNet to start from: a file (LDM keys, e.g. "
                                             "control_v11p_sd15_openpose.pth) or a diffusers folder")
    parser.add_argument("--video-controlnet", help="stage 4: the Video ControlNet (stage 3's export)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--config", help="JSON file overriding the paper's settings")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output")
    args = parser.parse_args(argv)
    config = load_config(args.stage, args.config, steps=args.steps)
    parts = load_sd15(args.sd15, args.tokenizer, SD15_UNET)
    if args.stage == 1:
        return _stage1(parser, args, config, parts)
    if not (args.videos_csv and args.videos_dir):
        parser.error(f"stage {args.stage} needs --videos-csv and --videos-dir")
    pe_len = max(64, config.frames)
    if args.stage == 2:
        if not args.motion_init:
            parser.error("stage 2 needs --motion-init")
        dataset = WebVidClips(args.videos_csv, args.videos_dir, config.frames, config.resolution)
        train_motion(config, parts, load_motion_model(args.motion_init, pe_len), dataset, args.output, args.resume)
        return 0
    if not (args.controls_dir and args.unet_motion):
        parser.error(f"stage {args.stage} needs --controls-dir and --unet-motion")
    dataset = ControlledClips(args.videos_csv, args.videos_dir, args.controls_dir, config.frames, config.resolution)
    if args.stage == 4:
        if not args.video_controlnet:
            parser.error("stage 4 needs --video-controlnet (stage 3's export)")
        train_expression(config, parts, load_motion_model(args.unet_motion, pe_len),
                         VideoControlNetModel.from_file(args.video_controlnet, parts.unet), dataset, args.output,
                         args.resume)
        return 0
    import os

    from diffusers import ControlNetModel

    if args.controlnet and os.path.isfile(args.controlnet):
        controlnet = controlnet_from_ldm(read_state_dict(args.controlnet)[0], parts.unet)
    elif args.controlnet:
        controlnet = ControlNetModel.from_pretrained(args.controlnet, local_files_only=True)
    else:
        controlnet = ControlNetModel.from_unet(parts.unet)
    state, metadata = read_state_dict(args.motion_init)
    controlnet_motion = motion_model_from_state_dict(encoder_motion_state(state), metadata, args.motion_init, pe_len)
    train_video_controlnet(config, parts, load_motion_model(args.unet_motion, pe_len), controlnet, controlnet_motion,
                           dataset, args.output, args.resume)
    return 0


def _stage1(parser, args, config, parts) -> int:
    if not (args.images and args.clip_vision and args.insightface):
        parser.error("stage 1 needs --images, --clip-vision and --insightface")
    import glob
    import os

    import torch
    from dreamoving.face_analysis import FaceAnalyzer, onnx_providers
    from dreamoving.guider_files import load_content_guider

    from .guider_training import GuiderImages, load_clip_vision, new_content_guider, prepare_features, train_guider

    if args.shards:
        from .prepare import unpack_webdataset

        unpack_webdataset(args.shards, args.images)
    if not glob.glob(os.path.join(args.images, "*.features.safetensors")):
        device = "cuda" if torch.cuda.is_available() else "cpu"
        analyzer = FaceAnalyzer(args.insightface, args.insightface_pack, onnx_providers(device))
        prepare_features(args.images, args.clip_vision, analyzer)
    clip_dim = load_clip_vision(args.clip_vision)[0].config.hidden_size
    guider = new_content_guider(parts.unet, clip_dim)
    for stream, path in (("face", args.face_init), ("cloth", args.cloth_init)):
        if path:
            guider = guider.with_streams_of(load_content_guider(path, stream))
    train_guider(config, parts, guider, GuiderImages(args.images, config.resolution), args.output, args.resume)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
