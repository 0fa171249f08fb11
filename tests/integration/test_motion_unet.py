"""Issue 3 in a real ComfyUI: the motion U-Net loader and the DreaMoving Sampler."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from dmtest import fixtures, prompts
from dmtest.inprocess import PromptFailed


def samples(host, prompt) -> torch.Tensor:
    return host.run(prompt)["5"][0][0]["samples"]


def write_latent(host, name: str, latent: torch.Tensor) -> str:
    """A .latent file in the host's input folder (LoadLatent's format, no 0.18215 rescale)."""
    import folder_paths

    save_file({"latent_tensor": latent.contiguous(), "latent_format_version_0": torch.tensor([])},
              f"{folder_paths.get_input_directory()}/{name}")
    return name


def test_zero_motion_module_is_bit_identical_to_plain_model(pack_host):
    plain = samples(pack_host, prompts.motion_video(fixtures.SMALL_CKPT, None, 6, sampler="KSampler"))
    zero = samples(pack_host, prompts.motion_video(fixtures.SMALL_CKPT, fixtures.SMALL_MM_ZERO, 6,
                                                   sampler="KSampler", beta_schedule="use existing"))
    assert torch.equal(plain, zero)


def test_motion_couples_frames_and_leaves_plain_model_alone(pack_host):
    base = torch.randn(6, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    poked = base.clone()
    poked[2] += 1.0  # only frame 2's input differs
    names = [write_latent(pack_host, f"couple_{i}.latent", t) for i, t in enumerate((base, poked))]

    def run(motion, latent):
        return samples(pack_host, prompts.motion_video(fixtures.SMALL_CKPT, motion, 6, sampler="KSampler",
                                                       latent_file=latent, denoise=0.6))

    plain_delta = (run(None, names[1]) - run(None, names[0])).flatten(1).abs().amax(1)
    motion_delta = (run(fixtures.SMALL_MM, names[1]) - run(fixtures.SMALL_MM, names[0])).flatten(1).abs().amax(1)
    others = [0, 1, 3, 4, 5]
    assert torch.all(plain_delta[others] == 0), "without motion blocks frames are independent"
    assert torch.all(motion_delta[others] > 1e-4), "with motion blocks every frame depends on frame 2"
    after = samples(pack_host, prompts.txt2img(fixtures.SMALL_CKPT))
    assert torch.equal(after, pack_host.plain_baseline), "the un-patched model must be unaffected"


def test_sampler_64_frames_and_150_with_windows(pack_host):
    out64 = samples(pack_host, prompts.motion_video(fixtures.SMALL_CKPT, fixtures.SMALL_MM, 64))
    assert out64.shape == (64, 4, 8, 8) and torch.isfinite(out64).all()
    out150 = samples(pack_host, prompts.motion_video(fixtures.SMALL_CKPT, fixtures.SMALL_MM, 150))
    assert out150.shape == (150, 4, 8, 8) and torch.isfinite(out150).all()


def test_windowed_path_equals_plain_path_when_video_fits(pack_host):
    ours = samples(pack_host, prompts.motion_video(fixtures.SMALL_CKPT, fixtures.SMALL_MM, 20, context_length=20,
                                                   context_overlap=4))
    stock = samples(pack_host, prompts.motion_video(fixtures.SMALL_CKPT, fixtures.SMALL_MM, 20, sampler="KSampler"))
    assert torch.equal(ours, stock)


def test_real_layout_v1_module_runs_on_real_layout_unet(pack_host):
    out = samples(pack_host, prompts.motion_video(fixtures.LAYOUT_CKPT, fixtures.LAYOUT_MM_V1, 8, sampler="KSampler"))
    assert out.shape == (8, 4, 8, 8) and torch.isfinite(out).all()


@pytest.mark.parametrize("ckpt,motion,message", [
    (fixtures.SMALL_CKPT, fixtures.NOT_MOTION, "'dm_not_a_motion_module.safetensors' is not a motion module"),
    (fixtures.SMALL_CKPT, fixtures.LAYOUT_MM_V1, "motion module 'dm_layout_mm_v1.ckpt' does not fit this model"),
])
def test_wrong_motion_files_are_clear_errors(pack_host, ckpt, motion, message):
    with pytest.raises(PromptFailed, match=message):
        pack_host.run(prompts.motion_video(ckpt, motion, 4, sampler="KSampler"))


@pytest.mark.parametrize("change,message", [
    ({"frames": 0}, "frames"),
    ({"context_length": 16, "context_overlap": 16}, "context_overlap must be at least 0 and less than context_length"),
])
def test_bad_sampler_inputs_are_rejected_at_queue_time(comfy_server, change, message):
    from dreamoving.comfy_client import ComfyError

    prompt = prompts.motion_video(fixtures.SMALL_CKPT, fixtures.SMALL_MM, 4)
    del prompt["5"]["inputs"]["latent"]
    prompt["5"]["inputs"].update(change)
    with pytest.raises(ComfyError, match=message) as err:
        comfy_server.client.queue(prompt)
    assert "node 5 (DreaMovingSampler)" in str(err.value)


@pytest.mark.parametrize("where", ["before", "after"])
def test_bf16_compute_dtype_set_before_or_after_the_loader(pack_host, where):
    prompt = prompts.motion_video(fixtures.SMALL_CKPT, fixtures.SMALL_MM, 6, sampler="KSampler")
    reference = samples(pack_host, prompt)
    if where == "before":
        prompt["30"] = {"class_type": "ModelComputeDtype", "inputs": {"model": ["1", 0], "dtype": "bf16"}}
        prompt["10"]["inputs"]["model"] = ["30", 0]
    else:
        prompt["30"] = {"class_type": "ModelComputeDtype", "inputs": {"model": ["10", 0], "dtype": "bf16"}}
        prompt["5"]["inputs"]["model"] = ["30", 0]
    low = samples(pack_host, prompt)
    assert torch.isfinite(low).all()
    cosine = torch.nn.functional.cosine_similarity(low.flatten(), reference.flatten(), dim=0)
    assert cosine > 0.98, f"bf16 result strays from fp32: cosine {cosine:.4f}"


def test_loader_clones_without_copying_weights(pack_host):
    import nodes

    model = nodes.CheckpointLoaderSimple().load_checkpoint(fixtures.SMALL_CKPT)[0]
    loader = nodes.NODE_CLASS_MAPPINGS["DreaMovingMotionUNetLoader"]
    patched = loader.execute(model, fixtures.SMALL_MM, 1.0, 1.0, "autoselect").result[0]
    assert patched is not model and patched.model is model.model, "a ModelPatcher clone shares the U-Net"
    key = pack_host.pack_module("nodes.motion_patch").MOTION_KEY
    motion = patched.get_additional_models_with_key(key)[0].model
    assert patched.clone().get_additional_models_with_key(key)[0].model is motion
    assert not model.get_additional_models_with_key(key) and "model_sampling" not in model.object_patches

    def tensors_in(value):
        if isinstance(value, torch.Tensor) or isinstance(value, torch.nn.Module):
            return 1
        if isinstance(value, dict):
            return sum(tensors_in(v) for v in value.values())
        if isinstance(value, (list, tuple)):
            return sum(tensors_in(v) for v in value)
        return 0

    assert tensors_in(patched.model_options) == 0, "weights must stay out of the deep-copied model_options"
    sigmas = patched.get_model_object("model_sampling").sigmas
    betas_linear = torch.linspace(0.00085, 0.012, 1000, dtype=torch.float64)
    expected = ((1 - torch.cumprod(1 - betas_linear, 0)) / torch.cumprod(1 - betas_linear, 0)) ** 0.5
    torch.testing.assert_close(sigmas.double(), expected, rtol=1e-5, atol=1e-6)


def test_progress_and_interrupt_through_the_server(comfy_server):
    from dreamoving.comfy_client import ComfyError

    events = []

    def on_event(kind, data):
        events.append(kind)
        if kind == "progress" and data["value"] == 1:
            comfy_server.client.interrupt()

    prompt = prompts.motion_video(fixtures.SMALL_CKPT, fixtures.SMALL_MM, 100, steps=50, context_length=32,
                                  context_overlap=8, seed=99)
    with pytest.raises(ComfyError, match="interrupted"):
        comfy_server.client.run(prompt, on_event=on_event, timeout=300)
    assert events.count("progress") < 50, "sampling must stop soon after the interrupt"
