"""The train-side forward (diffusers U-Net + motion hooks) equals the node-side forward (ComfyUI U-Net with
injected motion blocks) on the same weights and inputs."""
from __future__ import annotations

import torch

from dmtest import fixtures

SMALL_LDM_UNET = dict(in_channels=4, out_channels=4, model_channels=320, attention_resolutions=[1, 2],
                      num_res_blocks=1, channel_mult=[1, 1], num_heads=8, use_spatial_transformer=True,
                      transformer_depth=1, context_dim=768, legacy=False)


def test_train_and_node_forwards_agree(pack_host):
    import comfy.model_management
    import nodes

    from dreamoving.motion_files import load_motion_model
    from train.motion_unet import MotionUNet
    from train.sd15 import unet_from_single_file

    folders = fixtures.model_folders()
    frames = 6
    gen = torch.Generator().manual_seed(0)
    x, text = torch.randn(frames, 4, 8, 8, generator=gen), torch.randn(frames, 77, 768, generator=gen)
    t = torch.full((frames,), 500.0)

    model = nodes.CheckpointLoaderSimple().load_checkpoint(fixtures.SMALL_CKPT)[0]
    patched = nodes.NODE_CLASS_MAPPINGS["DreaMovingMotionUNetLoader"].execute(
        model, fixtures.SMALL_MM, 1.0, 1.0, "use existing").result[0]
    comfy.model_management.load_models_gpu([patched])
    options = dict(patched.model_options["transformer_options"], cond_or_uncond=[0])
    with torch.no_grad():
        node_side = patched.model.diffusion_model(x, timesteps=t, context=text, transformer_options=options)

    unet = unet_from_single_file(str(folders["checkpoints"] / fixtures.SMALL_CKPT), SMALL_LDM_UNET)
    train_side_model = MotionUNet(unet, load_motion_model(str(folders["animatediff_models"] / fixtures.SMALL_MM)).float())
    with torch.no_grad():
        plain = unet(x, t, encoder_hidden_states=text).sample
        train_side = train_side_model(x, t, text, frames=frames)
    assert (train_side - plain).abs().max() > 1e-3, "the motion blocks change the output"
    torch.testing.assert_close(train_side, node_side.float(), rtol=1e-4, atol=1e-4)


def test_stage2_export_loads_in_the_node_loader(pack_host, tmp_path):
    """Train stage 2 one step on a U-Net with dm_small_sd15's layout; the export drives that checkpoint in ComfyUI."""
    import folder_paths

    from dmtest import prompts, train_fixtures
    from dreamoving.motion_files import load_motion_model
    from train.config import load_config
    from train.data import WebVidClips
    from train.motion_training import train_motion
    from train.sd15 import load_sd15

    sd15 = train_fixtures.write_sd15_folder(tmp_path / "sd15", train_fixtures.SMALL_LAYOUT_UNET)
    init = train_fixtures.write_motion_init(tmp_path / "init.safetensors", train_fixtures.SMALL_LAYOUT_UNET)
    csv, videos = train_fixtures.write_clips(tmp_path / "data")
    config = load_config(2, steps=1, frames=4, resolution=32, batch_size=1, mixed_precision="no",
                         gradient_checkpointing=True, checkpoint_every=100, sample_every=1)
    out = tmp_path / "run"
    train_motion(config, load_sd15(str(sd15)), load_motion_model(str(init)),
                 WebVidClips(str(csv), str(videos), 4, 32), str(out))
    assert (out / "sample-1.mp4").stat().st_size > 0, "the periodic sample video was written"
    folder_paths.add_model_folder_path("animatediff_models", str(out))
    video = pack_host.run(prompts.motion_video(fixtures.SMALL_CKPT, "motion_module.safetensors", 4,
                                               sampler="KSampler"))["5"][0][0]["samples"]
    assert video.shape == (4, 4, 8, 8) and torch.isfinite(video).all()


def test_stage3_video_controlnet_export_matches_the_node_side(pack_host, tmp_path):
    """Stage 3 trains a ControlNet + motion blocks (U-Net frozen); its export, loaded by the node loader,
    gives the train-side residuals."""
    from diffusers import ControlNetModel

    from dmtest import train_fixtures
    from dmtest.animatediff import motion_file_tensors
    from dreamoving.controlnet_files import encoder_motion_state
    from dreamoving.motion_files import load_motion_model, motion_model_from_state_dict
    from train.config import load_config
    from train.data import ControlledClips
    from train.motion_training import train_video_controlnet
    from train.sd15 import load_sd15

    layout = train_fixtures.SMALL_LAYOUT_UNET
    sd15 = train_fixtures.write_sd15_folder(tmp_path / "sd15", layout)
    unet_motion = train_fixtures.write_motion_init(tmp_path / "unet_motion.safetensors", layout)
    csv, videos = train_fixtures.write_clips(tmp_path / "data")
    _, controls = train_fixtures.write_clips(tmp_path / "controls")  # stand-in pose renders, frame-aligned
    parts = load_sd15(str(sd15))
    controlnet = ControlNetModel.from_unet(parts.unet)
    with torch.no_grad():  # as if already trained: zero convs off zero, so the comparison below means something
        for name, param in controlnet.named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block")):
                param.copy_(0.05 * torch.randn(param.shape, generator=torch.Generator().manual_seed(len(name))))
    live = motion_file_tensors(list(layout["block_out_channels"]), 1, mid=True, pe_len=32, seed=9)
    controlnet_motion = motion_model_from_state_dict(encoder_motion_state(live), {}, "controlnet motion init")
    config = load_config(3, steps=1, frames=4, resolution=32, batch_size=1, mixed_precision="no",
                         gradient_checkpointing=False, checkpoint_every=100)
    trained = train_video_controlnet(config, parts, load_motion_model(str(unet_motion)), controlnet,
                                     controlnet_motion, ControlledClips(str(csv), str(videos), str(controls), 4, 32),
                                     str(tmp_path / "run"))
    exported = tmp_path / "run" / "video_controlnet.safetensors"
    node = pack_host.pack_module("nodes.video_controlnet").load_video_controlnet(str(exported))

    gen = torch.Generator().manual_seed(1)
    frames = 4
    x, text = torch.randn(frames, 4, 8, 8, generator=gen), torch.randn(frames, 77, 768, generator=gen)
    hint, t = torch.rand(frames, 3, 64, 64, generator=gen), torch.full((frames,), 300.0)
    with torch.no_grad():
        down, mid = trained(x, t, text, hint, frames=frames)
        ours = node.control_model(x=x, hint=hint, timesteps=t, context=text, video_frames=frames)
    assert len(ours["output"]) == len(down) and float(mid.abs().max()) > 1e-2
    for a, b in zip(list(down) + [mid], ours["output"] + ours["middle"]):
        torch.testing.assert_close(b.float(), a.float(), rtol=1e-4, atol=1e-4)
    assert node.control_model.motion is not None and node.control_model.motion.spec.mid_channels == 320


def test_single_file_sd15_loads_for_training_and_its_vae_matches_comfyui(pack_host):
    from pathlib import Path

    import comfy.sd

    from train.sd15 import load_sd15

    path = fixtures.ensure_single_file_sd15()
    tokenizer = Path(comfy.sd.__file__).parent / "sd1_tokenizer"
    parts = load_sd15(str(path), str(tokenizer), SMALL_LDM_UNET)
    assert parts.encode_text(["a dancer"]).shape == (1, 77, 768)
    vae = comfy.sd.load_checkpoint_guess_config(str(path), output_vae=True, output_clip=False)[2]
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = ((parts.vae.decode(latent).sample.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1)
    torch.testing.assert_close(ours, vae.decode(latent).float(), rtol=1e-3, atol=2e-3)


def test_train_side_sampler_is_comfyuis_euler(pack_host):
    """The evaluation's sampler (train.sampling) gives what ComfyUI's own Euler sampler gives on the same motion
    U-Net, prompts, noise and steps: no clamping of the predicted latents, starting at the noisiest step."""
    import comfy.sample
    import comfy.samplers
    import nodes

    from dreamoving.motion_files import load_motion_model
    from train.motion_unet import MotionUNet
    from train.sampling import sample_latents
    from train.sd15 import SD15Parts, unet_from_single_file

    folders = fixtures.model_folders()
    frames, steps, cfg = 4, 5, 6.0
    gen = torch.Generator().manual_seed(3)
    prompts = {"a dancer": torch.randn(77, 768, generator=gen), "": torch.randn(77, 768, generator=gen)}
    unet = unet_from_single_file(str(folders["checkpoints"] / fixtures.SMALL_CKPT), SMALL_LDM_UNET)
    parts = SD15Parts(unet, None, None, None, _text_cache=prompts)
    motion = load_motion_model(str(folders["animatediff_models"] / fixtures.SMALL_MM)).float()
    with torch.no_grad():
        ours = sample_latents(MotionUNet(unet, motion), parts, "a dancer", frames, (8, 8), steps, cfg, seed=5)

    model = nodes.CheckpointLoaderSimple().load_checkpoint(fixtures.SMALL_CKPT)[0]
    patched = nodes.NODE_CLASS_MAPPINGS["DreaMovingMotionUNetLoader"].execute(
        model, fixtures.SMALL_MM, 1.0, 1.0, "autoselect").result[0]
    sigmas = patched.get_model_object("model_sampling").sigmas
    trailing = torch.cat([sigmas[[999 - 1000 // steps * i for i in range(steps)]], sigmas.new_zeros(1)])
    positive, negative = ([[prompts[p][None], {}]] for p in ("a dancer", ""))
    noise = torch.randn(frames, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    comfy_side = comfy.sample.sample_custom(patched, noise, cfg, comfy.samplers.sampler_object("euler"), trailing,
                                            positive, negative, torch.zeros_like(noise), disable_pbar=True, seed=5)
    comfy_side = comfy_side.float() * patched.model.latent_format.scale_factor
    assert ours.abs().max() > 1.5, "some predicted latents leave [-1, 1], so clamping would show"
    torch.testing.assert_close(ours, comfy_side, rtol=1e-3, atol=1e-3)
