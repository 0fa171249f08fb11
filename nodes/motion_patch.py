"""Putting motion blocks into a ComfyUI model without touching globals.

The motion model rides as an additional model of a ModelPatcher clone (loaded/offloaded with the
U-Net), its blocks are inserted into the U-Net's block sequences by a PatcherInjection while the model
is patched, and a forward-timestep-embed handler runs them with the frame count taken from the batch
and ``cond_or_uncond``. Per-model settings live in transformer_options (plain floats, cheap to copy).
"""
from __future__ import annotations

import comfy.model_sampling
from comfy.ldm.modules.attention import SpatialTransformer
from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock
import comfy.patcher_extension
from comfy.patcher_extension import PatcherInjection

from ..dreamoving.motion_module import MotionModel, VanillaTemporalModule
from ..dreamoving.unet_layout import UNetLayout
from .additional_models import riding_patcher
from .attention_choice import short_key_attention
from .context_patch import refuse_unusable_core_windows

MOTION_KEY = "dreamoving_motion"
# ComfyUI's make_beta_schedule names diffusers' "linear" schedule "sqrt_linear", and "scaled_linear" "linear".
COMFY_SCHEDULE = {"linear": "sqrt_linear", "scaled_linear": "linear"}


def unet_layout(model) -> UNetLayout:
    """The block layout of an SD1.5-family ModelPatcher, or a clear error for other model kinds."""
    unet = model.model.diffusion_model
    if not hasattr(unet, "input_blocks") or "channel_mult" not in model.model.model_config.unet_config:
        raise ValueError(f"model: motion blocks need an SD1.5-family U-Net, got {type(model.model).__name__}")
    return UNetLayout.from_config(model.model.model_config.unet_config)


def insert_position(sequence) -> int:
    """After the last SpatialTransformer, else after the first ResBlock (AnimateDiff's placement)."""
    layers = list(sequence)
    attn = [i for i, layer in enumerate(layers) if isinstance(layer, SpatialTransformer)]
    if attn:
        return attn[-1] + 1
    return next(i for i, layer in enumerate(layers) if isinstance(layer, ResBlock)) + 1


def _sequence(unet, layout: UNetLayout, kind: str, block: int, index: int):
    name, position = layout.block_index(kind, block, index)
    return unet.middle_block if name == "middle_block" else getattr(unet, name)[position]


def make_injection(motion: MotionModel, layout: UNetLayout) -> PatcherInjection:
    def inject(patcher):
        unet = patcher.model.diffusion_model
        for kind, block, index, module in motion.placements():
            sequence = _sequence(unet, layout, kind, block, index)
            sequence.insert(insert_position(sequence), module)

    def eject(patcher):
        unet = patcher.model.diffusion_model
        for kind, block, index, _ in motion.placements():
            sequence = _sequence(unet, layout, kind, block, index)
            for i in reversed(range(len(sequence))):
                if isinstance(sequence[i], VanillaTemporalModule):
                    del sequence[i]

    return PatcherInjection(inject=inject, eject=eject)


def run_motion_block(layer, x, emb, context, transformer_options, *args):
    """forward_timestep_embed handler: frames = batch / number of cond/uncond chunks."""
    settings = transformer_options.get(MOTION_KEY, {})
    chunks = len(transformer_options.get("cond_or_uncond") or [0])
    if x.shape[0] % chunks:
        raise ValueError(f"motion blocks: a batch of {x.shape[0]} cannot hold {chunks} equal cond/uncond chunks")
    return layer(x, x.shape[0] // chunks, scale=settings.get("scale", 1.0), effect=settings.get("effect", 1.0),
                 attention=short_key_attention(x.device))


def attach_motion(model, motion: MotionModel, scale: float, effect: float):
    """A clone of ``model`` running ``motion`` after each U-Net block; ``model`` itself is left as it was."""
    layout = unet_layout(model)
    patched = model.clone()
    patched.set_additional_models(MOTION_KEY, [riding_patcher(model, motion)])
    patched.set_injections(MOTION_KEY, [make_injection(motion, layout)])
    options = patched.model_options["transformer_options"]
    handlers = options.get("patches", {}).get("forward_timestep_embed_patch", [])
    if not any(handler is run_motion_block for _, handler in handlers):
        patched.set_model_forward_timestep_embed_patch((VanillaTemporalModule, run_motion_block))
    options[MOTION_KEY] = {"scale": float(scale), "effect": float(effect)}
    patched.remove_wrappers_with_key(comfy.patcher_extension.WrappersMP.PREPARE_SAMPLING, MOTION_KEY)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.PREPARE_SAMPLING, MOTION_KEY,
                                 refuse_unusable_core_windows)
    return patched


def set_beta_schedule(model, schedule: str) -> None:
    """Object-patch ``model_sampling`` to a discrete schedule (diffusers names: "linear", "scaled_linear")."""
    current = model.get_model_object("model_sampling")
    prediction = comfy.model_sampling.V_PREDICTION if isinstance(current, comfy.model_sampling.V_PREDICTION) \
        else comfy.model_sampling.EPS

    class ModelSampling(comfy.model_sampling.ModelSamplingDiscrete, prediction):
        pass

    sampling = ModelSampling(model.model.model_config)
    sampling._register_schedule(beta_schedule=COMFY_SCHEDULE[schedule], linear_start=0.00085, linear_end=0.012)
    model.add_object_patch("model_sampling", sampling)

