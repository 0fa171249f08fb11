"""API-format prompts built in code for integration tests."""
from __future__ import annotations


def txt2img(ckpt: str, seed: int = 7, steps: int = 3, size: int = 64, batch: int = 1) -> dict:
    """A plain SD1.5 txt2img graph; node "5" is the KSampler, "7" saves the latent."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a dancer on a stage", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": batch}},
        "5": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0],
            "seed": seed, "steps": steps, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal",
            "denoise": 1.0}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": "dmtest/txt2img"}},
        "8": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}},
    }


def motion_video(ckpt: str, motion: str | None, frames: int, size: int = 64, steps: int = 2, seed: int = 3,
                 sampler: str = "DreaMovingSampler", context_length: int = 64, context_overlap: int = 16,
                 beta_schedule: str = "autoselect", latent_file: str | None = None, **sampler_inputs) -> dict:
    """Checkpoint (+ motion U-Net) -> sampler over ``frames``; node "5" samples, "7" saves the latent.

    ``sampler`` is "DreaMovingSampler" or the stock "KSampler"; ``latent_file`` (a .latent in the input
    folder) replaces the empty latent.
    """
    prompt = txt2img(ckpt, seed=seed, steps=steps, size=size, batch=frames)
    model = ["1", 0]
    if motion:
        prompt["10"] = {"class_type": "DreaMovingMotionUNetLoader", "inputs": {
            "model": ["1", 0], "motion_module": motion, "motion_scale": 1.0, "effect": 1.0,
            "beta_schedule": beta_schedule}}
        model = ["10", 0]
    if latent_file:
        prompt["4"] = {"class_type": "LoadLatent", "inputs": {"latent": latent_file}}
    sampler_node = prompt["5"]["inputs"]
    sampler_node["model"] = model
    if sampler == "DreaMovingSampler":
        sampler_node.update({"frames": frames, "width": size, "height": size, "context_length": context_length,
                             "context_overlap": context_overlap, "context_schedule": "static",
                             "fuse_method": "pyramid", "latent": ["4", 0]})
        del sampler_node["latent_image"]
        prompt["5"]["class_type"] = "DreaMovingSampler"
    sampler_node.update(sampler_inputs)
    del prompt["6"], prompt["8"]  # no decode: latents are what the tests compare
    return prompt


def add_video_controlnet(prompt: dict, controlnet: str, frames: int, color: int = 0x336699) -> dict:
    """Put a Video ControlNet (``controlnet``, nodes "20"-"22") on ``frames`` flat control frames between node "5"'s
    conditioning and node "5"."""
    sampler = prompt["5"]["inputs"]
    prompt["20"] = {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": frames,
                                                            "color": color}}
    prompt["21"] = {"class_type": "DreaMovingVideoControlNetLoader", "inputs": {
        "controlnet": controlnet, "motion_module": "none"}}
    prompt["22"] = {"class_type": "DreaMovingVideoControlNetApply", "inputs": {
        "positive": sampler["positive"], "negative": sampler["negative"], "video_controlnet": ["21", 0],
        "control_frames": ["20", 0], "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0,
        "frame_mode": "error"}}
    sampler.update({"positive": ["22", 0], "negative": ["22", 1]})
    return prompt
