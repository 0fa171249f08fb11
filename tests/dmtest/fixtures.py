"""Generated test weights in the real file formats (DESIGN §5). Never downloaded; cached by version.

The SD1.5 checkpoints are built from ComfyUI's own module classes (so the LDM key layout is exactly
the one real files have), filled with seeded random values, and written as single-file checkpoints
that ComfyUI detects as SD1.5 (model_channels 320, context_dim 768):

* ``dm_small_sd15.safetensors``: 2 levels x 1 res block, the quick one;
* ``dm_layout_sd15.safetensors``: the real SD1.5 block layout (4 levels x 2 res blocks, attention in
  the first three levels), at 320 channels on every level, so real-layout motion modules fit it.

Both carry a TAESD-shaped VAE (``first_stage_model.taesd_*``) and CLIP-L (``cond_stage_model.``)
stored as float8 to keep the file near 160 MiB. Needs ComfyUI importable (see comfy_host.py).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors.torch import save_file

from dmtest.cache import write_once
from dmtest.comfy_host import cache_root

FIXTURE_VERSION = "2"  # 2: the test-built ONNX graphs are written with IR version 7 (were the onnx default)

_UNET_COMMON = dict(
    image_size=32, in_channels=4, out_channels=4, model_channels=320, context_dim=768,
    num_heads=8, use_spatial_transformer=True, legacy=False, use_linear_in_transformer=False,
    transformer_depth_middle=1, adm_in_channels=None,
)
SMALL_UNET = dict(_UNET_COMMON, num_res_blocks=[1, 1], channel_mult=[1, 1],
                  transformer_depth=[1, 1], transformer_depth_output=[1, 1, 1, 1])
LAYOUT_UNET = dict(_UNET_COMMON, num_res_blocks=[2, 2, 2, 2], channel_mult=[1, 1, 1, 1],
                   transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0],
                   transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0])
SMALL_CKPT = "dm_small_sd15.safetensors"
LAYOUT_CKPT = "dm_layout_sd15.safetensors"
CHECKPOINTS = {SMALL_CKPT: SMALL_UNET, LAYOUT_CKPT: LAYOUT_UNET}
MODEL_KINDS = ("checkpoints", "animatediff_models", "controlnet", "dreamoving", "ipadapter", "clip_vision", "insightface",
               "dwpose", "depth", "geometry_estimation")


def fixture_dir() -> Path:
    return cache_root() / f"fixtures-v{FIXTURE_VERSION}"


def model_folders() -> dict[str, Path]:
    """The fixture folder of every model kind the tests use (created empty where nothing is generated)."""
    folders = {kind: fixture_dir() / kind for kind in MODEL_KINDS}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    return folders


def random_like(shapes: dict[str, torch.Size], seed: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Seeded values with sane scales: norms 1, biases 0, weights N(0, 1/fan_in), embeddings N(0, 0.02)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name in sorted(shapes):
        shape = shapes[name]
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "bias":
            t = torch.zeros(shape)
        elif len(shape) <= 1:
            t = torch.ones(shape) if leaf == "weight" else torch.zeros(shape)
        elif "embedding" in name:
            t = torch.randn(shape, generator=gen) * 0.02
        else:
            t = torch.randn(shape, generator=gen) / math.sqrt(math.prod(shape[1:]))
        out[name] = t.to(dtype)
    return out


def _shapes(module: torch.nn.Module, prefix: str) -> dict[str, torch.Size]:
    return {prefix + k: v.shape for k, v in module.state_dict().items()}


def sd15_checkpoint_tensors(unet_config: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """All tensors of a single-file SD1.5 checkpoint with the given U-Net config."""
    import comfy.ldm.modules.diffusionmodules.openaimodel as openaimodel
    import comfy.sd1_clip
    import comfy.taesd.taesd

    unet = openaimodel.UNetModel(**unet_config, device="meta")
    clip = comfy.sd1_clip.SDClipModel(device="meta")
    with torch.device("meta"):
        vae = comfy.taesd.taesd.TAESD()
    tensors = random_like(_shapes(unet, "model.diffusion_model."), seed, torch.float16)
    tensors.update(random_like(_shapes(vae, "first_stage_model."), seed + 1, torch.float16))
    clip_shapes = {k: s for k, s in _shapes(clip.transformer, "cond_stage_model.transformer.").items()
                   if ".text_model." in k and not k.endswith("position_ids")}
    clip_tensors = random_like(clip_shapes, seed + 2, torch.float32)
    tensors.update({k: v.to(torch.float8_e4m3fn) if v.dim() == 2 else v for k, v in clip_tensors.items()})
    return tensors


def ensure_checkpoints() -> Path:
    """Write the SD1.5 fixture checkpoints once; return the folder that holds them."""
    folder = model_folders()["checkpoints"]
    for seed, (name, config) in enumerate(sorted(CHECKPOINTS.items())):
        path = folder / name
        write_once(path, lambda p, c=config, s=seed: save_file(sd15_checkpoint_tensors(c, s), str(p),
                                                                metadata={"format": "pt"}))
    return folder


SMALL_MM = "dm_small_mm_v2.safetensors"            # fits dm_small_sd15: 2 levels x 1 block, mid block, PE 32
SMALL_MM_ZERO = "dm_small_mm_zero_out.safetensors"  # the same with proj_out zeroed: an exact no-op
LAYOUT_MM_V1 = "dm_layout_mm_v1.ckpt"              # fits dm_layout_sd15: v1 (no mid block, PE 24), train.py wrapper
NOT_MOTION = "dm_not_a_motion_module.safetensors"   # a ControlNet-like file in the motion folder


def ensure_motion_modules() -> Path:
    """Write the AnimateDiff-layout motion modules that fit the fixture checkpoints; return their folder."""
    from dmtest.animatediff import motion_file_tensors

    folder = model_folders()["animatediff_models"]
    small = dict(channels=[320, 320], res_blocks=1, mid=True, pe_len=32, seed=11, dtype=torch.float16)
    writers = {
        SMALL_MM: lambda p: save_file(motion_file_tensors(**small), p),
        SMALL_MM_ZERO: lambda p: save_file(motion_file_tensors(**small, zero_out=True), p),
        LAYOUT_MM_V1: lambda p: torch.save({"state_dict": motion_file_tensors(
            [320] * 4, 2, mid=False, pe_len=24, seed=12, dtype=torch.float16), "global_step": 0}, p),
        NOT_MOTION: lambda p: save_file({"input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3)}, p),
    }
    for name, write in writers.items():
        write_once(folder / name, write)
    return folder


SMALL_CN = "dm_small_controlnet_sd15.safetensors"  # an SD1.5 ControlNet (LDM keys, control_model. prefix)


def controlnet_tensors(unet_config: dict, seed: int) -> dict[str, torch.Tensor]:
    """A ControlNet for ``unet_config`` built from ComfyUI's own class (real key layout), random values."""
    import comfy.cldm.cldm

    config = {k: v for k, v in unet_config.items() if k not in ("out_channels", "transformer_depth_output")}
    control = comfy.cldm.cldm.ControlNet(hint_channels=3, device="meta", **config)
    return random_like(_shapes(control, "control_model."), seed, torch.float16)


def ensure_controlnets() -> Path:
    folder = model_folders()["controlnet"]
    write_once(folder / SMALL_CN, lambda p: save_file(controlnet_tensors(SMALL_UNET, 21), str(p)))
    return folder


VIDEO_CN = "dm_small_video_controlnet.safetensors"            # our format: SMALL_CN + encoder/mid motion blocks
VIDEO_CN_ZERO = "dm_small_video_controlnet_zero_out.safetensors"  # the same with proj_out zeroed


def write_video_controlnet(path: Path, unet_config: dict, zero: bool = False) -> None:
    """Our single-file Video ControlNet for ``unet_config``, written as the format says (not by our writer)."""
    from dmtest.animatediff import motion_file_tensors

    plain = {k.removeprefix("control_model."): v for k, v in controlnet_tensors(unet_config, 21).items()}
    channels = [unet_config["model_channels"] * m for m in unet_config["channel_mult"]]
    res_blocks = unet_config["num_res_blocks"][0]
    motion = motion_file_tensors(channels, res_blocks, mid=True, pe_len=64, seed=13, zero_out=zero, dtype=torch.float16)
    tensors = dict(plain, **{"motion." + k: v for k, v in motion.items() if not k.startswith("up_blocks.")})
    save_file(tensors, str(path), metadata={"format": "dreamoving.video_controlnet", "version": "1",
                                            "motion_heads": "8", "motion_pe_len": "64"})


def ensure_video_controlnets() -> Path:
    """Our single-file Video ControlNets for dm_small_sd15."""
    folder = ensure_controlnets()
    for name, zero in ((VIDEO_CN, False), (VIDEO_CN_ZERO, True)):
        write_once(folder / name, lambda p, z=zero: write_video_controlnet(p, SMALL_UNET, z))
    return folder



CLIP_VISION_H = "dm_clip_vision_vit_h.safetensors"  # full-size ViT-H/14 (random, float8): the native loader's config
GUIDER = "dm_small_content_guider.safetensors"       # ours: FaceID-PlusV2-like face + Plus-like cloth, 7 layers
IPA_PLUS = "dm_small_ip-adapter-plus_sd15.safetensors"
IPA_FACEID_V2 = "dm_small_ip-adapter-faceid-plusv2_sd15.bin"
NOT_GUIDER = "dm_not_a_guider.safetensors"            # a motion-module-like file in the ipadapter folder
SMALL_XATTN = [320] * 7  # cross-attention layers of dm_small_sd15: input 1, 3; output 0-3; middle


def clip_vision_tensors(seed: int = 31) -> dict[str, torch.Tensor]:
    import json

    import comfy.clip_model
    import comfy.clip_vision
    import comfy.ops

    config_path = Path(comfy.clip_vision.__file__).parent / "clip_vision_config_h.json"
    model = comfy.clip_model.CLIPVisionModelProjection(json.loads(config_path.read_text()), torch.float32, "meta",
                                                       comfy.ops.manual_cast)
    shapes = {k: v.shape for k, v in model.state_dict().items() if not k.endswith("position_ids")}
    return {k: v.to(torch.float8_e4m3fn) if v.dim() == 2 else v.half() for k, v in random_like(shapes, seed, torch.float32).items()}


def write_guider(path: str, xattn: list[int] = SMALL_XATTN) -> None:
    """Our Content Guider file for the U-Net with cross-attention layers of ``xattn`` channels (IP-Adapter's
    order; dm_small_sd15's by default), assembled (as the format says) from IP-Adapter-layout streams."""
    from dmtest import ipadapter

    streams = {"face": ipadapter.faceid_plus_tensors(xattn, embedding_dim=1280, seed=41),
               "cloth": ipadapter.plus_tensors(xattn, embedding_dim=1280, seed=42)}
    tensors = {}
    for stream, sd in streams.items():
        for key, value in sd.items():
            if key.startswith("image_proj."):
                tensors[f"image_proj.{stream}.{key[len('image_proj.'):]}"] = value
            else:  # ip_adapter.<2i+1>.to_k_ip.weight -> layers.i.to_k_<stream>.weight
                _, number, name, _ = key.split(".")
                tensors[f"layers.{(int(number) - 1) // 2}.{name[:4]}_{stream}.weight"] = value
    metadata = {"format": "dreamoving.content_guider", "version": "1", "face_kind": "faceid_plus",
                "cloth_kind": "resampler", "face_shortcut": "true", "face_shortcut_scale": "1.0"}
    save_file(tensors, path, metadata=metadata)


def ensure_guiders() -> None:
    from dmtest import insightface_packs, ipadapter

    folders = model_folders()
    jobs = {
        folders["clip_vision"] / CLIP_VISION_H: lambda p: save_file(clip_vision_tensors(), p),
        folders["dreamoving"] / GUIDER: write_guider,
        folders["ipadapter"] / IPA_PLUS: lambda p: save_file(
            ipadapter.plus_tensors(SMALL_XATTN, embedding_dim=1280, seed=43), p),
        folders["ipadapter"] / IPA_FACEID_V2: lambda p: torch.save(ipadapter.as_bin(
            ipadapter.faceid_plus_tensors(SMALL_XATTN, embedding_dim=1280, seed=44)), p),
        folders["ipadapter"] / NOT_GUIDER: lambda p: save_file(
            {"down_blocks.0.motion_modules.0.temporal_transformer.norm.weight": torch.ones(320)}, p),
    }
    for path, write in jobs.items():
        write_once(path, write)
    insightface_packs.ensure_pack(folders["insightface"])


def ensure_control_models() -> None:
    from dmtest import control_models

    folders = model_folders()
    control_models.ensure_control_models(folders["dwpose"], folders["depth"])


def ensure_core_models() -> None:
    """The SDPose and Depth Anything 3 stand-ins for core ComfyUI's nodes, written where the host has those (0.33+);
    only the ``_core`` workflow's test uses them, so ``ensure_all`` (also run by the demo and benchmarks) does not."""
    from dmtest import core_models

    folders = model_folders()
    core_models.ensure_core_models(folders["checkpoints"], folders["geometry_estimation"])


def real_to_fixture_names() -> dict[str, str]:
    """The real weight names the shipped workflows use -> the generated stand-ins."""
    from dmtest.control_models import DEPTH_MODEL
    from dmtest.core_models import DA3_MODEL, SDPOSE_CKPT

    return {"v1-5-pruned-emaonly.safetensors": SMALL_CKPT, "mm_sd_v15_v2.ckpt": SMALL_MM,
            "control_v11p_sd15_openpose.pth": SMALL_CN, "control_v11f1p_sd15_depth.pth": SMALL_CN,
            "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors": CLIP_VISION_H,
            "ip-adapter-faceid-plusv2_sd15.bin": IPA_FACEID_V2, "ip-adapter-plus_sd15.safetensors": IPA_PLUS,
            "depth-anything-small-hf": DEPTH_MODEL,
            "sdpose_wholebody_fp16.safetensors": SDPOSE_CKPT, "depth_anything_3_mono_large.safetensors": DA3_MODEL}


def on_fixtures(workflow: dict, size: int = 64, steps: int = 2) -> dict:
    """An API workflow with the generated models, ``size``-pixel frames and ``steps`` steps."""
    names = real_to_fixture_names()
    out = {}
    for node_id, node in workflow.items():
        inputs = {k: names.get(v, v) if isinstance(v, str) else v for k, v in node["inputs"].items()}
        if node["class_type"] == "DreaMovingSampler":
            inputs.update({"width": size, "height": size, "steps": steps})
        out[node_id] = {"class_type": node["class_type"], "inputs": inputs}
    return out


def ensure_all() -> None:
    """Every generated model the integration tests, the benchmarks and the demo use."""
    for ensure in (ensure_checkpoints, ensure_motion_modules, ensure_video_controlnets, ensure_guiders,
                   ensure_control_models):
        ensure()


def write_demo_inputs(folder: Path) -> tuple[Path, Path]:
    """reference.png (a face and a person the test models find) and driving.mp4 (12 bright 160x160 frames)."""
    import numpy as np
    from PIL import Image

    from dmtest.insightface_packs import face_image
    from train.prepare import write_video

    folder.mkdir(parents=True, exist_ok=True)
    reference, driving = folder / "reference.png", folder / "driving.mp4"
    Image.fromarray(face_image(0)).save(reference)
    write_video(str(driving), np.stack([np.full((160, 160, 3), 190 + i, np.uint8) for i in range(12)]), 8)
    return reference, driving


FULL_CKPT = "dm_full_sd15.safetensors"   # the real SD1.5 U-Net size (random), for benchmarks only
FULL_MM = "dm_full_mm_v2.safetensors"    # a motion module the size of mm_sd_v15_v2 (random)
FULL_CN = "dm_full_controlnet_sd15.safetensors"          # an SD1.5 ControlNet, real size (random)
FULL_VIDEO_CN = "dm_full_video_controlnet.safetensors"  # the same + motion blocks of mm_sd_v15_v2's size
FULL_GUIDER = "dm_full_content_guider.safetensors"      # a Content Guider for the real SD1.5 U-Net (random)
FULL_UNET = dict(_UNET_COMMON, num_res_blocks=[2, 2, 2, 2], channel_mult=[1, 2, 4, 4],
                 transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0],
                 transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0])
# SD1.5's 16 cross-attention layers in IP-Adapter's order: input blocks, output blocks, middle block
FULL_XATTN = [320, 320, 640, 640, 1280, 1280] + [1280] * 3 + [640] * 3 + [320] * 3 + [1280]


def ensure_full_sd15() -> None:
    """Real-size SD1.5 checkpoint, motion module, ControlNet, Video ControlNet and Content Guider (about 5 GB);
    for the benchmarks, not used by the tests."""
    from dmtest.animatediff import SD15_CHANNELS, motion_file_tensors

    folders = model_folders()
    jobs = {folders["checkpoints"] / FULL_CKPT: lambda p: save_file(sd15_checkpoint_tensors(FULL_UNET, 5), p),
            folders["animatediff_models"] / FULL_MM: lambda p: save_file(
                motion_file_tensors(SD15_CHANNELS, 2, mid=True, pe_len=32, seed=6, dtype=torch.float16), p),
            folders["controlnet"] / FULL_CN: lambda p: save_file(controlnet_tensors(FULL_UNET, 21), p),
            folders["controlnet"] / FULL_VIDEO_CN: lambda p: write_video_controlnet(p, FULL_UNET),
            folders["dreamoving"] / FULL_GUIDER: lambda p: write_guider(p, FULL_XATTN)}
    for path, write in jobs.items():
        write_once(path, write)


SINGLE_FILE_SD15 = "dm_small_sd15_with_kl_vae.safetensors"  # dm_small_sd15 with an SD1.5-shaped KL VAE instead of TAESD
SD15_DDCONFIG = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                 "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}


def ensure_single_file_sd15() -> Path:
    """A single-file SD1.5 checkpoint as users have them: LDM U-Net, AutoencoderKL VAE, CLIP-L (training tests)."""
    import comfy.ldm.models.autoencoder

    def write(path: Path):
        tensors = {k: v for k, v in sd15_checkpoint_tensors(SMALL_UNET, 0).items() if not k.startswith("first_stage_model.")}
        with torch.device("meta"):
            vae = comfy.ldm.models.autoencoder.AutoencoderKL(ddconfig=SD15_DDCONFIG, embed_dim=4)
        tensors.update(random_like(_shapes(vae, "first_stage_model."), 3, torch.float16))
        save_file(tensors, str(path))

    return write_once(model_folders()["checkpoints"] / SINGLE_FILE_SD15, write)
