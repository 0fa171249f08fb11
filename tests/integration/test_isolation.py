"""Patch isolation on every host (issue 15): a clone's patches never reach the model it was cloned from, whether
or not the host deep-copies model_options (v0.33.0 does not), and workflows on one server share no patch state."""
from __future__ import annotations

import pytest
import torch

from dmtest import attn2_stand_in, fixtures, prompts

FRAMES = 4


@pytest.fixture(scope="module")
def stand_in(pack_host):
    import nodes

    nodes.NODE_CLASS_MAPPINGS[attn2_stand_in.NODE_ID] = attn2_stand_in.IPAdapterProtocolStandIn
    yield
    del nodes.NODE_CLASS_MAPPINGS[attn2_stand_in.NODE_ID]


def guided(seed: int, a_c: float = 0.8) -> dict:
    """Motion U-Net -> Content Guider Encode (an IP-Adapter Plus file as the cloth stream) -> KSampler."""
    prompt = prompts.motion_video(fixtures.SMALL_CKPT, fixtures.SMALL_MM, FRAMES, sampler="KSampler", seed=seed)
    prompt["30"] = {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": fixtures.CLIP_VISION_H}}
    prompt["31"] = {"class_type": "DreaMovingContentGuiderLoader", "inputs": {
        "guider_file": fixtures.IPA_PLUS, "stream": "cloth", "faceid_v2_scale": 1.0}}
    prompt["34"] = {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 96, "batch_size": 1,
                                                            "color": 0xAA3355}}
    prompt["35"] = {"class_type": "DreaMovingContentGuiderEncode", "inputs": {
        "model": ["10", 0], "clip": ["1", 1], "clip_vision": ["30", 0], "guider": ["31", 0],
        "cloth_image": ["34", 0], "text": "a dancer", "negative_text": "blurry", "a_f": 0.0, "a_c": a_c,
        "start_percent": 0.0, "end_percent": 1.0, "face_crop": "align on landmarks", "no_face": "error"}}
    prompt["5"]["inputs"].update({"model": ["35", 0], "positive": ["35", 1], "negative": ["35", 2]})
    return prompt


def branch(seed: int, weight: float) -> dict:
    """The guided graph with an IPAdapter_plus-style patch applied to the Encode's MODEL."""
    prompt = guided(seed)
    prompt["40"] = {"class_type": attn2_stand_in.NODE_ID, "inputs": {"model": ["35", 0], "weight": weight}}
    prompt["5"]["inputs"]["model"] = ["40", 0]
    return prompt


def latents(host, prompt, executor=None) -> torch.Tensor:
    return host.run(prompt, executor)["5"][0][0]["samples"]


def test_an_add_on_a_clone_never_reaches_the_guided_model(pack_host, stand_in):
    server = pack_host.session()  # outputs stay cached between prompts, as in one server
    before = latents(pack_host, guided(seed=1), server)
    patched = latents(pack_host, branch(seed=1, weight=0.5), server)
    assert not torch.equal(patched, before), "the stand-in's term changes the result"
    after = latents(pack_host, guided(seed=2), server)  # re-samples the cached guided MODEL
    assert torch.equal(after, latents(pack_host, guided(seed=2))), "the guided MODEL is as a fresh server's"
    assert torch.equal(latents(pack_host, guided(seed=1)), before)


def test_a_patched_branch_run_twice_takes_the_second_weight(pack_host, stand_in):
    server = pack_host.session()
    latents(pack_host, branch(seed=1, weight=0.5), server)
    second = latents(pack_host, branch(seed=1, weight=1.0), server)
    assert torch.equal(second, latents(pack_host, branch(seed=1, weight=1.0))), "1.0, not 0.5 + 1.0"


def video_controlnet(seed: int) -> dict:
    """Motion U-Net + Video ControlNet -> DreaMoving Sampler."""
    prompt = prompts.motion_video(fixtures.SMALL_CKPT, fixtures.SMALL_MM, FRAMES, seed=seed)
    return prompts.add_video_controlnet(prompt, fixtures.VIDEO_CN, FRAMES)


def test_workflows_on_one_server_each_equal_their_fresh_run(pack_host, stand_in):
    """Different workflows interleaved on one server, sharing their loaders' and the Encode's cached outputs; the
    second round re-samples (other seeds, another patch weight) in reverse order on top of what the first left."""
    def workflows(seed, weight):
        return [guided(seed), branch(seed, weight), video_controlnet(seed), guided(seed, a_c=1.0),
                prompts.txt2img(fixtures.SMALL_CKPT, seed=seed)]

    rounds = workflows(3, weight=-0.7) + workflows(4, weight=0.4)[::-1]
    server = pack_host.session()
    on_server = [latents(pack_host, w, server) for w in rounds]
    for i, (prompt, got) in enumerate(zip(rounds, on_server)):
        assert torch.equal(got, latents(pack_host, prompt)), f"run {i} on the shared server differs from its fresh run"
