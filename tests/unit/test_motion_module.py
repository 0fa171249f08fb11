"""The motion module against AnimateDiff's formula written out here, and its file formats."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from dmtest.animatediff import motion_file_tensors, sinusoid
from dreamoving.motion_files import load_motion_model, save_motion_model, spec_from_state_dict
from dreamoving.motion_module import MotionModel
from dreamoving.unet_layout import UNetLayout
from dreamoving.weights import WeightFileError, read_state_dict

CHANNELS = [64, 128]  # a small U-Net: 2 levels, 1 res block each; GroupNorm(32) and 8 heads still apply


def reference_module(sd: dict, p: str, x: torch.Tensor, frames: int, heads: int = 8) -> torch.Tensor:
    """AnimateDiff's VanillaTemporalModule.forward on ``[(b f), c, h, w]``, from its published code."""
    t = p + "temporal_transformer."
    bf, c, h, w = x.shape
    b = bf // frames
    hs = F.group_norm(x, 32, sd[t + "norm.weight"], sd[t + "norm.bias"], eps=1e-6)
    hs = hs.permute(0, 2, 3, 1).reshape(bf, h * w, c)
    hs = hs @ sd[t + "proj_in.weight"].T + sd[t + "proj_in.bias"]
    layer = 0
    while f"{t}transformer_blocks.{layer}.ff_norm.weight" in sd:
        blk = f"{t}transformer_blocks.{layer}."
        a = 0
        while f"{blk}attention_blocks.{a}.to_q.weight" in sd:
            at = f"{blk}attention_blocks.{a}."
            n = F.layer_norm(hs, (c,), sd[f"{blk}norms.{a}.weight"], sd[f"{blk}norms.{a}.bias"], eps=1e-5)
            n = n.reshape(b, frames, h * w, c).permute(0, 2, 1, 3).reshape(b * h * w, frames, c)
            n = n + sinusoid(frames, c)  # the file's PE is sinusoidal; positions past it continue the formula
            q, k, v = (n @ sd[at + f"to_{z}.weight"].T for z in "qkv")
            split = lambda z: z.reshape(b * h * w, frames, heads, c // heads).permute(0, 2, 1, 3)  # noqa: E731
            q, k, v = split(q), split(k), split(v)
            weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(c // heads), dim=-1)
            o = (weights @ v).permute(0, 2, 1, 3).reshape(b * h * w, frames, c)
            o = o @ sd[at + "to_out.0.weight"].T + sd[at + "to_out.0.bias"]
            hs = o.reshape(b, h * w, frames, c).permute(0, 2, 1, 3).reshape(bf, h * w, c) + hs
            a += 1
        n = F.layer_norm(hs, (c,), sd[blk + "ff_norm.weight"], sd[blk + "ff_norm.bias"], eps=1e-5)
        proj = n @ sd[blk + "ff.net.0.proj.weight"].T + sd[blk + "ff.net.0.proj.bias"]
        value, gate = proj.chunk(2, dim=-1)
        hs = (value * F.gelu(gate)) @ sd[blk + "ff.net.2.weight"].T + sd[blk + "ff.net.2.bias"] + hs
        layer += 1
    hs = hs @ sd[t + "proj_out.weight"].T + sd[t + "proj_out.bias"]
    return hs.reshape(bf, h, w, c).permute(0, 3, 1, 2) + x


@pytest.mark.parametrize("family,mid,pe_len,suffix", [
    ("v1", False, 24, ".ckpt"), ("v2", True, 32, ".safetensors"), ("no-pe", True, None, ".pt")])
def test_module_equals_animatediff_formula(tmp_path, family, mid, pe_len, suffix):
    sd = motion_file_tensors(CHANNELS, 1, mid=mid, pe_len=pe_len, seed=3)
    path = str(tmp_path / f"mm_{family}{suffix}")
    if suffix == ".safetensors":
        save_file(sd, path)
    else:  # AnimateDiff's train.py wraps the weights in a "state_dict" entry
        torch.save({"state_dict": sd, "global_step": 10}, path)
    model = load_motion_model(path, pe_len=40)
    assert (model.mid_block is not None) == mid
    frames = 40  # past v1's and v2's stored PE: extended sinusoidally
    gen = torch.Generator().manual_seed(0)
    for kind, block, index, module in model.placements():
        prefix = "mid_block.motion_modules.0." if kind == "mid" else f"{kind}_blocks.{block}.motion_modules.{index}."
        c = sd[prefix + "temporal_transformer.norm.weight"].shape[0]
        x = torch.randn(2 * frames, c, 3, 2, generator=gen)
        with torch.no_grad():
            ours = module(x, frames)
        torch.testing.assert_close(ours, reference_module(sd, prefix, x, frames), rtol=1e-5, atol=1e-5)


def test_zero_proj_out_is_identity_and_weights_couple_frames():
    layout = UNetLayout(64, (1, 2), (1, 1))
    zero = MotionModel(layout.motion_spec())
    zero.load_state_dict(motion_file_tensors(CHANNELS, 1, mid=True, pe_len=64, zero_out=True), strict=True)
    live = MotionModel(layout.motion_spec())
    live.load_state_dict(motion_file_tensors(CHANNELS, 1, mid=True, pe_len=64), strict=True)
    x = torch.randn(8, 64, 4, 4)
    module0, module1 = zero.down_blocks[0].motion_modules[0], live.down_blocks[0].motion_modules[0]
    with torch.no_grad():
        assert torch.equal(module0(x, 8), x)
        y = module1(x, 8)
        x2 = x.clone()
        x2[5] += 1.0  # change frame 5 only
        y2 = module1(x2, 8)
    changed = (y2 - y).flatten(1).abs().amax(1)
    assert (changed[[0, 1, 2, 3, 4, 6, 7]] > 1e-6).all(), "other frames must depend on frame 5"


def test_effect_and_scale():
    model = MotionModel(UNetLayout(64, (1, 2), (1, 1)).motion_spec())
    model.load_state_dict(motion_file_tensors(CHANNELS, 1, mid=True, pe_len=64), strict=True)
    module = model.down_blocks[0].motion_modules[0]
    x = torch.randn(4, 64, 2, 2)
    with torch.no_grad():
        full = module(x, 4)
        assert torch.equal(module(x, 4, effect=0.0), x)
        torch.testing.assert_close(module(x, 4, effect=0.5), x + 0.5 * (full - x))
        assert not torch.allclose(module(x, 4, scale=2.0), full)
    with pytest.raises(ValueError, match="not a whole number of 3-frame videos"):
        module(x, 3)


def test_spec_detects_families_and_real_sd15_layout():
    v1 = spec_from_state_dict(motion_file_tensors(CHANNELS, 1, mid=False, pe_len=24))
    v2 = spec_from_state_dict(motion_file_tensors(CHANNELS, 1, mid=True, pe_len=32))
    assert (v1.mid_channels, v1.pe_len, v1.extra["family"]) == (None, 24, "AnimateDiff v1 (PE 24)")
    assert (v2.mid_channels, v2.pe_len, v2.extra["family"]) == (128, 32, "AnimateDiff v2 (PE 32)")
    assert (v2.down_counts, v2.up_counts, v2.up_channels) == ([1, 1], [2, 2], [128, 64])
    # the real SD1.5 layout, shapes only (meta tensors: no 1.6 GB in memory)
    from dmtest.animatediff import SD15_CHANNELS, module_shapes
    shapes = {}
    for i, c in enumerate(SD15_CHANNELS):
        for m in range(2):
            shapes.update(module_shapes(f"down_blocks.{i}.motion_modules.{m}.", c, 32))
    for i, c in enumerate(SD15_CHANNELS[::-1]):
        for m in range(3):
            shapes.update(module_shapes(f"up_blocks.{i}.motion_modules.{m}.", c, 32))
    shapes.update(module_shapes("mid_block.motion_modules.0.", 1280, 32))
    spec = spec_from_state_dict({k: torch.empty(s, device="meta") for k, s in shapes.items()})
    sd15 = UNetLayout(320, (1, 2, 4, 4), (2, 2, 2, 2))
    sd15.check_fits(spec, "mm_sd_v15_v2.ckpt")
    assert spec.module_count == 21


def test_misfit_and_wrong_files_are_clear_errors(tmp_path):
    sdxl_like = spec_from_state_dict({k: torch.empty(s, device="meta") for k, s in
                                      _sdxl_shapes().items()})
    with pytest.raises(ValueError, match=r"mm_sdxl_v10_beta.ckpt' does not fit this model \(an SDXL motion module\?\)"):
        UNetLayout(320, (1, 2, 4, 4), (2, 2, 2, 2)).check_fits(sdxl_like, "mm_sdxl_v10_beta.ckpt")
    not_motion = tmp_path / "controlnet.safetensors"
    save_file({"input_blocks.0.0.weight": torch.zeros(4, 4)}, str(not_motion))
    with pytest.raises(WeightFileError, match="'controlnet.safetensors' is not a motion module"):
        load_motion_model(str(not_motion))
    corrupt = tmp_path / "broken.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(WeightFileError, match="'broken.safetensors' is not a readable safetensors file"):
        read_state_dict(str(corrupt))
    pickled = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "obj": _Unsafe()}, str(pickled))
    with pytest.raises(WeightFileError, match="'evil.ckpt' cannot be read as a weights-only checkpoint"):
        read_state_dict(str(pickled))


class _Unsafe:
    """Anything a weights-only loader must refuse to unpickle."""


def _sdxl_shapes():
    from dmtest.animatediff import module_shapes
    shapes = {}
    for i, c in enumerate([320, 640, 1280]):
        for m in range(2):
            shapes.update(module_shapes(f"down_blocks.{i}.motion_modules.{m}.", c, 32))
    for i, c in enumerate([1280, 640, 320]):
        for m in range(3):
            shapes.update(module_shapes(f"up_blocks.{i}.motion_modules.{m}.", c, 32))
    return {k: torch.Size(s) for k, s in shapes.items()}


def test_export_round_trip_keeps_animatediff_keys(tmp_path):
    sd = motion_file_tensors(CHANNELS, 1, mid=True, pe_len=None, seed=5)
    source = tmp_path / "trained.safetensors"
    save_file(sd, str(source))
    model = load_motion_model(str(source), pe_len=64)
    out = str(tmp_path / "exported.safetensors")
    save_motion_model(model, out)
    tensors, metadata = read_state_dict(out)
    assert set(tensors) == set(sd) | {k for k in tensors if k.endswith("pos_encoder.pe")}
    assert tensors["down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0."
                   "attention_blocks.0.pos_encoder.pe"].shape == (1, 64, 64)
    assert metadata["format"] == "dreamoving.motion_module" and metadata["pe_len"] == "64"
    assert metadata["beta_schedule"] == "linear"
    again = load_motion_model(out)
    assert again.spec.extra["family"] == "DreaMoving"
    for key, value in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[key], value, rtol=0, atol=0)
