"""Issue 4 in a real ComfyUI: the Video ControlNet against the native ControlNet, frames, windows, files."""
from __future__ import annotations

import pytest
import torch

from dmtest import fixtures, prompts
from dmtest.inprocess import PromptFailed

FRAMES = 6


def controlnet_path(name: str) -> str:
    return str(fixtures.model_folders()["controlnet"] / name)


@pytest.fixture(scope="module")
def base_model(pack_host):
    import nodes

    return nodes.CheckpointLoaderSimple().load_checkpoint(fixtures.SMALL_CKPT)[0].model


def residuals(control, hint, x, base_model, chunks: int = 2) -> list[torch.Tensor]:
    """All residuals of ``control`` (and its chain) on ``x`` (chunks x frames), as ComfyUI's sampler asks for them."""
    control = control.copy().set_cond_hint(hint, 1.0, (0.0, 1.0))
    control.pre_run(base_model, base_model.model_sampling.percent_to_sigma)
    sigma = torch.full((x.shape[0],), 2.5)
    text = torch.randn(1, 77, 768, generator=torch.Generator().manual_seed(5)).repeat(x.shape[0], 1, 1)
    out = control.get_control(x, sigma, {"c_crossattn": text}, chunks, {})
    return [r for key in ("input", "middle", "output") for r in out[key] if r is not None]


def inputs(frames: int = FRAMES, chunks: int = 2, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(frames, 3, 64, 64, generator=gen), torch.randn(chunks * frames, 4, 8, 8, generator=gen)


@pytest.mark.parametrize("name", [fixtures.VIDEO_CN_ZERO, fixtures.SMALL_CN])
def test_without_motion_equals_native_controlnet(pack_host, base_model, name):
    import comfy.controlnet

    load = pack_host.pack_module("nodes.video_controlnet").load_video_controlnet
    native = comfy.controlnet.load_controlnet(controlnet_path(fixtures.SMALL_CN))
    hint, x = inputs()
    ours, theirs = residuals(load(controlnet_path(name)), hint, x, base_model), residuals(native, hint, x, base_model)
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_sampled_latents_equal_native_controlnet(pack_host):
    def run(loader, apply, image_input):
        prompt = prompts.motion_video(fixtures.SMALL_CKPT, fixtures.SMALL_MM, FRAMES, sampler="KSampler")
        prompt["20"] = {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": FRAMES,
                                                                "color": 0x808080}}
        prompt["21"] = loader
        prompt["22"] = apply
        prompt["22"]["inputs"].update({"positive": ["2", 0], "negative": ["3", 0], image_input: ["20", 0],
                                       "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0})
        prompt["5"]["inputs"].update({"positive": ["22", 0], "negative": ["22", 1]})
        return pack_host.run(prompt)["5"][0][0]["samples"]

    native_loader = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": fixtures.SMALL_CN}}
    our_loader = {"class_type": "DreaMovingVideoControlNetLoader", "inputs": {
        "controlnet": fixtures.VIDEO_CN_ZERO, "motion_module": "none"}}
    native_apply = {"class_type": "ControlNetApplyAdvanced", "inputs": {"control_net": ["21", 0]}}
    our_apply = {"class_type": "DreaMovingVideoControlNetApply", "inputs": {
        "video_controlnet": ["21", 0], "frame_mode": "error"}}
    native = run(native_loader, native_apply, "image")
    assert torch.equal(native, run(our_loader, our_apply, "control_frames"))
    assert torch.equal(native, run(our_loader, dict(native_apply, inputs=dict(native_apply["inputs"])), "image")), \
        "the native Apply ControlNet node takes our Video ControlNet too"


def test_motion_blocks_couple_frames(pack_host, base_model):
    load = pack_host.pack_module("nodes.video_controlnet").load_video_controlnet
    control = load(controlnet_path(fixtures.VIDEO_CN))
    hint, x = inputs()
    poked = hint.clone()
    poked[4] = 1.0 - poked[4]  # frame 4's pose changes
    before, after = residuals(control, hint, x, base_model), residuals(control, poked, x, base_model)
    deep = [(a - b).abs() for a, b in zip(before, after)][-1]  # the middle block's residual
    per_frame = deep.reshape(2, FRAMES, -1).amax(dim=(0, 2))
    assert torch.all(per_frame[[0, 1, 2, 3, 5]] > 0), "residuals of other frames depend on frame 4's hint"


def test_window_residuals_equal_the_slice_alone(pack_host, base_model):
    load = pack_host.pack_module("nodes.video_controlnet").load_video_controlnet
    control = load(controlnet_path(fixtures.VIDEO_CN))
    frames, window = 20, list(range(8, 16))
    hint, x = inputs(frames)
    index = torch.tensor(window)
    x_window = torch.cat([x[:frames][index], x[frames:][index]])
    full_hint = control.copy().set_cond_hint(hint, 1.0, (0.0, 1.0))
    windowed = full_hint.window_copy(index, frames)
    ours = residuals(windowed, windowed.cond_hint_original, x_window, base_model)
    alone = residuals(control, hint[index], x_window, base_model)
    for a, b in zip(ours, alone):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("host_rebuilds_hint", [False, True])
def test_hint_block_runs_once_per_prepared_hint(pack_host, base_model, host_rebuilds_hint):
    """The hint block depends on neither x nor t: one run on one copy of the frames serves every step and chunk,
    also where the host prepares a new hint tensor at every call (a per-latent-size ``cond_hints`` store)."""
    load = pack_host.pack_module("nodes.video_controlnet").load_video_controlnet
    control = load(controlnet_path(fixtures.VIDEO_CN)).copy()
    hint, x = inputs()
    calls = []
    control.control_model.control.input_hint_block.register_forward_hook(lambda m, args, out: calls.append(args[0].shape))
    control.set_cond_hint(hint, 1.0, (0.0, 1.0)).pre_run(base_model, base_model.model_sampling.percent_to_sigma)
    text = torch.zeros(2 * FRAMES, 77, 768)
    steps, prepared = [], []
    for s in (3.0, 2.0, 1.0):
        if host_rebuilds_hint:
            control.cond_hint = None
        steps.append(control.get_control(x * s, torch.full((2 * FRAMES,), s), {"c_crossattn": text}, 2, {}))
        prepared.append(control.cond_hint)
    assert (prepared[0] is not prepared[1]) == host_rebuilds_hint
    assert [c[0] for c in calls] == [FRAMES], "one hint block run for three steps of cond + uncond"
    assert not torch.equal(steps[0]["output"][0], steps[1]["output"][0])
    control.cleanup()  # the end of a sampling run drops the prepared hint, and the memo with it
    control.set_cond_hint(1.0 - hint, 1.0, (0.0, 1.0)).pre_run(base_model, base_model.model_sampling.percent_to_sigma)
    fresh = control.get_control(x * 3.0, torch.full((2 * FRAMES,), 3.0), {"c_crossattn": text}, 2, {})
    assert len(calls) == 2 and not torch.equal(fresh["output"][0], steps[0]["output"][0])


def test_frame_count_mismatch_is_a_clear_error_unless_asked(pack_host, base_model):
    load = pack_host.pack_module("nodes.video_controlnet").load_video_controlnet
    control = load(controlnet_path(fixtures.VIDEO_CN))
    hint, x = inputs(FRAMES)
    with pytest.raises(ValueError, match="Video ControlNet control frames: got 4 frames for a 6-frame video"):
        residuals(control, hint[:4], x, base_model)
    repeat = control.copy()
    repeat.frame_mode = "repeat last"
    padded = torch.cat([hint[:4], hint[3:4], hint[3:4]])
    for a, b in zip(residuals(repeat, hint[:4], x, base_model), residuals(control, padded, x, base_model)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_export_round_trip(pack_host, base_model, tmp_path):
    from dreamoving.controlnet_files import save_video_controlnet
    from dreamoving.weights import read_state_dict

    load = pack_host.pack_module("nodes.video_controlnet").load_video_controlnet
    control = load(controlnet_path(fixtures.SMALL_CN), str(fixtures.model_folders()["animatediff_models"] /
                                                         fixtures.SMALL_MM))
    state = {k: v for k, v in control.control_model.control.state_dict().items()}
    out = str(tmp_path / "exported_video_controlnet.safetensors")
    save_video_controlnet(out, state, control.control_model.motion)
    tensors, metadata = read_state_dict(out)
    assert metadata["format"] == "dreamoving.video_controlnet" and metadata["motion_pe_len"] == "64"
    assert not any("controlnet" in k for k in tensors), "no 'controlnet' in keys: not taken for SparseCtrl"
    assert any(k.startswith("motion.down_blocks.0.motion_modules.0.") for k in tensors)
    hint, x = inputs()
    for a, b in zip(residuals(load(out), hint, x, base_model), residuals(control, hint, x, base_model)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("controlnet,motion,message", [
    (fixtures.VIDEO_CN, fixtures.SMALL_MM, "already holds motion blocks"),
    (fixtures.SMALL_CN, fixtures.LAYOUT_MM_V1, "motion module 'dm_layout_mm_v1.ckpt' does not fit this model"),
])
def test_loader_errors(pack_host, controlnet, motion, message):
    prompt = {"1": {"class_type": "DreaMovingVideoControlNetLoader",
                    "inputs": {"controlnet": controlnet, "motion_module": motion}},
              "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    with pytest.raises(PromptFailed, match=message):
        pack_host.run(prompt)


def pose_depth_video(frames: int, control_frames: int, frame_mode: str = "error", **kw) -> dict:
    """Motion U-Net + two chained Video ControlNet applies (pose, then depth) over ``frames`` frames."""
    prompt = prompts.motion_video(fixtures.SMALL_CKPT, fixtures.SMALL_MM, frames, **kw)
    prompt["20"] = {"class_type": "EmptyImage", "inputs": {"width": 48, "height": 48, "batch_size": control_frames,
                                                            "color": 0x336699}}
    prompt["21"] = {"class_type": "DreaMovingVideoControlNetLoader", "inputs": {
        "controlnet": fixtures.VIDEO_CN, "motion_module": "none"}}
    prompt["22"] = {"class_type": "DreaMovingVideoControlNetLoader", "inputs": {
        "controlnet": fixtures.SMALL_CN, "motion_module": fixtures.SMALL_MM}}
    common = {"control_frames": ["20", 0], "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0,
              "frame_mode": frame_mode}
    prompt["23"] = {"class_type": "DreaMovingVideoControlNetApply", "inputs": dict(
        common, positive=["2", 0], negative=["3", 0], video_controlnet=["21", 0])}
    prompt["24"] = {"class_type": "DreaMovingVideoControlNetApply", "inputs": dict(
        common, positive=["23", 0], negative=["23", 1], video_controlnet=["22", 0])}
    prompt["5"]["inputs"].update({"positive": ["24", 0], "negative": ["24", 1]})
    return prompt


def test_pose_and_depth_chained_on_64_frames(pack_host):
    out = pack_host.run(pose_depth_video(64, 64))["5"][0][0]["samples"]
    assert out.shape == (64, 4, 8, 8) and torch.isfinite(out).all()


def test_pose_and_depth_inside_context_windows(pack_host):
    out = pack_host.run(pose_depth_video(40, 40, context_length=16, context_overlap=4))["5"][0][0]["samples"]
    assert out.shape == (40, 4, 8, 8) and torch.isfinite(out).all()


def test_wrong_frame_count_in_a_workflow(pack_host):
    with pytest.raises(PromptFailed, match="got 10 frames for a 12-frame video"):
        pack_host.run(pose_depth_video(12, 10))
    out = pack_host.run(pose_depth_video(12, 10, frame_mode="loop"))["5"][0][0]["samples"]
    assert out.shape == (12, 4, 8, 8)
