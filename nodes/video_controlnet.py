"""The Video ControlNet as a ``comfy.controlnet.ControlNet`` subclass: chaining, memory management and
the native apply nodes keep working. Its network is ComfyUI's ControlNet with a motion block after each
encoder block and after the middle attention; the frame count comes from the batch and the number of
cond/uncond chunks at every call.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

import comfy.controlnet
import comfy.ops
from comfy.ldm.modules.diffusionmodules.util import timestep_embedding

from ..dreamoving.controlnet_files import read_video_controlnet
from ..dreamoving.frames import fit_frames
from ..dreamoving.motion_files import motion_model_from_state_dict
from ..dreamoving.motion_module import MotionModel
from ..dreamoving.unet_layout import UNetLayout
from .attention_choice import short_key_attention
from .context_patch import core_frame_window
from .motion_patch import insert_position


class HintMemo:
    """The hint block's output for one set of control frames (``source``), computed once and reused for every
    step and cond/uncond chunk. Keyed by all else it depends on (rows per chunk, size, dtype, device), not by
    the prepared hint tensor, so it hits however the host keeps its prepared hints (one ``cond_hint``, or one
    per latent size rebuilt or re-broadcast per call)."""

    def __init__(self, source: torch.Tensor):
        self.source, self.key, self.value = source, None, None

    def get(self, hint: torch.Tensor, hint_frames: int, compute) -> torch.Tensor:
        key = (hint_frames, tuple(hint.shape[1:]), hint.dtype, hint.device)
        if key != self.key:
            self.key, self.value = key, compute(hint[:hint_frames])
        return self.value


class VideoControlModel(torch.nn.Module):
    """ComfyUI's ControlNet network run block by block with the motion blocks in between."""

    def __init__(self, control: torch.nn.Module, motion: MotionModel | None, layout: UNetLayout):
        super().__init__()
        self.control = control
        self.motion = motion
        self.dtype = control.dtype
        self.mid_split = insert_position(control.middle_block)
        self._after = {}  # ("input_blocks", i) / ("middle_block", 0) -> motion block (registered under .motion)
        for kind, block, index, module in motion.placements() if motion is not None else []:
            self._after[layout.block_index(kind, block, index)] = module

    def _motion(self, where, h, frames):
        module = self._after.get(where)
        return h if module is None else module(h, frames, attention=short_key_attention(h.device))

    def _guided_hint(self, hint, emb, context, hint_frames, memo: HintMemo | None):
        """The hint block's output. With ``hint_frames`` the hint repeats every ``hint_frames`` rows (one copy per
        cond/uncond chunk): the block runs on one copy, once per ``memo`` (it depends on neither x nor t)."""
        if memo is None or hint_frames is None or hint.shape[0] % hint_frames:
            return self.control.input_hint_block(hint, emb, context)
        return memo.get(hint, hint_frames, lambda rows: self.control.input_hint_block(rows, emb, context))

    def forward(self, x, hint, timesteps, context, video_frames=None, y=None, hint_frames=None, hint_memo=None,
                **kwargs):
        net = self.control
        frames = video_frames or x.shape[0]
        emb = net.time_embed(timestep_embedding(timesteps, net.model_channels, repeat_only=False).to(x.dtype))
        guided_hint = self._guided_hint(hint, emb, context, hint_frames, hint_memo)
        if net.num_classes is not None:
            emb = emb + net.label_emb(y)
        outputs = []
        h = x
        for i, (block, zero_conv) in enumerate(zip(net.input_blocks, net.zero_convs)):
            h = block(h, emb, context)
            if i == 0:
                h = _add_per_frame(h, guided_hint)
            h = self._motion(("input_blocks", i), h, frames)
            outputs.append(zero_conv(h, emb, context))
        h = net.middle_block[:self.mid_split](h, emb, context)
        h = self._motion(("middle_block", 0), h, frames)
        h = net.middle_block[self.mid_split:](h, emb, context)
        return {"middle": [net.middle_block_out(h, emb, context)], "output": outputs}


def _add_per_frame(h: torch.Tensor, per_frame: torch.Tensor) -> torch.Tensor:
    """``h + per_frame`` where ``per_frame`` holds 1 row, h's rows, or rows that repeat along h's batch."""
    if per_frame.shape[0] in (1, h.shape[0]):
        return h + per_frame
    return (h.unflatten(0, (-1, per_frame.shape[0])) + per_frame).flatten(0, 1)


class VideoControlNet(comfy.controlnet.ControlNet):
    """One control frame per video frame (``frame_mode`` decides on a mismatch), an optional per-frame mask."""

    frame_mode = "error"
    mask = None  # [1 or frames, H, W]
    hint_memo = None  # HintMemo of this object's control frames; never shared with a copy
    core_window = None  # (window indices, its copy) under core's Context Windows; None on a window's copy
    follows_core_windows = True

    def copy(self):
        c = VideoControlNet(None, global_average_pooling=self.global_average_pooling, load_device=self.load_device,
                            manual_cast_dtype=self.manual_cast_dtype)
        c.control_model = self.control_model
        c.control_model_wrapped = self.control_model_wrapped
        self.copy_to(c)
        c.frame_mode, c.mask = self.frame_mode, self.mask
        return c

    def _fit(self, frames: int):
        hint = fit_frames(self.cond_hint_original, frames, self.frame_mode, "Video ControlNet control frames")
        mask = None if self.mask is None else fit_frames(self.mask, frames, self.frame_mode, "Video ControlNet mask")
        return hint, mask

    def window_copy(self, index: torch.Tensor, frames: int):
        """A copy for one context window: control frames and mask cut to the window's frames."""
        hint, mask = self._fit(frames)
        c = self.copy()
        c.cond_hint_original = hint if hint.shape[0] == 1 else hint[index.to(hint.device)]
        c.mask = mask if mask is None or mask.shape[0] == 1 else mask[index.to(mask.device)]
        return c

    def _core_window_copy(self, window):
        """The copy for core's current context window (ComfyUI's Context Windows node around the MODEL): core cuts
        latents and conditioning but hands the ControlNet its whole video, so the control frames are cut here to
        the window's indices, as the host's own window object computes them."""
        full = getattr(window, "total_frames", 0) or self.cond_hint_original.shape[0]
        index = window.get_tensor(torch.arange(full))
        if int(index.max()) >= full:
            raise ValueError(f"Video ControlNet control frames: a context window asks for frame {int(index.max())} "
                             f"of {full} control frames; give one control frame per video frame (frame_mode "
                             f"'error') or use DreaMoving Sampler")
        key = tuple(index.tolist())
        if self.core_window is None or self.core_window[0] != key:
            copy = self.window_copy(index, full)
            copy.follows_core_windows = False
            copy.timestep_range, copy.model_sampling_current = self.timestep_range, self.model_sampling_current
            copy.previous_controlnet = self.previous_controlnet  # cuts its own frames when it is ours
            self.core_window = (key, copy)
        return self.core_window[1]

    def get_control(self, x_noisy, t, cond, batched_number, transformer_options):
        window = core_frame_window(transformer_options) if self.follows_core_windows else None
        if window is not None:
            return self._core_window_copy(window).get_control(x_noisy, t, cond, batched_number, transformer_options)
        frames = x_noisy.shape[0] // batched_number
        hint, self.mask = self._fit(frames)
        if hint is not self.cond_hint_original:
            self.cond_hint_original, self.cond_hint = hint, None
        if self.hint_memo is None or self.hint_memo.source is not hint:
            self.hint_memo = HintMemo(hint)
        self.extra_args["video_frames"] = frames
        self.extra_args["hint_frames"] = hint.shape[0]  # ComfyUI repeats the hint per cond/uncond chunk
        self.extra_args["hint_memo"] = self.hint_memo
        return super().get_control(x_noisy, t, cond, batched_number, transformer_options)

    def cleanup(self):
        self.hint_memo = self.core_window = None
        self.extra_args.pop("hint_memo", None)
        super().cleanup()

    def control_merge(self, control, control_prev, output_dtype):
        if self.mask is not None:
            control = {key: [None if r is None else r * self._mask_like(r) for r in residuals]
                       for key, residuals in control.items()}
        return super().control_merge(control, control_prev, output_dtype)

    def _mask_like(self, residual: torch.Tensor) -> torch.Tensor:
        mask = self.mask.to(residual.device, residual.dtype)[:, None]
        mask = F.interpolate(mask, size=residual.shape[-2:], mode="bilinear", align_corners=False)
        return mask.repeat(residual.shape[0] // mask.shape[0], 1, 1, 1)


def load_video_controlnet(path: str, motion_path: str | None = None) -> VideoControlNet:
    """Our single-file Video ControlNet, or a plain SD1.5 ControlNet inflated with ``motion_path``'s blocks."""
    controlnet_sd, motion_sd, motion_meta, motion_name = read_video_controlnet(path, motion_path)
    native = comfy.controlnet.load_controlnet_state_dict(controlnet_sd)  # LDM or diffusers keys, any prefix
    net = native.control_model
    layout = UNetLayout(net.model_channels, tuple(net.channel_mult), tuple(net.num_res_blocks))
    motion = None
    if motion_sd:
        motion = motion_model_from_state_dict(motion_sd, motion_meta, motion_name, operations=comfy.ops.manual_cast)
        layout.check_fits(motion.spec, motion_name, decoder=False)
        motion.to(dtype=net.dtype)
    return VideoControlNet(VideoControlModel(net, motion, layout),
                           global_average_pooling=native.global_average_pooling, load_device=native.load_device,
                           manual_cast_dtype=native.manual_cast_dtype)
