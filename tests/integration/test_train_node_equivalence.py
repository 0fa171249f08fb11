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
        train_side = train_side_model(x, t, text, frames=frames)
        plain = unet(x, t, encoder_hidden_states=text).sample
    assert (train_side - plain).abs().max() > 1e-3, "the motion blocks change the output"
    torch.testing.assert_close(train_side, node_side.float(), rtol=1e-4, atol=1e-4)
