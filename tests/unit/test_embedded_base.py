"""The embedded model's base parts: seeded weights, the generated text encoder, the TAESD-shaped VAE and its
training, U-Net keys in the LDM layout, and the CLIP tokenizer built from open_clip's BPE file."""
from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

from dreamoving.embedded_model import TEXT_ENCODER_PREFIX, UNET_CONFIG, generated_text_encoder, text_encoder_shapes
from dreamoving.ldm_keys import unet_to_ldm
from dreamoving.seeded_weights import seeded_init, seeded_uniform, tensor_digest
from dreamoving.taesd import SD15_SCALE_FACTOR, TAESD

SMALL_SHAPES = {"a.weight": (64, 32), "a.bias": (64,), "norm.weight": (32,), "token_embedding.weight": (100, 8)}


def test_seeded_uniform_is_a_pure_function_of_seed_name_and_shape():
    a = seeded_uniform(3, "w", (1000,), 0.5)
    assert torch.equal(a, seeded_uniform(3, "w", (1000,), 0.5))
    assert not torch.equal(a, seeded_uniform(4, "w", (1000,), 0.5))
    assert not torch.equal(a, seeded_uniform(3, "v", (1000,), 0.5))
    assert a.min() >= -0.5 and a.max() < 0.5 and abs(a.mean()) < 0.03
    assert abs(a.std() - 0.5 / math.sqrt(3)) < 0.01  # uniform on [-b, b): std b / sqrt(3)


def test_seeded_init_scales_and_a_digest_recorded_on_another_machine():
    tensors = seeded_init(SMALL_SHAPES, seed=1)
    assert torch.all(tensors["a.bias"] == 0) and torch.all(tensors["norm.weight"] == 1)
    assert abs(tensors["a.weight"].float().std() - 1 / math.sqrt(32)) < 0.01
    assert abs(tensors["token_embedding.weight"].float().std() - 0.02) < 0.003
    # bit-identical everywhere: this digest was computed when the generator was written
    assert tensor_digest(tensors) == "85a74d047e5f7845498f0c194ba39f10507ad9f0201acf0e6a8a80e636948c19"
    assert tensor_digest(tensors) != tensor_digest(seeded_init(SMALL_SHAPES, seed=2))


def test_generated_text_encoder_matches_its_recorded_digest_and_clip_l_shapes():
    tensors = generated_text_encoder()  # raises if the digest differs
    assert set(tensors) == set(text_encoder_shapes())
    assert sum(t.numel() for t in tensors.values()) == 123_060_480  # CLIP-L's text transformer
    assert tensors[TEXT_ENCODER_PREFIX + "embeddings.token_embedding.weight"].shape == (49408, 768)
    assert all(t.dtype == torch.float16 for t in tensors.values())


def test_taesd_calibration_gives_unit_latents_and_keeps_the_reconstruction():
    torch.manual_seed(0)
    model = TAESD()
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        before = model.decode(model.encode(images))
        model.calibrate(model.taesd_encoder(images * 0.5 + 0.5))
        latents = model.encode(images) * SD15_SCALE_FACTOR
        after = model.decode(model.encode(images))
    assert latents.shape == (4, 4, 4, 4)
    assert abs(latents.mean()) < 1e-4 and abs(latents.std() - 1) < 1e-4
    assert torch.allclose(before, after, atol=1e-4)


def test_vae_training_loss_falls_resumes_and_exports_comfyui_keys(tmp_path):
    from train.vae_training import train_vae

    gen = torch.Generator().manual_seed(0)
    # flat-coloured rectangles on a background: what rendered frames are made of
    frames = []
    for _ in range(6):
        image = torch.rand(3, 1, 1, generator=gen).expand(3, 48, 32).clone()
        top, left = torch.randint(0, 24, (2,), generator=gen).tolist()
        image[:, top:top + 20, left:left + 10] = torch.rand(3, 1, 1, generator=gen)
        frames.append({"pixels": (image * 2 - 1)[None]})
    losses = []
    train_vae(frames, str(tmp_path), steps=30, batch=4, crop=16, lr=2e-3, checkpoint_every=15,
              log=lambda line: losses.append(float(line.split()[-1])))
    assert losses[-1] < 0.5 * losses[0]
    exported = load_file(str(tmp_path / "taesd.safetensors"))
    assert set(exported) == set(TAESD().state_dict())
    resumed = []
    train_vae(frames, str(tmp_path / "again"), steps=15, batch=4, crop=16, lr=2e-3, checkpoint_every=15)
    train_vae(frames, str(tmp_path / "again"), steps=30, batch=4, crop=16, lr=2e-3, checkpoint_every=15, resume=True,
              log=resumed.append)
    assert resumed[0].startswith("resumed from")
    again = load_file(str(tmp_path / "again" / "taesd.safetensors"))
    assert all(torch.allclose(exported[k], again[k], atol=1e-5) for k in exported)  # resuming takes the same path
    with pytest.raises(ValueError, match="crop: expected a multiple of 8"):
        train_vae(frames, str(tmp_path / "bad"), steps=1, crop=12)


@pytest.mark.parametrize("config", [UNET_CONFIG, dict(UNET_CONFIG, num_res_blocks=2, channel_mult=[1, 2, 4, 4],
                                                       attention_resolutions=[4, 2, 1])], ids=["embedded", "sd15"])
def test_unet_to_ldm_inverts_diffusers_own_conversion(config):
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, create_unet_diffusers_config_from_ldm

    original = {"model": {"params": {"unet_config": {"params": config},
                                     "first_stage_config": {"params": {"ddconfig": {"ch_mult": [1, 2, 4, 4]}}}}}}
    unet_config = create_unet_diffusers_config_from_ldm(original, {})
    with torch.device("meta"):
        unet = UNet2DConditionModel(**unet_config)
    state = {k: torch.full((1,), float(i)) for i, k in enumerate(unet.state_dict())}
    ldm = {"model.diffusion_model." + k: v for k, v in unet_to_ldm(state, unet_config["layers_per_block"]).items()}
    back = convert_ldm_unet_checkpoint(ldm, unet_config)
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)


def test_clip_tokenizer_from_open_clip_gives_clips_ids(tmp_path):
    from transformers import CLIPTokenizer

    from train.clip_tokenizer import clip_tokenizer_folder

    tokenizer = CLIPTokenizer.from_pretrained(clip_tokenizer_folder(str(tmp_path / "tok")), local_files_only=True)
    ids = tokenizer("a woman with black long hair", padding="max_length", max_length=77).input_ids
    assert ids[:8] == [49406, 320, 2308, 593, 1449, 1538, 2225, 49407] and len(ids) == 77 and ids[-1] == 49407


def test_base_unet_trains_and_its_checkpoint_loads_for_the_stages(tmp_path):
    from safetensors.torch import save_file

    from train.embedded import BASE_CONFIG, base_parts, train_base_unet
    from train.sd15 import load_sd15, unet_params_from_state

    torch.manual_seed(0)
    save_file(TAESD().state_dict(), str(tmp_path / "taesd.safetensors"))
    parts = base_parts(str(tmp_path / "taesd.safetensors"), str(tmp_path / "tok"))
    images = [{"pixels": torch.rand(1, 3, 32, 32) * 2 - 1, "caption": f"a person in a {c} shirt"}
              for c in ("red", "blue", "green")]
    losses = []
    config = BASE_CONFIG.with_overrides(dict(steps=4, batch_size=2, checkpoint_every=2))
    trained = train_base_unet(config, parts, images, str(tmp_path / "unet"), log=losses.append)
    assert len([line for line in losses if line.startswith("step")]) == 4
    state = load_file(str(tmp_path / "unet" / "checkpoint.safetensors"))
    assert unet_params_from_state(state) == UNET_CONFIG
    loaded = load_sd15(str(tmp_path / "unet" / "checkpoint.safetensors"), str(tmp_path / "tok"), unet_params=None)
    assert isinstance(loaded.vae, TAESD)
    x, t = torch.randn(1, 4, 4, 4), torch.tensor([500])
    text = loaded.encode_text(["a person"])
    with torch.no_grad():
        ours = trained.float()(x, t, encoder_hidden_states=text).sample
        theirs = loaded.unet(x, t, encoder_hidden_states=text).sample
    assert torch.allclose(ours, theirs, atol=2e-2 * ours.abs().max())  # fp16 storage
    assert torch.allclose(text, parts.encode_text(["a person"]), atol=1e-3)


def test_shipped_embedded_weights_match_their_manifest_and_fit_the_repository():
    import json
    from pathlib import Path

    from dreamoving.embedded_model import INSTALLED, MANIFEST, file_digest
    from dreamoving.packed_weights import PACKED_FORMAT
    from dreamoving.weights import read_state_dict

    folder = Path(__file__).resolve().parents[2] / "weights" / "embedded"
    manifest = json.loads((folder / MANIFEST).read_text())
    assert set(manifest["files"]) == set(INSTALLED)
    assert sum((folder / name).stat().st_size for name in INSTALLED) < 80 * 2 ** 20
    for name, digest in manifest["files"].items():
        assert file_digest(str(folder / name)) == digest, name
        assert read_state_dict(str(folder / name))[1]["format"] == PACKED_FORMAT
    assert manifest["commit"] and manifest["recipe"]["controlnet"]["steps"] > 0
