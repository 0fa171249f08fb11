"""Stage 1 (Content Guider) on tiny models, generated images and the test insightface pack, on CPU."""
from __future__ import annotations

import pytest
import torch

from dmtest import insightface_packs, train_fixtures


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from dreamoving.face_analysis import FaceAnalyzer
    from train.guider_training import prepare_features

    root = tmp_path_factory.mktemp("guider")
    clip = train_fixtures.write_clip_vision_folder(root / "clip")
    images = train_fixtures.write_person_images(root / "images")
    faces = insightface_packs.ensure_pack(root / "insightface")
    assert prepare_features(str(images), str(clip), FaceAnalyzer(str(faces), "buffalo_l", ["CPUExecutionProvider"])) == 2
    return {"sd15": train_fixtures.write_sd15_folder(root / "sd15"), "images": images, "clip": clip, "faces": faces}


def fixed_loss(parts, model, dataset) -> float:
    from diffusers import DDPMScheduler

    from train.guider_training import guider_loss
    from train.motion_training import SCHEDULE, clip_inputs

    scheduler = DDPMScheduler(**SCHEDULE)
    inputs = [clip_inputs(parts, dataset[i], scheduler, torch.Generator().manual_seed(7 + i), 0.0) for i in range(2)]
    with torch.no_grad():
        return guider_loss(model, parts, inputs, scheduler, "cpu").item()


def test_stage1_trains_the_guider_and_exports_our_format(assets, tmp_path):
    from dreamoving.guider_files import load_content_guider
    from train.config import load_config
    from train.guider_training import GuidedUNet, GuiderImages, cross_attention_layers, new_content_guider, train_guider
    from train.sd15 import load_sd15

    parts = load_sd15(str(assets["sd15"]))
    guider = new_content_guider(parts.unet, clip_dim=32, depth=2, dim_head=8)
    layers = cross_attention_layers(parts.unet)
    # IP-Adapter order: down (32, 64), up (64, 64, 32, 32), then the middle (64)
    assert guider.layer_channels == [32, 64, 64, 64, 32, 32, 64] == [layer.to_q.out_features for layer in layers]
    assert torch.equal(guider.layers[0].to_k_face.weight, layers[0].to_k.weight), "K/V start as the text ones"
    dataset = GuiderImages(str(assets["images"]), 32)
    model = GuidedUNet(parts.unet, guider)
    before = fixed_loss(parts, model, dataset)
    config = load_config(1, steps=20, batch_size=2, resolution=32, lr=1e-3, caption_dropout=0.0,
                         gradient_checkpointing=False, mixed_precision="no", checkpoint_every=100)
    losses = []
    trained = train_guider(config, parts, guider, dataset, str(tmp_path / "run"), log=losses.append)
    assert len([line for line in losses if line.startswith("step")]) == 20
    after = fixed_loss(parts, GuidedUNet(parts.unet, trained), dataset)
    assert after < before, f"{before:.5f} -> {after:.5f}"
    exported = load_content_guider(str(tmp_path / "run" / "content_guider.safetensors"))
    assert exported.kinds == {"face": "faceid_plus", "cloth": "resampler"}
    for key, value in trained.state_dict().items():
        assert torch.equal(exported.state_dict()[key], value), key


def test_stage1_command_prepares_features_and_exports(assets, tmp_path):
    import json

    from dreamoving.guider_files import load_content_guider
    from train.run import main

    images = train_fixtures.write_person_images(tmp_path / "images")  # no features yet: the command prepares them
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"resolution": 32, "batch_size": 1, "mixed_precision": "no",
                                  "gradient_checkpointing": False}))
    from safetensors.torch import save_file

    from dmtest import ipadapter

    plus = tmp_path / "ip-adapter-plus_tiny.safetensors"  # an IP-Adapter Plus file for the tiny U-Net
    save_file(ipadapter.plus_tensors([32, 64, 64, 64, 32, 32, 64], queries=16, dim=32, depth=1, heads=1,
                                     embedding_dim=32, context_dim=32), str(plus))
    assert main(["--stage", "1", "--cloth-init", str(plus), "--sd15", str(assets["sd15"]), "--images", str(images),
                 "--clip-vision",
                 str(assets["clip"]), "--insightface", str(assets["faces"]), "--output", str(tmp_path / "run"),
                 "--config", str(config), "--steps", "1"]) == 0
    assert len(list(images.glob("*.features.safetensors"))) == 2
    guider = load_content_guider(str(tmp_path / "run" / "content_guider.safetensors"))
    assert guider.kinds == {"face": "faceid_plus", "cloth": "resampler"} and len(guider.layers) == 7


def test_features_from_an_openclip_checkpoint(tmp_path):
    from open_clip.transformer import VisionTransformer
    from safetensors.torch import load_file, save_file

    from dreamoving.face_analysis import FaceAnalyzer
    from train.guider_training import prepare_features

    torch.manual_seed(0)
    tower = VisionTransformer(image_size=32, patch_size=8, width=64, layers=2, heads=1, mlp_ratio=2.0, output_dim=16)
    save_file({"visual." + k: v.contiguous() for k, v in tower.state_dict().items()}, str(tmp_path / "vit.safetensors"))
    images = train_fixtures.write_person_images(tmp_path / "images", count=1)
    faces = insightface_packs.ensure_pack(tmp_path / "insightface")
    prepare_features(str(images), str(tmp_path / "vit.safetensors"),
                     FaceAnalyzer(str(faces), "buffalo_l", ["CPUExecutionProvider"]))
    features = load_file(str(images / "person0.features.safetensors"))
    assert features["face_hidden"].shape == features["cloth_hidden"].shape == (17, 64)  # 16 patches + class
    assert features["id"].shape == (512,) and float(features["id"].norm()) > 0.99


def test_stage1_resumes_to_the_same_state(assets, tmp_path):
    from train.config import load_config
    from train.guider_training import GuiderImages, new_content_guider, train_guider
    from train.sd15 import load_sd15

    def run(output, steps, resume=False):
        parts = load_sd15(str(assets["sd15"]))
        torch.manual_seed(0)
        guider = new_content_guider(parts.unet, clip_dim=32, depth=1, dim_head=8)
        config = load_config(1, steps=steps, batch_size=2, resolution=32, lr=1e-3, gradient_checkpointing=False,
                             mixed_precision="no", checkpoint_every=2)
        return train_guider(config, parts, guider, GuiderImages(str(assets["images"]), 32), str(output), resume,
                            log=lambda _: None)

    straight = run(tmp_path / "straight", 4)
    run(tmp_path / "split", 2)
    resumed = run(tmp_path / "split", 4, resume=True)
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)


def test_stage1_with_the_guiders_own_image_encoder_on_reference_pairs(assets, tmp_path):
    """The embedded model's stage 1: features from a seeded patch encoder of a reference and its face crop,
    dropped images take the mean-image features; the export carries the encoder."""
    from dreamoving.guider_files import load_content_guider
    from dreamoving.image_encoder import PatchImageEncoder
    from train.config import load_config
    from train.guider_training import EncodedReferences, GuidedUNet, new_content_guider, train_guider
    from train.sd15 import load_sd15

    parts = load_sd15(str(assets["sd15"]))
    encoder = PatchImageEncoder(size=32, patch=8, dim=16, seed=5)
    gen = torch.Generator().manual_seed(0)
    people = [{"pixels": torch.rand(1, 3, 32, 32, generator=gen) * 2 - 1, "caption": "a person",
               "reference": torch.rand(3, 48, 32, generator=gen), "face": torch.rand(3, 16, 16, generator=gen)}
              for _ in range(2)]
    dataset = EncodedReferences(people, encoder)
    item = dataset[0]
    assert item["features"]["cloth_hidden"].shape == (17, 16) and item["features"]["face_hidden"].shape == (17, 16)
    assert torch.equal(item["uncond_features"]["cloth_hidden"][1:], encoder.positions)  # a mean image: 0 after norm
    guider = new_content_guider(parts.unet, clip_dim=16, depth=1, dim_head=8, face_kind="resampler", width=16)
    model = GuidedUNet(parts.unet, guider)
    before = fixed_loss(parts, model, dataset)
    config = load_config(1, steps=20, batch_size=2, resolution=32, lr=1e-3, caption_dropout=0.3,
                         gradient_checkpointing=False, mixed_precision="no", checkpoint_every=100)
    trained = train_guider(config, parts, guider, dataset, str(tmp_path / "run"), log=lambda _: None,
                           image_encoder=encoder)
    after = fixed_loss(parts, GuidedUNet(parts.unet, trained), dataset)
    assert after < before, f"{before:.5f} -> {after:.5f}"
    exported = load_content_guider(str(tmp_path / "run" / "content_guider.safetensors"))
    assert exported.kinds == {"face": "resampler", "cloth": "resampler"}
    assert exported.image_encoder.config() == {"size": 32, "patch": 8, "dim": 16}
    image = torch.rand(1, 40, 24, 3, generator=gen)
    assert torch.equal(exported.image_encoder.encode_image(image)["penultimate_hidden_states"],
                       encoder.encode_image(image)["penultimate_hidden_states"])
    assert torch.equal(exported.image_encoder.patch_embed.weight, encoder.patch_embed.weight), "the encoder is frozen"
    assert exported.with_streams_of(exported).image_encoder is exported.image_encoder


def test_patch_image_encoder_is_seeded_and_answers_like_clip_vision():
    from dreamoving.image_encoder import PatchImageEncoder

    a, b = PatchImageEncoder(seed=1), PatchImageEncoder(seed=1)
    assert torch.equal(a.patch_embed.weight, b.patch_embed.weight)
    assert not torch.equal(a.patch_embed.weight, PatchImageEncoder(seed=2).patch_embed.weight)
    out = a.encode_image(torch.rand(2, 384, 256, 3))
    assert out["penultimate_hidden_states"].shape == (2, 1 + 14 * 14, 256) and out["image_embeds"].shape == (2, 256)
    with pytest.raises(ValueError, match="multiple of patch"):
        PatchImageEncoder(size=100, patch=8)
