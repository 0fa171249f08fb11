"""A tiny SD1.5-shaped diffusers folder, an AnimateDiff-layout motion init and WebVid-style clips, for
training tests on CPU (built here, no downloads)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from dmtest.animatediff import motion_file_tensors

TINY_UNET = dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
                 down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                 attention_head_dim=8, norm_num_groups=32)
# the layout of dm_small_sd15 (the node-side fixture): what a motion module must fit there
SMALL_LAYOUT_UNET = dict(TINY_UNET, block_out_channels=(320, 320), cross_attention_dim=768)


def write_sd15_folder(folder: Path, unet_config: dict = TINY_UNET, seed: int = 0) -> Path:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    UNet2DConditionModel(**unet_config).save_pretrained(folder / "unet")
    AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                  block_out_channels=(32, 32), latent_channels=4, norm_num_groups=32, sample_size=32
                  ).save_pretrained(folder / "vae")
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1} | {t: i + 2 for i, t in enumerate(
        [c for c in letters] + [c + "</w>" for c in letters])}
    (folder / "tok").mkdir(parents=True, exist_ok=True)
    (folder / "tok" / "vocab.json").write_text(json.dumps(vocab))
    (folder / "tok" / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(folder / "tok" / "vocab.json"), str(folder / "tok" / "merges.txt"),
                  model_max_length=16).save_pretrained(folder / "tokenizer")
    CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=unet_config["cross_attention_dim"],
                                 intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                 max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1)
                  ).save_pretrained(folder / "text_encoder")
    return folder


def write_motion_init(path: Path, unet_config: dict = TINY_UNET) -> Path:
    """A freshly initialised (proj_out zero) AnimateDiff v2-layout module for ``unet_config``."""
    from safetensors.torch import save_file

    channels = list(unet_config["block_out_channels"])
    save_file(motion_file_tensors(channels, unet_config["layers_per_block"], mid=True, pe_len=32, seed=3,
                                  zero_out=True), str(path))
    return path


def write_clips(folder: Path, count: int = 2, frames: int = 8, size: int = 40) -> tuple[Path, Path]:
    """``count`` mp4 clips of a moving square and a WebVid-style CSV (videoid, name)."""
    from train.prepare import write_video

    videos = folder / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    rows = ["videoid,name"]
    for clip in range(count):
        images = np.full((frames, size, size, 3), 40 * clip, np.uint8)
        for f in range(frames):
            images[f, 10:20, 2 + 3 * f:12 + 3 * f] = 255
        write_video(str(videos / f"{clip}.mp4"), images, 8)
        rows.append(f"{clip},a square moving {'left' if clip else 'right'}")
    csv = folder / "clips.csv"
    csv.write_text("\n".join(rows) + "\n")
    return csv, videos


def write_clip_vision_folder(folder: Path, hidden: int = 32) -> Path:
    """A tiny CLIP vision model (with projection) and its image processor, saved as transformers does."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(1)
    CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=hidden, intermediate_size=64, num_hidden_layers=3,
                                                   num_attention_heads=2, image_size=32, patch_size=8,
                                                   projection_dim=16)).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def write_person_images(folder: Path, count: int = 2) -> Path:
    """Bright images with a face the test insightface pack finds, and their captions."""
    from PIL import Image

    from dmtest.insightface_packs import face_image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(face_image(i)).save(folder / f"person{i}.png")
        (folder / f"person{i}.txt").write_text(f"a person number {'one' if i else 'zero'}")
    return folder
