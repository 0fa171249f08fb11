"""Core's Context Windows node wired around our motion MODEL into KSampler (issue 15): with dim 0 (frames as the
batch) the Video ControlNet's control frames are cut to each window; another dim is refused, pointing to
DreaMoving Sampler."""
from __future__ import annotations

import inspect

import pytest
import torch

from dmtest import fixtures, prompts
from dmtest.inprocess import PromptFailed

FRAMES = 12


def core_window(indices: list[int], frames: int, anchor: int | None = None):
    """The host's own window object, as core's handler makes it (v0.33.0 also records the video length)."""
    import comfy.context_windows

    cls = comfy.context_windows.IndexListContextWindow
    extra = {"total_frames": frames} if "total_frames" in inspect.signature(cls).parameters else {}
    window = cls(indices, dim=0, **extra)
    if anchor is not None:
        window.causal_anchor_index = anchor  # v0.33.0's causal_window_fix; older hosts ignore it
    return window


def test_window_residuals_equal_the_windows_frames_alone(pack_host):
    load = pack_host.pack_module("nodes.video_controlnet").load_video_controlnet
    import nodes

    base = nodes.CheckpointLoaderSimple().load_checkpoint(fixtures.SMALL_CKPT)[0].model
    control = load(str(fixtures.model_folders()["controlnet"] / fixtures.VIDEO_CN))
    gen = torch.Generator().manual_seed(0)
    hint = torch.rand(FRAMES, 3, 64, 64, generator=gen)
    window = core_window(list(range(6, 10)), FRAMES, anchor=5)
    index = window.get_tensor(torch.arange(FRAMES))  # the frames the host cuts for this window
    x = torch.randn(2 * len(index), 4, 8, 8, generator=gen)
    text = torch.randn(1, 77, 768, generator=gen).repeat(x.shape[0], 1, 1)

    def residuals(hint, options):
        c = control.copy().set_cond_hint(hint, 1.0, (0.0, 1.0))
        c.pre_run(base, base.model_sampling.percent_to_sigma)
        out = c.get_control(x, torch.full((x.shape[0],), 2.5), {"c_crossattn": text}, 2, options)
        return [r for key in ("input", "middle", "output") for r in out[key] if r is not None]

    windowed = residuals(hint, {"context_window": window})
    alone = residuals(hint[index], {})
    assert len(windowed) == len(alone) > 0
    for a, b in zip(windowed, alone):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def core_windows_prompt(dim: int = 0, context_length: int = 8) -> dict:
    """Motion U-Net -> core ContextWindowsManual -> KSampler, driven by a Video ControlNet on FRAMES frames."""
    import nodes

    prompt = prompts.motion_video(fixtures.SMALL_CKPT, fixtures.SMALL_MM, FRAMES, sampler="KSampler")
    chosen = {"model": ["10", 0], "context_length": context_length, "context_overlap": 2,
              "context_schedule": "standard_static", "fuse_method": "pyramid", "dim": dim}
    required = nodes.NODE_CLASS_MAPPINGS["ContextWindowsManual"].INPUT_TYPES()["required"]
    defaults = {name: spec[1]["default"] for name, spec in required.items()
                if len(spec) > 1 and isinstance(spec[1], dict) and "default" in spec[1]}
    prompt["11"] = {"class_type": "ContextWindowsManual", "inputs": {**defaults, **chosen}}
    prompt["5"]["inputs"]["model"] = ["11", 0]
    return prompts.add_video_controlnet(prompt, fixtures.VIDEO_CN, FRAMES, color=0x446688)


def host_cuts_frames_in_the_batch() -> bool:
    """v0.33.0's handler matches the step on the first timestep; v0.3.64's compares one timestep per sample."""
    import comfyui_version
    from dreamoving.host_version import version_tuple

    return version_tuple(comfyui_version.__version__) >= (0, 33)


def test_core_context_windows_around_the_motion_model_run_per_window_or_are_refused(pack_host):
    if not host_cuts_frames_in_the_batch():
        with pytest.raises(PromptFailed, match="this ComfyUI's context windows need one timestep per video.*"
                                               "use DreaMoving Sampler"):
            pack_host.run(core_windows_prompt())
        return
    windowed = pack_host.run(core_windows_prompt())["5"][0][0]["samples"]
    whole = pack_host.run(core_windows_prompt(context_length=64))["5"][0][0]["samples"]  # fits: no windows
    assert windowed.shape == whole.shape == (FRAMES, 4, 8, 8) and torch.isfinite(windowed).all()
    assert not torch.equal(windowed, whole), "windows of 8 frames sample differently from one of 12"


def test_a_video_that_fits_one_core_window_runs_on_every_host(pack_host):
    plain = prompts.add_video_controlnet(prompts.motion_video(fixtures.SMALL_CKPT, fixtures.SMALL_MM, FRAMES,
                                                              sampler="KSampler"), fixtures.VIDEO_CN, FRAMES,
                                         color=0x446688)  # core_windows_prompt without the windows node
    whole = pack_host.run(core_windows_prompt(context_length=64))["5"][0][0]["samples"]
    assert torch.equal(whole, pack_host.run(plain)["5"][0][0]["samples"]), "one window is no window"


def test_core_context_windows_on_another_dim_are_refused(pack_host):
    with pytest.raises(PromptFailed, match="Context Windows: dim 2 cuts the latent along a non-frame axis.*"
                                           "DreaMoving Sampler"):
        pack_host.run(core_windows_prompt(dim=2, context_length=4))
