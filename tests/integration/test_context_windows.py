"""Context windows with frames as the batch: everything per-frame is cut to the window, cond and uncond alike."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from dmtest import fixtures


def test_windows_slice_latent_timesteps_conds_and_controlnet_hints(pack_host):
    import comfy.conds
    import comfy.controlnet

    patch = pack_host.pack_module("nodes.context_patch")
    windows_mod = pack_host.pack_module("dreamoving.context_windows")
    frames = 40
    gen = torch.Generator().manual_seed(0)
    hint_a, hint_b = torch.rand(frames, 3, 64, 64, generator=gen), torch.rand(frames, 3, 64, 64, generator=gen)
    net = comfy.controlnet.load_controlnet(str(fixtures.model_folders()["controlnet"] / fixtures.SMALL_CN))
    pose = net.copy().set_cond_hint(hint_a, 1.0, (0.0, 1.0))
    depth = net.copy().set_cond_hint(hint_b, 0.5, (0.0, 0.8))
    depth.set_previous_controlnet(pose)  # pose + depth chained, as two apply nodes do
    per_frame_text = torch.randn(frames, 77, 768, generator=gen)
    shared_text = torch.randn(1, 77, 768, generator=gen)
    cond = [{"model_conds": {"c_crossattn": comfy.conds.CONDCrossAttn(per_frame_text)}, "control": depth}]
    uncond = [{"model_conds": {"c_crossattn": comfy.conds.CONDCrossAttn(shared_text)}, "control": depth}]
    x = torch.randn(frames, 4, 8, 8, generator=gen)
    sigma = torch.full((frames,), 3.0)
    calls = []

    def executor(model, conds, x_in, timestep, model_options):
        calls.append((conds, x_in, timestep))
        return [x_in * 2, x_in * 3]

    options = windows_mod.ContextOptions(16, 4, "static", "flat")
    model = SimpleNamespace(model_sampling=SimpleNamespace(percent_to_sigma=lambda p: 10.0 * (1 - p)))
    out = patch.WindowedCondBatch(options)(executor, model, [cond, uncond], x, sigma, {"transformer_options": {}})

    windows = windows_mod.context_windows(frames, options)
    assert len(calls) == len(windows) == 3
    for (conds, x_in, timestep), window in zip(calls, windows):
        assert torch.equal(x_in, x[window]) and torch.equal(timestep, sigma[window])
        c, u = conds[0][0], conds[1][0]
        assert torch.equal(c["model_conds"]["c_crossattn"].cond, per_frame_text[window])
        assert torch.equal(u["model_conds"]["c_crossattn"].cond, shared_text)  # one entry for all frames: kept
        control = c["control"]
        assert u["control"] is control, "cond and uncond share the window's control copy"
        assert torch.equal(control.cond_hint_original, hint_b[window])
        assert torch.equal(control.previous_controlnet.cond_hint_original, hint_a[window])
        assert control.timestep_range == pytest.approx((10.0, 2.0))  # pre_run ran on the copy, with its own range
        assert control.previous_controlnet.timestep_range == pytest.approx((10.0, 0.0))
    torch.testing.assert_close(out[0], x * 2)
    torch.testing.assert_close(out[1], x * 3)
    assert depth.cond_hint_original is hint_b and pose.cond_hint_original is hint_a, "originals untouched"


def test_native_controlnet_inside_windows_runs(pack_host):
    from dmtest import prompts

    prompt = prompts.motion_video(fixtures.SMALL_CKPT, fixtures.SMALL_MM, 80, context_length=32, context_overlap=8)
    prompt["20"] = {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 80, "color": 0}}
    prompt["21"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": fixtures.SMALL_CN}}
    prompt["22"] = {"class_type": "ControlNetApplyAdvanced", "inputs": {
        "positive": ["2", 0], "negative": ["3", 0], "control_net": ["21", 0], "image": ["20", 0],
        "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0}}
    prompt["5"]["inputs"].update({"positive": ["22", 0], "negative": ["22", 1]})
    out = pack_host.run(prompt)["5"][0][0]["samples"]
    assert out.shape == (80, 4, 8, 8) and torch.isfinite(out).all()


def test_window_control_copies_do_not_outlive_their_window(pack_host):
    """A window's ControlNet copies (with their prepared hints) are gone once the window ran: memory does not
    grow with video length or steps."""
    import gc
    import weakref

    import comfy.controlnet

    patch = pack_host.pack_module("nodes.context_patch")
    windows_mod = pack_host.pack_module("dreamoving.context_windows")
    frames = 40
    hint = torch.rand(frames, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    net = comfy.controlnet.load_controlnet(str(fixtures.model_folders()["controlnet"] / fixtures.SMALL_CN))
    pose = net.copy().set_cond_hint(hint, 1.0, (0.0, 1.0))
    depth = net.copy().set_cond_hint(hint, 0.5, (0.0, 1.0)).set_previous_controlnet(pose)
    seen = []

    def executor(model, conds, x_in, timestep, model_options):
        control = conds[0][0]["control"]
        assert conds[1][0]["control"] is control
        control.cond_hint = control.previous_controlnet.cond_hint = torch.ones(1)  # as get_control prepares them
        seen.extend([weakref.ref(control), weakref.ref(control.previous_controlnet)])
        return [x_in, x_in]

    options = windows_mod.ContextOptions(16, 4, "uniform", "flat")
    wrapper = patch.WindowedCondBatch(options)
    model = SimpleNamespace(model_sampling=SimpleNamespace(percent_to_sigma=lambda p: 10.0 * (1 - p)))
    sigmas = torch.tensor([3.0, 2.0, 1.0])
    cond = [{"model_conds": {}, "control": depth}]
    for step in (1, 2):
        wrapper(executor, model, [cond, cond], torch.zeros(frames, 4, 8, 8), sigmas[step].repeat(frames),
                {"transformer_options": {"sample_sigmas": sigmas}})
    gc.collect()
    assert len(seen) == 2 * sum(len(windows_mod.context_windows(frames, options, s)) for s in (1, 2))
    assert all(ref() is None for ref in seen), "no window copy outlives its window"
