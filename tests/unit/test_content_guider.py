"""The Content Guider against Eq. 1 and the IP-Adapter formulas written out here; its file formats."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from dmtest import ipadapter
from dmtest.reference import softmax_attention
from dreamoving.content_guider import ContentGuider, guided_attention
from dreamoving.guider_files import load_content_guider, save_content_guider
from dreamoving.weights import WeightFileError

CHANNELS = [320, 320, 640]
HEADS = 8


def attn(q, k, v, heads=HEADS):
    return softmax_attention(q, k, v, heads)


def perceiver_ref(sd, p, latents, x, heads):
    """IP-Adapter's PerceiverAttention + FeedForward stack (proj_in/out, norm_out), from its published code."""
    x = x @ sd[p + "proj_in.weight"].T + sd[p + "proj_in.bias"]
    i = 0
    while f"{p}layers.{i}.0.to_q.weight" in sd:
        a, f = f"{p}layers.{i}.0.", f"{p}layers.{i}.1."
        dim = latents.shape[-1]
        xn = F.layer_norm(x, (dim,), sd[a + "norm1.weight"], sd[a + "norm1.bias"])
        ln = F.layer_norm(latents, (dim,), sd[a + "norm2.weight"], sd[a + "norm2.bias"])
        q = ln @ sd[a + "to_q.weight"].T
        k, v = (torch.cat([xn, ln], dim=1) @ sd[a + "to_kv.weight"].T).chunk(2, dim=-1)
        latents = attn(q, k, v, heads) @ sd[a + "to_out.weight"].T + latents
        h = F.layer_norm(latents, (dim,), sd[f + "0.weight"], sd[f + "0.bias"]) @ sd[f + "1.weight"].T
        latents = F.gelu(h) @ sd[f + "3.weight"].T + latents
        i += 1
    out = latents @ sd[p + "proj_out.weight"].T + sd[p + "proj_out.bias"]
    return F.layer_norm(out, (out.shape[-1],), sd[p + "norm_out.weight"], sd[p + "norm_out.bias"])


def text_inputs(channels: int, batch: int = 2, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 64, channels, generator=gen), torch.randn(batch, 77, channels, generator=gen),
            torch.randn(batch, 77, channels, generator=gen))


def test_eq1_equals_direct_computation():
    guider = ContentGuider(CHANNELS)
    guider.add_stream("face", "linear", torch.nn.Identity())
    guider.add_stream("cloth", "linear", torch.nn.Identity())
    gen = torch.Generator().manual_seed(1)
    face, cloth = torch.randn(2, 4, 768, generator=gen), torch.randn(2, 16, 768, generator=gen)
    for i, layer in enumerate(guider.layers):
        q, k_t, v_t = text_inputs(CHANNELS[i], seed=i)
        kf, vf = layer.kv("face", face)
        kc, vc = layer.kv("cloth", cloth)
        ours = guided_attention(q, attn(q, k_t, v_t), [(0.7, kf, vf), (0.3, kc, vc)], HEADS)
        wk = lambda s: getattr(layer, f"to_k_{s}").weight  # noqa: E731
        wv = lambda s: getattr(layer, f"to_v_{s}").weight  # noqa: E731
        reference = (attn(q, k_t, v_t) + 0.7 * attn(q, face @ wk("face").T, face @ wv("face").T)
                     + 0.3 * attn(q, cloth @ wk("cloth").T, cloth @ wv("cloth").T))
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
        text_only = guided_attention(q, attn(q, k_t, v_t), [(0.0, kf, vf), (0.0, kc, vc)], HEADS)
        assert torch.equal(text_only, attn(q, k_t, v_t)), "a_f = a_c = 0 is exactly text-only attention"


def test_kv_shared_by_consecutive_rows_equals_per_row_kv():
    """K/V per video (cond, uncond) attended by all its frames equal the K/V repeated for every frame."""
    q, _, _ = text_inputs(CHANNELS[0], batch=6, seed=7)
    gen = torch.Generator().manual_seed(8)
    k, v = torch.randn(2, 4, CHANNELS[0], generator=gen), torch.randn(2, 4, CHANNELS[0], generator=gen)
    zero = torch.zeros_like(q)
    shared = guided_attention(q, zero, [(0.6, k, v)], HEADS)
    per_row = guided_attention(q, zero, [(0.6, k.repeat_interleave(3, 0), v.repeat_interleave(3, 0))], HEADS)
    assert shared.shape == q.shape
    torch.testing.assert_close(shared, per_row, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(shared[:3], 0.6 * attn(q[:3], k[:1].expand(3, -1, -1), v[:1].expand(3, -1, -1)))


@pytest.mark.parametrize("layout", ["safetensors", "bin"])
def test_ip_adapter_plus_in_cloth_stream_equals_ip_adapter_formula(tmp_path, layout):
    sd = ipadapter.plus_tensors(CHANNELS, seed=3)
    path = tmp_path / f"ip-adapter-plus_sd15.{layout}"
    if layout == "bin":
        torch.save(ipadapter.as_bin(sd), str(path))
    else:
        save_file(sd, str(path))
    guider = load_content_guider(str(path), stream="cloth")
    assert guider.kinds == {"cloth": "resampler"} and guider.layer_channels == CHANNELS
    hidden = torch.randn(1, 257, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        tokens = guider.tokens("cloth", {"hidden": hidden})
    reference_tokens = perceiver_ref(sd, "image_proj.", sd["image_proj.latents"], hidden, heads=2)
    torch.testing.assert_close(tokens, reference_tokens, rtol=1e-5, atol=1e-5)
    scale = 0.8
    for i, layer in enumerate(guider.layers):
        q, k_t, v_t = text_inputs(CHANNELS[i], batch=1, seed=10 + i)
        with torch.no_grad():
            ours = guided_attention(q, attn(q, k_t, v_t), [(scale, *layer.kv("cloth", tokens))], HEADS)
        ip_k = reference_tokens @ sd[f"ip_adapter.{2 * i + 1}.to_k_ip.weight"].T
        ip_v = reference_tokens @ sd[f"ip_adapter.{2 * i + 1}.to_v_ip.weight"].T
        torch.testing.assert_close(ours, attn(q, k_t, v_t) + scale * attn(q, ip_k, ip_v), rtol=1e-5, atol=1e-5)


def test_faceid_plusv2_shortcut_and_base_adapter(tmp_path):
    sd = ipadapter.faceid_plus_tensors(CHANNELS, seed=4)
    path = tmp_path / "ip-adapter-faceid-plusv2_sd15.safetensors"
    save_file(sd, str(path))
    guider = load_content_guider(str(path), stream="face", faceid_shortcut_scale=0.5)
    gen = torch.Generator().manual_seed(5)
    identity, hidden = torch.randn(1, 512, generator=gen), torch.randn(1, 257, 64, generator=gen)
    with torch.no_grad():
        tokens = guider.tokens("face", {"id": identity, "hidden": hidden})
    h = F.gelu(identity @ sd["image_proj.proj.0.weight"].T + sd["image_proj.proj.0.bias"])
    x = (h @ sd["image_proj.proj.2.weight"].T + sd["image_proj.proj.2.bias"]).reshape(1, 4, 768)
    x = F.layer_norm(x, (768,), sd["image_proj.norm.weight"], sd["image_proj.norm.bias"])
    reference = x + 0.5 * perceiver_ref(sd, "image_proj.perceiver_resampler.", x, hidden, heads=12)
    torch.testing.assert_close(tokens, reference, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"the face stream \(faceid_plus\) needs \['hidden'\] features"):
        guider.tokens("face", {"id": identity})

    base = tmp_path / "ip-adapter_sd15.safetensors"
    save_file(ipadapter.base_tensors(CHANNELS, seed=6), str(base))
    assert load_content_guider(str(base), stream="cloth").kinds == {"cloth": "linear"}


def test_our_format_round_trip_and_merge(tmp_path):
    save_file(ipadapter.faceid_plus_tensors(CHANNELS, seed=7), str(tmp_path / "faceid-plusv2.safetensors"))
    save_file(ipadapter.plus_tensors(CHANNELS, seed=8), str(tmp_path / "plus.safetensors"))
    face = load_content_guider(str(tmp_path / "faceid-plusv2.safetensors"), stream="face")
    cloth = load_content_guider(str(tmp_path / "plus.safetensors"), stream="cloth")
    both = face.with_streams_of(cloth)
    assert both.kinds == {"face": "faceid_plus", "cloth": "resampler"}
    out = str(tmp_path / "dreamoving_guider.safetensors")
    save_content_guider(both, out)
    again = load_content_guider(out)
    assert again.kinds == both.kinds
    for key, value in both.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key
    gen = torch.Generator().manual_seed(9)
    features = {"id": torch.randn(1, 512, generator=gen), "hidden": torch.randn(1, 257, 64, generator=gen)}
    with torch.no_grad():
        assert torch.equal(again.tokens("face", features), both.tokens("face", features))


def test_guider_file_errors(tmp_path):
    not_guider = tmp_path / "mm_sd_v15.safetensors"
    save_file({"down_blocks.0.motion_modules.0.x": torch.zeros(1)}, str(not_guider))
    with pytest.raises(WeightFileError, match="'mm_sd_v15.safetensors' is neither a DreaMoving Content Guider"):
        load_content_guider(str(not_guider))
    plus = tmp_path / "plus.safetensors"
    save_file(ipadapter.plus_tensors(CHANNELS), str(plus))
    with pytest.raises(ValueError, match="stream: an IP-Adapter file goes into one stream"):
        load_content_guider(str(plus))
    other = ContentGuider([320])
    with pytest.raises(ValueError, match="cannot combine guiders"):
        load_content_guider(str(plus), stream="cloth").with_streams_of(other)
