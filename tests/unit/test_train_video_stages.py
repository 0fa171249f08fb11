"""Training stages 2 (motion blocks) and 3 (Video ControlNet) on tiny models and synthetic clips, on CPU."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dmtest import train_fixtures

REPO = Path(__file__).resolve().parents[2]
SETTINGS = dict(frames=4, resolution=32, batch_size=2, lr=1e-3, caption_dropout=0.0, gradient_checkpointing=False,
                mixed_precision="no", checkpoint_every=2, sample_every=1000)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    sd15 = train_fixtures.write_sd15_folder(root / "sd15")
    motion = train_fixtures.write_motion_init(root / "mm_init.safetensors")
    csv, videos = train_fixtures.write_clips(root / "data")
    config = root / "config.json"
    config.write_text(json.dumps(SETTINGS))
    return {"sd15": sd15, "motion": motion, "csv": csv, "videos": videos, "config": config}


def run(assets, output: Path, steps: int, resume: bool = False, **overrides):
    from dreamoving.motion_files import load_motion_model
    from train.config import load_config
    from train.data import WebVidClips
    from train.motion_training import train_motion
    from train.sd15 import load_sd15

    config = load_config(2, str(assets["config"]), steps=steps, **overrides)
    losses = []
    motion = train_motion(config, load_sd15(str(assets["sd15"])), load_motion_model(str(assets["motion"])),
                          WebVidClips(str(assets["csv"]), str(assets["videos"]), config.frames, config.resolution),
                          str(output), resume=resume, log=lambda line: losses.append(line))
    return motion, [float(line.split()[-1]) for line in losses if line.startswith("step")]


def fixed_loss(assets, motion) -> float:
    """The loss on one clip at a fixed timestep and noise: comparable before and after training."""
    from diffusers import DDPMScheduler

    from train.data import WebVidClips
    from train.motion_training import SCHEDULE, batch_loss, clip_inputs
    from train.motion_unet import MotionUNet
    from train.sd15 import load_sd15

    parts = load_sd15(str(assets["sd15"]))
    scheduler = DDPMScheduler(**SCHEDULE)
    clips = WebVidClips(str(assets["csv"]), str(assets["videos"]), 4, 32)
    inputs = [clip_inputs(parts, clips[i], scheduler, torch.Generator().manual_seed(5 + i), 0.0) for i in range(2)]
    with torch.no_grad():
        return batch_loss(MotionUNet(parts.unet, motion), parts, inputs, scheduler, "cpu").item()


def test_stage2_learns_and_exports_an_animatediff_module(assets, tmp_path):
    from dreamoving.motion_files import load_motion_model

    before = fixed_loss(assets, load_motion_model(str(assets["motion"])))
    motion, losses = run(assets, tmp_path / "run", steps=20)
    assert len(losses) == 20 and all(torch.isfinite(torch.tensor(losses)))
    after = fixed_loss(assets, motion)
    assert after < before, f"training did not lower the loss on its own clips: {before:.5f} -> {after:.5f}"
    exported = load_motion_model(str(tmp_path / "run" / "motion_module.safetensors"))
    assert exported.spec.extra["family"] == "DreaMoving" and exported.spec.pe_len == 64
    for key, value in motion.state_dict().items():
        assert torch.equal(exported.state_dict()[key], value.float()), key


def test_resume_reaches_the_same_state(assets, tmp_path):
    straight, _ = run(assets, tmp_path / "straight", steps=4)
    run(assets, tmp_path / "split", steps=2)
    resumed, losses = run(assets, tmp_path / "split", steps=4, resume=True)
    assert len(losses) == 2, "the resumed run starts at step 3"
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)


def test_two_processes_equal_one(assets, tmp_path):
    """torchrun with 2 CPU processes (gloo), global batch 2 = one process with batch 2."""
    single, _ = run(assets, tmp_path / "single", steps=3)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
               "-m", "train.run", "--stage", "2", "--sd15", str(assets["sd15"]), "--motion-init", str(assets["motion"]),
               "--videos-csv", str(assets["csv"]), "--videos-dir", str(assets["videos"]), "--output",
               str(tmp_path / "ddp"), "--config", str(assets["config"]), "--steps", "3"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    from dreamoving.motion_files import load_motion_model

    ddp = load_motion_model(str(tmp_path / "ddp" / "motion_module.safetensors")).state_dict()
    start = load_motion_model(str(assets["motion"])).float().state_dict()
    # the same weights up to float rounding: gradients are all-reduced in another order, and AdamW scales
    # each update by its own gradient history, so compare the difference with the training's own change
    difference = sum(float((ddp[k] - v.float()).pow(2).sum()) for k, v in single.state_dict().items())
    change = sum(float((v.float() - start[k]).pow(2).sum()) for k, v in single.state_dict().items())
    assert change > 0 and (difference / change) ** 0.5 < 1e-2, (difference, change)  # other data or no averaging: > 0.1


def test_stage3_command_exports_a_video_controlnet(assets, tmp_path):
    from dreamoving.weights import read_state_dict
    from train.run import main

    from diffusers import ControlNetModel, UNet2DConditionModel
    from safetensors.torch import save_file

    from dreamoving.ldm_keys import controlnet_to_ldm

    _, controls = train_fixtures.write_clips(tmp_path / "controls")
    out = tmp_path / "stage3"
    # start from an SD1.5-style ControlNet file: LDM keys under control_model., as lllyasviel's .pth files
    start = ControlNetModel.from_unet(UNet2DConditionModel.from_pretrained(str(assets["sd15"] / "unet"))).state_dict()
    save_file({"control_model." + k: v for k, v in controlnet_to_ldm(start, 1).items()}, str(tmp_path / "cn.safetensors"))
    assert main(["--stage", "3", "--controlnet", str(tmp_path / "cn.safetensors"), "--sd15", str(assets["sd15"]),
                 "--unet-motion", str(assets["motion"]),
                 "--motion-init", str(assets["motion"]), "--videos-csv", str(assets["csv"]), "--videos-dir",
                 str(assets["videos"]), "--controls-dir", str(controls), "--output", str(out), "--config",
                 str(assets["config"]), "--steps", "1"]) == 0
    # (the tiny test ControlNet is not SD1.5-sized, so read the file directly rather than through the loader)
    tensors, metadata = read_state_dict(str(out / "video_controlnet.safetensors"))
    assert {"input_hint_block.0.weight", "zero_convs.0.0.weight", "middle_block_out.0.weight"} <= set(tensors)
    assert any(k.startswith("motion.mid_block.motion_modules.0.") for k in tensors)
    assert not any(k.startswith("motion.up_blocks") for k in tensors)
    assert metadata["format"] == "dreamoving.video_controlnet" and metadata["motion_format"] == "dreamoving.motion_module"


def test_stage4_trains_unet_motion_with_the_stage3_controlnet_frozen(assets, tmp_path):
    from dreamoving.motion_files import load_motion_model
    from dreamoving.weights import read_state_dict
    from train.run import main

    _, controls = train_fixtures.write_clips(tmp_path / "controls")
    sampling = tmp_path / "sampling.json"
    sampling.write_text(json.dumps(dict(SETTINGS, sample_every=2)))
    common = ["--sd15", str(assets["sd15"]), "--unet-motion", str(assets["motion"]), "--motion-init",
              str(assets["motion"]), "--videos-csv", str(assets["csv"]), "--videos-dir", str(assets["videos"]),
              "--controls-dir", str(controls), "--config", str(sampling), "--steps", "2"]
    assert main(["--stage", "3", "--output", str(tmp_path / "s3"), *common]) == 0
    video_controlnet = tmp_path / "s3" / "video_controlnet.safetensors"
    before = read_state_dict(str(video_controlnet))[0]
    assert main(["--stage", "4", "--output", str(tmp_path / "s4"), "--video-controlnet", str(video_controlnet),
                 *common]) == 0
    for stage in ("s3", "s4"):  # this config samples every 2 steps
        assert (tmp_path / stage / "sample-2.mp4").stat().st_size > 0, f"{stage}: no sample video"
    after = read_state_dict(str(video_controlnet))[0]
    assert all(torch.equal(before[k], after[k]) for k in before)
    trained = load_motion_model(str(tmp_path / "s4" / "motion_module.safetensors"))
    start = load_motion_model(str(assets["motion"]))
    assert any(not torch.equal(v, start.state_dict()[k].to(v.dtype)) for k, v in trained.state_dict().items())

    # and it learns: the loss at fixed noise and timesteps drops over a longer run
    from diffusers import DDPMScheduler

    from train.config import load_config
    from train.data import ControlledClips
    from train.motion_training import SCHEDULE, clip_inputs, controlled_loss, train_expression
    from train.motion_unet import MotionUNet, VideoControlNetModel
    from train.sd15 import load_sd15

    parts = load_sd15(str(assets["sd15"]))
    controlnet = VideoControlNetModel.from_file(str(video_controlnet), parts.unet)
    data = ControlledClips(str(assets["csv"]), str(assets["videos"]), str(controls), 4, 32)
    scheduler = DDPMScheduler(**SCHEDULE)
    inputs = [clip_inputs(parts, data[i], scheduler, torch.Generator().manual_seed(11 + i), 0.0) for i in range(2)]

    def fixed(motion):
        with torch.no_grad():
            return controlled_loss(MotionUNet(parts.unet, motion), controlnet, parts, inputs, scheduler, "cpu").item()

    def stage4(output, steps, resume=False):
        return train_expression(load_config(4, str(assets["config"]), steps=steps), parts,
                                load_motion_model(str(assets["motion"])), controlnet, data, str(output), resume,
                                log=lambda _: None)

    before = fixed(load_motion_model(str(assets["motion"])))
    assert fixed(stage4(tmp_path / "s4_long", 12)) < before
    straight = stage4(tmp_path / "s4_straight", 4)
    stage4(tmp_path / "s4_split", 2)
    resumed = stage4(tmp_path / "s4_split", 4, resume=True)
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)


def test_ldm_controlnet_keys_round_trip():
    from diffusers import ControlNetModel, UNet2DConditionModel

    from dreamoving.ldm_keys import controlnet_to_ldm, ldm_to_controlnet

    for layers in (1, 2):
        unet = UNet2DConditionModel(**dict(train_fixtures.TINY_UNET, layers_per_block=layers))
        state = ControlNetModel.from_unet(unet).state_dict()
        ldm = controlnet_to_ldm(state, layers)
        assert len(ldm) == len(state) and "input_blocks.0.0.weight" in ldm and "middle_block.2.out_layers.3.weight" in ldm
        assert f"input_blocks.{layers + 1}.0.op.weight" in ldm, "the first downsampler"
        back = ldm_to_controlnet(ldm, state, layers)
        assert all(torch.equal(back[k], state[k]) for k in state)


def _stage3(assets, controls, output, steps, resume=False):
    from diffusers import ControlNetModel

    from dreamoving.controlnet_files import encoder_motion_state
    from dreamoving.motion_files import load_motion_model, motion_model_from_state_dict
    from dreamoving.weights import read_state_dict
    from train.config import load_config
    from train.data import ControlledClips
    from train.motion_training import train_video_controlnet
    from train.sd15 import load_sd15

    parts = load_sd15(str(assets["sd15"]))
    torch.manual_seed(0)
    controlnet = ControlNetModel.from_unet(parts.unet)
    motion = motion_model_from_state_dict(encoder_motion_state(read_state_dict(str(assets["motion"]))[0]), {}, "init")
    config = load_config(3, str(assets["config"]), steps=steps)
    data = ControlledClips(str(assets["csv"]), str(assets["videos"]), str(controls), config.frames, config.resolution)
    trained = train_video_controlnet(config, parts, load_motion_model(str(assets["motion"])), controlnet, motion, data,
                                     str(output), resume=resume, log=lambda _: None)
    return trained, parts, data


def test_stage3_learns_and_resumes(assets, tmp_path):
    from diffusers import DDPMScheduler

    from train.motion_training import SCHEDULE, clip_inputs, controlled_loss
    from train.motion_unet import MotionUNet
    from dreamoving.motion_files import load_motion_model

    _, controls = train_fixtures.write_clips(tmp_path / "controls")

    def fixed(trained, parts, data):
        scheduler = DDPMScheduler(**SCHEDULE)
        inputs = [clip_inputs(parts, data[i], scheduler, torch.Generator().manual_seed(3 + i), 0.0) for i in range(2)]
        unet = MotionUNet(parts.unet, load_motion_model(str(assets["motion"])))
        with torch.no_grad():
            return controlled_loss(unet, trained, parts, inputs, scheduler, "cpu").item()

    start, parts, data = _stage3(assets, controls, tmp_path / "zero", steps=0)
    trained, parts, data = _stage3(assets, controls, tmp_path / "long", steps=12)
    assert fixed(trained, parts, data) < fixed(start, parts, data)
    straight, _, _ = _stage3(assets, controls, tmp_path / "straight", steps=4)
    _stage3(assets, controls, tmp_path / "split", steps=2)
    resumed, _, _ = _stage3(assets, controls, tmp_path / "split", steps=4, resume=True)
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)


def test_only_the_trained_part_changes(assets, tmp_path):
    from dreamoving.motion_files import load_motion_model
    from train.config import load_config
    from train.data import WebVidClips
    from train.motion_training import train_motion
    from train.sd15 import load_sd15

    parts = load_sd15(str(assets["sd15"]))
    frozen = {name: {k: v.clone() for k, v in module.state_dict().items()}
              for name, module in (("unet", parts.unet), ("vae", parts.vae), ("text", parts.text_encoder))}
    config = load_config(2, str(assets["config"]), steps=2)
    train_motion(config, parts, load_motion_model(str(assets["motion"])),
                 WebVidClips(str(assets["csv"]), str(assets["videos"]), 4, 32), str(tmp_path), log=lambda _: None)
    for name, module in (("unet", parts.unet), ("vae", parts.vae), ("text", parts.text_encoder)):
        assert all(torch.equal(v, frozen[name][k]) for k, v in module.state_dict().items()), f"{name} changed"


def test_timestep_sampling_uniform_and_cubic():
    """Uniform draws are what they were (torch.randint on the step's generator); cubic draws (T2I-Adapter's, for
    the Video ControlNet) stay in range, are deterministic and mostly noisy: P(t >= 500) = 0.5^(1/3) ~ 0.79."""
    from train.motion_training import draw_timestep

    def draws(sampling, n=4000, seed=0):
        gen = torch.Generator().manual_seed(seed)
        return torch.cat([draw_timestep(1000, gen, sampling) for _ in range(n)])

    uniform, cubic = draws("uniform"), draws("cubic")
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(uniform, torch.cat([torch.randint(0, 1000, (1,), generator=gen) for _ in range(4000)]))
    assert torch.equal(cubic, draws("cubic")) and int(cubic.min()) >= 0 and int(cubic.max()) <= 999
    assert abs((uniform >= 500).float().mean().item() - 0.5) < 0.03
    assert abs((cubic >= 500).float().mean().item() - 0.5 ** (1 / 3)) < 0.03
    with pytest.raises(ValueError, match="timesteps: expected one of .*'uniform'.*got 'linear'"):
        draws("linear", n=1)
