"""Issue 5 in a real ComfyUI: the Content Guider's attention, composition, face analysis and workflows."""
from __future__ import annotations

import copy

import pytest
import torch

from dmtest import fixtures, insightface_packs, prompts
from dmtest.inprocess import PromptFailed
from dmtest.reference import softmax_attention

FRAMES = 4


def guided_video(a_f: float, a_c: float, frames: int = FRAMES, guider: str = fixtures.GUIDER, face: bool = True,
                 cloth: bool = True, face_analysis: bool = True, dark_face: bool = False, **kw) -> dict:
    """Motion U-Net -> Content Guider Encode -> sampler; face/cloth images come from LoadImage files."""
    prompt = prompts.motion_video(fixtures.SMALL_CKPT, fixtures.SMALL_MM, frames, **kw)
    prompt["30"] = {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": fixtures.CLIP_VISION_H}}
    prompt["31"] = {"class_type": "DreaMovingContentGuiderLoader", "inputs": {
        "guider_file": guider, "stream": "face", "faceid_v2_scale": 1.0}}
    inputs = {"model": ["10", 0], "clip": ["1", 1], "clip_vision": ["30", 0], "guider": ["31", 0],
              "text": prompt["2"]["inputs"]["text"], "negative_text": prompt["3"]["inputs"]["text"], "a_f": a_f, "a_c": a_c, "start_percent": 0.0,
              "end_percent": 1.0, "face_crop": "align on landmarks", "no_face": "error"}
    if face:
        prompt["33"] = {"class_type": "LoadImage", "inputs": {"image": "dm_dark.png" if dark_face else "dm_face.png"}}
        inputs["face_image"] = ["33", 0]
    if cloth:
        prompt["34"] = {"class_type": "LoadImage", "inputs": {"image": "dm_cloth.png"}}
        inputs["cloth_image"] = ["34", 0]
    if face_analysis:
        prompt["32"] = {"class_type": "DreaMovingInsightFaceLoader", "inputs": {"model_pack": "buffalo_l",
                                                                                 "provider": "auto"}}
        inputs["face_analysis"] = ["32", 0]
    prompt["35"] = {"class_type": "DreaMovingContentGuiderEncode", "inputs": inputs}
    prompt["5"]["inputs"].update({"model": ["35", 0], "positive": ["35", 1], "negative": ["35", 2]})
    return prompt


@pytest.fixture(scope="module")
def images(pack_host):
    import folder_paths
    from PIL import Image

    folder = folder_paths.get_input_directory()
    Image.fromarray(insightface_packs.face_image(0)).save(f"{folder}/dm_face.png")
    Image.fromarray(insightface_packs.face_image(7)[::2, ::2]).save(f"{folder}/dm_cloth.png")
    Image.fromarray((insightface_packs.face_image(0) * 0).astype("uint8")).save(f"{folder}/dm_dark.png")


def samples(host, prompt):
    return host.run(prompt)["5"][0][0]["samples"]


def test_zero_strengths_are_bit_identical_to_no_guider(pack_host, images):
    plain = samples(pack_host, prompts.motion_video(fixtures.SMALL_CKPT, fixtures.SMALL_MM, FRAMES, sampler="KSampler"))
    guided = samples(pack_host, guided_video(0.0, 0.0, sampler="KSampler"))
    assert torch.equal(plain, guided)
    face_only = samples(pack_host, guided_video(1.0, 0.0, sampler="KSampler"))
    assert not torch.equal(plain, face_only)
    assert torch.equal(face_only, samples(pack_host, guided_video(1.0, 0.0, cloth=False, sampler="KSampler"))), \
        "with a_c = 0 the cloth image changes nothing"


def _attention_patch(pack_host, a_f, a_c):
    """The guided MODEL's first attn2 replacement, its guider and its streams' tokens."""
    import nodes

    model = nodes.CheckpointLoaderSimple().load_checkpoint(fixtures.SMALL_CKPT)[0]
    guider_files = pack_host.pack_module("dreamoving.guider_files")
    patch_mod = pack_host.pack_module("nodes.guider_patch")
    guider = guider_files.load_content_guider(str(fixtures.model_folders()["dreamoving"] / fixtures.GUIDER))
    gen = torch.Generator().manual_seed(3)
    tokens = {s: (torch.randn(1, n, 768, generator=gen), torch.randn(1, n, 768, generator=gen))
              for s, n in (("face", 4), ("cloth", 16))}
    guided = patch_mod.attach_guider(model, guider, tokens, {"face": a_f, "cloth": a_c}, 0.0, 1.0)
    return model, guided, guider, tokens, patch_mod


@pytest.mark.parametrize("order", [[0, 1], [1, 0]])
def test_patch_equals_eq1_for_any_chunk_order(pack_host, order):
    a_f, a_c = 0.6, 0.0
    _, guided, guider, tokens, _ = _attention_patch(pack_host, a_f, a_c)
    patch = guided.model_options["transformer_options"]["patches_replace"]["attn2"][("input", 1)]
    gen = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(2 * FRAMES, 16, 320, generator=gen) for _ in range(3))
    out = patch(q, k, v, {"n_heads": 8, "cond_or_uncond": order, "sigmas": torch.tensor([1.0])})
    layer = guider.layers[0]
    expected = []
    for chunk, c in enumerate(order):
        rows = slice(chunk * FRAMES, (chunk + 1) * FRAMES)
        face = tokens["face"][c].expand(FRAMES, -1, -1)
        kf, vf = face @ layer.to_k_face.weight.T, face @ layer.to_v_face.weight.T
        expected.append(softmax_attention(q[rows], k[rows], v[rows], 8) +
                        a_f * softmax_attention(q[rows], kf, vf, 8))
    torch.testing.assert_close(out, torch.cat(expected), rtol=1e-5, atol=1e-5)


def test_composes_with_other_attn2_replacements_and_clones_share_weights(pack_host):
    import nodes

    calls = []

    class OtherPack:  # another pack's replacement, already there when we are applied
        def __call__(self, q, k, v, extra_options):
            calls.append("other")
            return torch.zeros_like(q) + 1.0

    model = nodes.CheckpointLoaderSimple().load_checkpoint(fixtures.SMALL_CKPT)[0].clone()
    model.set_model_attn2_replace(OtherPack(), "input", 1)
    patch_mod = pack_host.pack_module("nodes.guider_patch")
    guider = pack_host.pack_module("dreamoving.guider_files").load_content_guider(
        str(fixtures.model_folders()["dreamoving"] / fixtures.GUIDER))
    zeros = {s: (torch.zeros(1, n, 768), torch.zeros(1, n, 768)) for s, n in (("face", 4), ("cloth", 16))}
    guided = patch_mod.attach_guider(model, guider, zeros, {"face": 0.0, "cloth": 0.0}, 0.0, 1.0)
    patch = guided.model_options["transformer_options"]["patches_replace"]["attn2"][("input", 1)]
    q = torch.randn(2, 16, 320)
    options = {"n_heads": 8, "cond_or_uncond": [0, 1]}
    assert torch.equal(patch(q, q, q, options), torch.ones_like(q)) and calls == ["other"]
    # IPAdapter_plus applied after us calls .add() on the replacement it finds
    clone = guided.clone()
    clone_patch = clone.model_options["transformer_options"]["patches_replace"]["attn2"][("input", 1)]
    clone_patch.add(lambda out, q, k, v, extra, **kw: kw["weight"] * torch.ones_like(out), weight=2.0,
                    sigma_start=999.0, sigma_end=0.0)
    assert torch.equal(clone_patch(q, q, q, options), 3 * torch.ones_like(q))
    assert torch.equal(patch(q, q, q, options), torch.ones_like(q)), "the original model is unaffected"
    assert clone_patch.guider is patch.guider, "clones share the guider's weights"
    assert copy.deepcopy(clone.model_options)["transformer_options"]["patches_replace"]["attn2"][
        ("input", 1)].guider is guider


def test_face_analysis_on_insightface_shaped_onnx_packs(pack_host, tmp_path):
    analysis = pack_host.pack_module("dreamoving.face_analysis")
    root = str(fixtures.model_folders()["insightface"])
    analyzer = analysis.FaceAnalyzer(root, "buffalo_l", analysis.onnx_providers("cpu"))
    face = analyzer.analyze(insightface_packs.face_image(0))
    assert face.embedding.shape == (512,) and abs(float((face.embedding ** 2).sum()) - 1) < 1e-5
    assert face.crop.shape == (224, 224, 3) and face.box.tolist() == [224, 224, 416, 416]
    other = analyzer.analyze(insightface_packs.face_image(1))
    assert float(face.embedding @ other.embedding) < 0.9999, "another face, another identity"
    with pytest.raises(analysis.NoFaceFound, match="no face found in the face image"):
        analyzer.analyze(insightface_packs.face_image(0) * 0)
    with pytest.raises(FileNotFoundError, match="insightface model pack 'antelopev2' not found: put its .onnx"):
        analysis.FaceAnalyzer(root, "antelopev2", ["CPUExecutionProvider"])
    assert analysis.onnx_providers("cpu") == ["CPUExecutionProvider"]


def test_no_face_is_a_clear_error_or_clip_only(pack_host, images):
    with pytest.raises(PromptFailed, match="no face found in the face image"):
        pack_host.run(guided_video(1.0, 1.0, dark_face=True, sampler="KSampler"))
    prompt = guided_video(1.0, 1.0, dark_face=True, sampler="KSampler")
    prompt["35"]["inputs"]["no_face"] = "CLIP-only face tokens"
    assert torch.isfinite(samples(pack_host, prompt)).all()
    with pytest.raises(PromptFailed, match="face_analysis: the face stream \\(faceid_plus\\) needs an identity"):
        pack_host.run(guided_video(1.0, 1.0, face_analysis=False, sampler="KSampler"))
    with pytest.raises(PromptFailed, match="cloth_image: the guider's cloth stream needs an image"):
        pack_host.run(guided_video(1.0, 1.0, cloth=False, sampler="KSampler"))


def test_ip_adapter_files_in_a_workflow(pack_host, images):
    plus_as_cloth = guided_video(0.0, 0.8, guider=fixtures.IPA_PLUS, face=False, face_analysis=False,
                                 sampler="KSampler")
    plus_as_cloth["31"]["inputs"]["stream"] = "cloth"
    assert torch.isfinite(samples(pack_host, plus_as_cloth)).all()
    faceid = guided_video(0.8, 0.0, guider=fixtures.IPA_FACEID_V2, cloth=False, sampler="KSampler")
    assert torch.isfinite(samples(pack_host, faceid)).all()
    wrong = guided_video(1.0, 0.0, guider=fixtures.NOT_GUIDER, cloth=False, sampler="KSampler")
    with pytest.raises(PromptFailed, match="'dm_not_a_guider.safetensors' is neither a DreaMoving Content Guider"):
        pack_host.run(wrong)


def test_64_frames_with_motion_video_controlnet_and_guider(pack_host, images):
    prompt = prompts.add_video_controlnet(guided_video(1.0, 1.0, frames=64), fixtures.VIDEO_CN, 64)
    out = samples(pack_host, prompt)
    assert out.shape == (64, 4, 8, 8) and torch.isfinite(out).all()


def test_short_key_attentions_run_sdpa_on_cpu_and_match_comfyuis_kernel(pack_host, images, monkeypatch):
    """Issue 17: with ComfyUI's CPU default (sub-quadratic), the motion blocks of the U-Net and of the Video
    ControlNet (6 frames) and the guider's image terms (4 face, 16 cloth tokens) run torch's SDPA, the text
    attention stays ComfyUI's; the result equals that of ComfyUI's kernel everywhere (the flag that asks for it)."""
    import comfy.ldm.modules.attention as comfy_attention
    from comfy.cli_args import args

    monkeypatch.setattr(comfy_attention, "optimized_attention", comfy_attention.attention_sub_quad)
    sdpa, keys = comfy_attention.attention_pytorch, []

    def spy(q, k, v, heads, *rest, **kwargs):
        keys.append(k.shape[-2])
        return sdpa(q, k, v, heads, *rest, **kwargs)

    monkeypatch.setattr(comfy_attention, "attention_pytorch", spy)
    prompt = prompts.add_video_controlnet(guided_video(1.0, 1.0, frames=6, sampler="KSampler"), fixtures.VIDEO_CN, 6)
    ours = samples(pack_host, prompt)
    assert set(keys) == {6, 4, 16}, sorted(set(keys))
    calls = {n: keys.count(n) for n in (6, 4, 16)}
    keys.clear()
    samples(pack_host, guided_video(1.0, 1.0, frames=6, sampler="KSampler"))
    assert keys.count(6) < calls[6], "the Video ControlNet's motion blocks run SDPA too"
    monkeypatch.setattr(args, "use_quad_cross_attention", True)
    keys.clear()
    theirs = samples(pack_host, prompt)
    assert not keys
    scale = float(theirs.abs().max())  # the random fixture's latents run to hundreds
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5 * scale), float((ours - theirs).abs().max()) / scale


def test_short_key_attention_keeps_comfyuis_pick_off_cpu_when_asked_or_when_fast(pack_host, monkeypatch):
    import comfy.ldm.modules.attention as comfy_attention
    from comfy.cli_args import args

    choose = pack_host.pack_module("nodes.attention_choice").short_key_attention
    cpu, meta = torch.device("cpu"), torch.device("meta")
    for fallback in (comfy_attention.attention_sub_quad, comfy_attention.attention_split):
        monkeypatch.setattr(comfy_attention, "optimized_attention", fallback)
        assert choose(cpu) is comfy_attention.attention_pytorch
        assert choose(meta) is fallback  # measured on CPU only: elsewhere ComfyUI's pick
        for flag in ("use_split_cross_attention", "use_quad_cross_attention"):
            monkeypatch.setattr(args, flag, True)
            assert choose(cpu) is fallback, flag  # the user asked for it
            monkeypatch.setattr(args, flag, False)
    for picked in (comfy_attention.attention_pytorch, comfy_attention.attention_basic):
        monkeypatch.setattr(comfy_attention, "optimized_attention", picked)
        assert choose(cpu) is picked


OWN_ENCODER_GUIDER = "dm_test_guider_own_encoder.safetensors"


@pytest.fixture(scope="module")
def own_encoder_guider(pack_host):
    """Our guider file for dm_small_sd15 with both streams on its own seeded patch encoder (the embedded layout)."""
    from dreamoving.content_guider import ContentGuider, Resampler
    from dreamoving.guider_files import save_content_guider
    from dreamoving.image_encoder import PatchImageEncoder

    torch.manual_seed(11)
    guider = ContentGuider(fixtures.SMALL_XATTN, 768)
    for stream, tokens in (("face", 4), ("cloth", 8)):
        resampler = Resampler(dim=64, depth=1, dim_head=16, heads=4, num_queries=tokens, embedding_dim=32, output_dim=768)
        torch.nn.init.normal_(resampler.latents, std=0.1)
        guider.add_stream(stream, "resampler", resampler)
    guider.image_encoder = PatchImageEncoder(size=32, patch=8, dim=32, seed=3)
    save_content_guider(guider, str(fixtures.model_folders()["dreamoving"] / OWN_ENCODER_GUIDER))
    return OWN_ENCODER_GUIDER


def without_clip_vision(prompt: dict) -> dict:
    del prompt["30"]
    del prompt["35"]["inputs"]["clip_vision"]
    return prompt


def test_a_guider_with_its_own_image_encoder_needs_no_clip_vision(pack_host, images, own_encoder_guider):
    plain = samples(pack_host, prompts.motion_video(fixtures.SMALL_CKPT, fixtures.SMALL_MM, FRAMES, sampler="KSampler"))

    def run(a_f, a_c, **kw):
        return samples(pack_host, without_clip_vision(guided_video(a_f, a_c, guider=own_encoder_guider,
                                                                   face_analysis=False, sampler="KSampler", **kw)))
    assert torch.equal(plain, run(0.0, 0.0))
    guided = run(1.0, 1.0)
    assert not torch.equal(plain, guided)
    with_clip = guided_video(1.0, 1.0, guider=own_encoder_guider, face_analysis=False, sampler="KSampler")
    assert torch.equal(guided, samples(pack_host, with_clip)), "the guider's own encoder is used, not CLIP"
    with pytest.raises(PromptFailed, match="clip_vision: this guider has no image encoder of its own"):
        pack_host.run(without_clip_vision(guided_video(1.0, 0.0, face_analysis=True, sampler="KSampler")))
