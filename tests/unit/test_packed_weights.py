"""Packed storage of the shipped weights: int8 rows with fp16 scales, back to the fp16 tensors ComfyUI loads."""
from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from dreamoving.packed_weights import (MIN_PACKED_SIZE, PACKED_FORMAT, SCALE_SUFFIX, pack_file, pack_state_dict,
                                       unpack_file, unpack_state_dict)


def _state():
    g = torch.Generator().manual_seed(0)
    return {"conv.weight": torch.randn(64, 32, 3, 3, generator=g) * torch.linspace(0.01, 2, 64).view(-1, 1, 1, 1),
            "linear.weight": torch.randn(128, 96, generator=g), "linear.bias": torch.randn(128, generator=g),
            "small.weight": torch.randn(8, 8, generator=g), "steps": torch.arange(4),
            "encoder.weight": torch.randn(96, 64, generator=g)}


def test_large_matrices_are_int8_rows_within_half_a_step_of_their_row_maximum():
    state = _state()
    packed = pack_state_dict(state, exact_prefixes=("encoder.",))
    assert packed["conv.weight"].dtype == torch.int8 and packed["linear.weight"].dtype == torch.int8
    assert packed["conv.weight" + SCALE_SUFFIX].shape == (64,)
    unpacked = unpack_state_dict(packed)
    assert set(unpacked) == set(state)
    for key in ("conv.weight", "linear.weight"):
        rows = state[key].reshape(state[key].shape[0], -1)
        error = (unpacked[key].float() - state[key]).reshape(rows.shape).abs().amax(1)
        step = rows.abs().amax(1) / 127
        assert unpacked[key].dtype == torch.float16
        assert torch.all(error <= step * 0.5 + rows.abs().amax(1) * 2e-3)  # + fp16 rounding of scale and value
    # small and 1-D tensors stay (as fp16), integers and exact prefixes as stored
    assert unpacked["linear.bias"].dtype == torch.float16 and torch.equal(unpacked["steps"], state["steps"])
    assert state["small.weight"].numel() < MIN_PACKED_SIZE and unpacked["small.weight"].dtype == torch.float16
    assert torch.equal(unpacked["encoder.weight"], state["encoder.weight"])


def test_packing_and_unpacking_are_byte_stable_and_keep_the_original_metadata(tmp_path):
    """Same input, same bytes (the shipped manifest's digests), although safetensors writes its metadata map in
    varying order: 12 metadata keys would almost never come out in one order twice."""
    metadata = {"format": "dreamoving.test", **{f"key{i}": str(i) for i in range(11)}}
    save_file(_state(), str(tmp_path / "orig.safetensors"), metadata=metadata)
    for name in ("packed_a", "packed_b"):
        pack_file(str(tmp_path / "orig.safetensors"), str(tmp_path / f"{name}.safetensors"), drop_prefix="small.")
    assert (tmp_path / "packed_a.safetensors").read_bytes() == (tmp_path / "packed_b.safetensors").read_bytes()
    with safe_open(str(tmp_path / "packed_a.safetensors"), "pt") as f:
        assert f.metadata()["format"] == PACKED_FORMAT and "small.weight" not in f.keys()
    for name in ("a", "b"):
        unpack_file(str(tmp_path / "packed_a.safetensors"), str(tmp_path / f"{name}.safetensors"),
                    {"extra": torch.ones(2)})
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    with safe_open(str(tmp_path / "a.safetensors"), "pt") as f:
        assert f.metadata() == metadata
        assert "extra" in f.keys() and "conv.weight" + SCALE_SUFFIX not in f.keys()


def test_unpacking_a_file_that_is_not_packed_names_the_file_and_the_format(tmp_path):
    save_file(_state(), str(tmp_path / "plain.safetensors"), metadata={"format": "dreamoving.motion_module"})
    with pytest.raises(ValueError, match=r"plain\.safetensors.*expected a packed.*dreamoving\.motion_module"):
        unpack_file(str(tmp_path / "plain.safetensors"), str(tmp_path / "out.safetensors"))
