"""The embedded DreaMoving: a small SD1.5-detected model trained by ``train/`` on rendered dancers, which the
pack carries so the main job makes a real video with no download.

What is trained and shipped: the U-Net, the TAESD-shaped VAE, the Video ControlNet, the motion modules and the
Content Guider. What is generated at set-up (bit-identical everywhere, checked by digest): the CLIP-L text
encoder, which ComfyUI needs full-shaped to detect SD1.5 (123M parameters would not fit the repository), and
which stays frozen at its seeded values in training too. ComfyUI detects SD1.5 from ``model_channels`` 320 and
``context_dim`` 768; one level with one res block keeps the U-Net at 26M parameters.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os

from .packed_weights import unpack_file
from .seeded_weights import seeded_init, tensor_digest

# The U-Net, as the LDM config train/sd15.py reads (one level at 320 channels, attention in it and the middle)
UNET_CONFIG = dict(in_channels=4, out_channels=4, model_channels=320, attention_resolutions=[1], num_res_blocks=1,
                   channel_mult=[1], num_heads=8, use_spatial_transformer=True, transformer_depth=1, context_dim=768,
                   legacy=False)
TEXT_ENCODER_PREFIX = "cond_stage_model.transformer.text_model."
TEXT_ENCODER_SEED = 20231208  # DreaMoving's arXiv date
TEXT_ENCODER_DIGEST = "5cc27812b9f95164773ef6d5d953dd2db90e8bd87b224cd6b1687e73aa2dd62c"
_CLIP_L = dict(width=768, layers=12, mlp=3072, vocab=49408, positions=77)


def text_encoder_shapes() -> dict[str, tuple[int, ...]]:
    """CLIP-L's text transformer (OpenAI ViT-L/14), in the key layout SD1.5 checkpoints store it."""
    w, m = _CLIP_L["width"], _CLIP_L["mlp"]
    shapes = {"embeddings.token_embedding.weight": (_CLIP_L["vocab"], w),
              "embeddings.position_embedding.weight": (_CLIP_L["positions"], w),
              "final_layer_norm.weight": (w,), "final_layer_norm.bias": (w,)}
    for i in range(_CLIP_L["layers"]):
        layer = f"encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes.update({f"{layer}self_attn.{proj}.weight": (w, w), f"{layer}self_attn.{proj}.bias": (w,)})
        for norm in ("layer_norm1", "layer_norm2"):
            shapes.update({f"{layer}{norm}.weight": (w,), f"{layer}{norm}.bias": (w,)})
        shapes.update({f"{layer}mlp.fc1.weight": (m, w), f"{layer}mlp.fc1.bias": (m,),
                       f"{layer}mlp.fc2.weight": (w, m), f"{layer}mlp.fc2.bias": (w,)})
    return {TEXT_ENCODER_PREFIX + k: v for k, v in shapes.items()}


def generated_text_encoder(check: bool = True) -> dict:
    """The seeded CLIP-L text encoder (fp16, checkpoint keys); ``check`` compares it with the recorded digest."""
    tensors = seeded_init(text_encoder_shapes(), TEXT_ENCODER_SEED)
    if check and (digest := tensor_digest(tensors)) != TEXT_ENCODER_DIGEST:
        raise RuntimeError(f"the generated text encoder differs from the recorded one (digest {digest}, expected "
                           f"{TEXT_ENCODER_DIGEST}): this machine's numpy or torch computes it differently")
    return tensors


# The shipped files (weights/embedded/, packed by dreamoving.packed_weights; written by python -m train.embedded all)
# and where they are installed: {shipped name: (folder under ComfyUI/models, installed name)}
BASE_FILE = "dreamoving_embedded_base.safetensors"          # U-Net + VAE; the text encoder is added at install
MOTION_FILE = "dreamoving_embedded_motion.safetensors"
CONTROLNET_FILE = "dreamoving_embedded_video_controlnet.safetensors"
GUIDER_FILE = "dreamoving_embedded_content_guider.safetensors"
MANIFEST = "manifest.json"
CHECKPOINT_NAME = "dreamoving_embedded.safetensors"
INSTALLED = {BASE_FILE: ("checkpoints", CHECKPOINT_NAME), MOTION_FILE: ("animatediff_models", MOTION_FILE),
             CONTROLNET_FILE: ("controlnet", CONTROLNET_FILE), GUIDER_FILE: ("dreamoving", GUIDER_FILE)}


def file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def install_file(name: str, packed_path: str, target: str) -> None:
    """One shipped file unpacked to where ComfyUI loads it (the base gets the generated text encoder)."""
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    unpack_file(packed_path, target + ".partial", generated_text_encoder() if name == BASE_FILE else None)
    os.replace(target + ".partial", target)


def install_embedded(weights_dir: str, models_dir: str, log=print) -> dict[str, str]:
    """Install the shipped embedded model into ComfyUI's model folders under ``models_dir``, each file checked
    against the manifest's digest. Files already installed from the same shipped file are kept. Returns
    {shipped name: installed path}."""
    with open(os.path.join(weights_dir, MANIFEST), encoding="utf-8") as f:
        manifest = json.load(f)
    installed = {}
    for name, (folder, target_name) in INSTALLED.items():
        source = os.path.join(weights_dir, name)
        if not os.path.exists(source):
            raise FileNotFoundError(f"embedded model: '{source}' is missing (the repository ships it; is the "
                                    "checkout complete?)")
        if (digest := file_digest(source)) != manifest["files"][name]:
            raise RuntimeError(f"embedded model: '{source}' has digest {digest}, the manifest records "
                               f"{manifest['files'][name]}")
        target = installed[name] = os.path.join(models_dir, folder, target_name)
        stamp = target + ".source-sha256"
        if os.path.exists(target) and os.path.exists(stamp) and open(stamp, encoding="utf-8").read() == digest:
            continue
        log(f"embedded model: installing {target}")
        install_file(name, source, target)
        with open(stamp, "w", encoding="utf-8") as f:
            f.write(digest)
    return installed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dreamoving.embedded_model",
                                     description="Install the embedded DreaMoving into ComfyUI's model folders.")
    parser.add_argument("--models", required=True, help="ComfyUI's models folder (e.g. ComfyUI/models)")
    parser.add_argument("--weights", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                          "weights", "embedded"), help="the shipped files")
    args = parser.parse_args(argv)
    for path in install_embedded(args.weights, args.models).values():
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
