"""The embedded model's base parts against ComfyUI's own: the TAESD-shaped VAE and the CLIP tokenizer files."""
from __future__ import annotations

import torch


def test_our_taesd_is_comfyuis_taesd(inprocess_host):
    import comfy.taesd.taesd

    from dreamoving.taesd import TAESD

    ours, theirs = TAESD(), comfy.taesd.taesd.TAESD()
    with torch.no_grad():
        ours.vae_scale.fill_(0.7)
        ours.vae_shift.fill_(0.1)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    theirs.load_state_dict(ours.state_dict())
    images = torch.rand(2, 3, 48, 32) * 2 - 1
    with torch.no_grad():
        latents = ours.encode(images)
        assert torch.allclose(latents, theirs.encode(images), atol=1e-6)
        assert torch.allclose(ours.decode(latents), theirs.decode(latents), atol=1e-6)


def test_clip_tokenizer_from_open_clip_equals_comfyuis_sd1_tokenizer(comfy_root, tmp_path):
    import json

    from train.clip_tokenizer import clip_tokenizer_folder

    ours, theirs = tmp_path / "tok", comfy_root / "comfy" / "sd1_tokenizer"
    assert clip_tokenizer_folder(str(ours)) == str(ours)
    assert (ours / "merges.txt").read_bytes() == (theirs / "merges.txt").read_bytes()
    assert json.loads((ours / "vocab.json").read_text(encoding="utf-8")) == \
        json.loads((theirs / "vocab.json").read_text(encoding="utf-8"))


def test_embedded_checkpoint_loads_as_sd15_and_computes_what_training_does(inprocess_host, tmp_path):
    """Load Checkpoint's view of the embedded base (random trained parts) equals the training side's."""
    import comfy.sd
    import comfy.supported_models
    from safetensors.torch import save_file

    from dreamoving.embedded_model import UNET_CONFIG
    from dreamoving.ldm_keys import unet_to_ldm
    from dreamoving.taesd import TAESD
    from train.embedded import base_parts, new_unet, write_checkpoint

    torch.manual_seed(1)
    vae = TAESD()
    with torch.no_grad():
        vae.vae_scale.fill_(0.9)
    save_file(vae.state_dict(), str(tmp_path / "taesd.safetensors"))
    unet = new_unet(seed=3)
    with torch.no_grad():  # diffusers zero-initialises conv_out: give it values so the output means something
        unet.conv_out.weight.normal_(0, 0.02)
    path = str(tmp_path / "embedded.safetensors")
    write_checkpoint(path, unet_to_ldm(unet.state_dict(), UNET_CONFIG["num_res_blocks"]), vae.state_dict())
    parts = base_parts(str(tmp_path / "taesd.safetensors"), str(tmp_path / "tok"), unet=unet)

    model, clip, comfy_vae = comfy.sd.load_checkpoint_guess_config(path, output_vae=True, output_clip=True)[:3]
    assert isinstance(model.model.model_config, comfy.supported_models.SD15)
    cond = clip.encode_from_tokens(clip.tokenize("a person in a red striped shirt dancing"))
    ours_text = parts.encode_text(["a person in a red striped shirt dancing"])
    torch.testing.assert_close(cond.float(), ours_text, rtol=0, atol=2e-2 * ours_text.abs().max().item())

    x = torch.randn(2, 4, 12, 8, generator=torch.Generator().manual_seed(4))
    t = torch.tensor([999.0, 250.0])
    with torch.no_grad():
        theirs = model.model.diffusion_model(x, t, context=ours_text.expand(2, -1, -1)).float()
        ours = unet.half().float()(x, t, encoder_hidden_states=ours_text.expand(2, -1, -1)).sample
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-2 * ours.abs().max().item())

    images = torch.rand(1, 96, 64, 3)
    latents = comfy_vae.encode(images)
    with torch.no_grad():
        ours_latents = vae.half().float().encode(images.permute(0, 3, 1, 2) * 2 - 1)
    torch.testing.assert_close(latents.float(), ours_latents, rtol=0, atol=2e-2 * ours_latents.abs().max().item())
