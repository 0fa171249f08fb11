"""OpenCLIP vision checkpoints read as transformers CLIP vision models (stage 1 features)."""
from __future__ import annotations

import torch

from train.openclip import load_openclip_vision


def test_openclip_tower_converts_exactly(tmp_path):
    from open_clip.transformer import VisionTransformer
    from safetensors.torch import save_file

    torch.manual_seed(0)
    tower = VisionTransformer(image_size=32, patch_size=8, width=64, layers=3, heads=1, mlp_ratio=2.0,
                              output_dim=16).eval()
    save_file({"visual." + k: v.contiguous() for k, v in tower.state_dict().items()}, str(tmp_path / "openclip.safetensors"))
    model, processor = load_openclip_vision(str(tmp_path / "openclip.safetensors"))
    assert processor.crop_size == {"height": 32, "width": 32}
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values=pixels).image_embeds, tower(pixels), rtol=1e-4, atol=1e-5)
