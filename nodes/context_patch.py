"""Sliding context windows with frames as the batch dimension, as a calc_cond_batch wrapper.

ComfyUI's own handler assumes a time dimension other than the batch and leaves ControlNet hints
whole; here every per-frame thing (latent, timesteps, conditioning tensors, ControlNet hints) is cut
to the window's frame indices, for cond and uncond alike, and window outputs are fused by weight.
"""
from __future__ import annotations

import torch

import comfy.model_management
import comfy.patcher_extension

from ..dreamoving.context_windows import ContextOptions, context_windows, fuse_weights

WRAPPER_KEY = "dreamoving_context_windows"


def _frames_only(dim: int) -> None:
    if dim != 0:
        raise ValueError(f"Context Windows: dim {dim} cuts the latent along a non-frame axis; SD1.5 videos hold "
                         f"their frames in the batch, so set dim to 0 (or use DreaMoving Sampler)")


def core_frame_window(transformer_options: dict):
    """The window of core's Context Windows node in effect, if any; an error unless it cuts frames (dim 0)."""
    window = transformer_options.get("context_window")
    if window is not None:
        _frames_only(getattr(window, "dim", 0))
    return window


def check_core_context_handler(handler, frames: int) -> None:
    """Refuse, before sampling, core context windows that cannot cut a ``frames``-frame SD1.5 video: another dim,
    or a host whose handler matches one timestep per sample (v0.3.64 fails on frames in the batch). The host's own
    ``set_step`` is asked with a batch of two timesteps."""
    if frames <= getattr(handler, "context_length", frames):
        return  # the video fits one window: core runs it whole
    _frames_only(getattr(handler, "dim", 0))
    step = getattr(handler, "_step", 0)
    try:
        handler.set_step(torch.ones(2), {"transformer_options": {"sample_sigmas": torch.tensor([2.0, 1.0, 0.0])}})
    except RuntimeError:
        raise ValueError("Context Windows: this ComfyUI's context windows need one timestep per video, but SD1.5 "
                         "videos hold their frames in the batch; use DreaMoving Sampler (or ComfyUI 0.33 or newer)")
    finally:
        handler._step = step


def refuse_unusable_core_windows(executor, model, noise_shape, *args, **kwargs):
    """PREPARE_SAMPLING wrapper of the motion MODEL: ``check_core_context_handler`` on core's handler, if any."""
    model_options = kwargs.get("model_options", args[1] if len(args) > 1 else None) or {}
    handler = model_options.get("context_handler")
    if handler is not None:
        check_core_context_handler(handler, noise_shape[0])
    return executor(model, noise_shape, *args, **kwargs)


def _window_value(value, index: torch.Tensor, frames: int):
    """``value`` cut to the window where it has one entry per frame, else ``value`` itself."""
    if isinstance(value, torch.Tensor):
        return value[index.to(value.device)] if value.ndim and value.shape[0] == frames else value
    cond = getattr(value, "cond", None)
    if isinstance(cond, torch.Tensor) and cond.ndim and cond.shape[0] == frames and hasattr(value, "_copy_with"):
        return value._copy_with(cond[index.to(cond.device)])
    return value


class WindowedCondBatch:
    """Runs calc_cond_batch window by window when the video is longer than the context length."""

    def __init__(self, options: ContextOptions):
        self.options = options

    def __call__(self, executor, model, conds, x_in, timestep, model_options):
        frames = x_in.shape[0]
        if frames <= self.options.length:
            return executor(model, conds, x_in, timestep, model_options)
        outputs = [torch.zeros_like(x_in) for _ in conds]
        totals = torch.zeros(frames, device=x_in.device, dtype=x_in.dtype)
        for window in context_windows(frames, self.options, self._step(timestep, model_options)):
            comfy.model_management.throw_exception_if_processing_interrupted()
            index = torch.tensor(window, device=x_in.device)
            copies = {}  # id(control) -> its window copy, shared by cond and uncond so that they still batch
            sub_conds = [None if c is None else [self._window_cond(d, index, frames, model, copies) for d in c]
                         for c in conds]
            sub_out = executor(model, sub_conds, x_in[index], timestep[index], model_options)
            weights = fuse_weights(window, frames, self.options).to(x_in)
            for out, sub in zip(outputs, sub_out):
                out[index] += sub * weights.view(-1, *[1] * (x_in.ndim - 1))
            totals[index] += weights
        return [out / totals.view(-1, *[1] * (x_in.ndim - 1)) for out in outputs]

    @staticmethod
    def _step(timestep, model_options) -> int:
        sigmas = model_options.get("transformer_options", {}).get("sample_sigmas")
        if sigmas is None:
            return 0
        match = torch.nonzero(torch.isclose(sigmas, timestep[0].to(sigmas), rtol=1e-4))
        return int(match[0]) if len(match) else 0

    def _window_cond(self, cond: dict, index, frames, model, copies: dict) -> dict:
        out = {}
        for key, value in cond.items():
            if key == "control" and value is not None:
                out[key] = self._window_control(value, index, frames, model, copies)
            elif isinstance(value, dict):
                out[key] = {k: _window_value(v, index, frames) for k, v in value.items()}
            else:
                out[key] = _window_value(value, index, frames)
        return out

    def _window_control(self, control, index, frames, model, copies: dict):
        """A copy of ``control`` (and its chain) whose per-frame hints are the window's. Made for each window
        evaluation and dropped after it, so prepared hints never pile up over windows or steps: memory stays
        that of one window whatever the video length."""
        copy = copies.get(id(control))
        if copy is None:
            copy = copies[id(control)] = self._copy_chain(control, index, frames)
            copy.pre_run(model, model.model_sampling.percent_to_sigma)
        return copy

    def _copy_chain(self, control, index, frames):
        if hasattr(control, "window_copy"):  # our Video ControlNet: fits control frames and mask first
            copy = control.window_copy(index.cpu(), frames)
        else:
            copy = control.copy()
            copy.cond_hint_original = _window_value(control.cond_hint_original, index.cpu(), frames)
        if control.previous_controlnet is not None:
            copy.set_previous_controlnet(self._copy_chain(control.previous_controlnet, index, frames))
        return copy


def _cap_memory_estimate(options: ContextOptions):
    def prepare_sampling(executor, model, noise_shape, *args, **kwargs):
        noise_shape = list(noise_shape)
        noise_shape[0] = min(noise_shape[0], options.length)
        return executor(model, noise_shape, *args, **kwargs)

    return prepare_sampling


def attach_context_windows(model, options: ContextOptions):
    """A clone of ``model`` that samples long videos window by window (memory estimated per window)."""
    patched = model.clone()
    patched.remove_wrappers_with_key(comfy.patcher_extension.WrappersMP.CALC_COND_BATCH, WRAPPER_KEY)
    patched.remove_wrappers_with_key(comfy.patcher_extension.WrappersMP.PREPARE_SAMPLING, WRAPPER_KEY)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.CALC_COND_BATCH, WRAPPER_KEY,
                                 WindowedCondBatch(options))
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.PREPARE_SAMPLING, WRAPPER_KEY,
                                 _cap_memory_estimate(options))
    return patched
