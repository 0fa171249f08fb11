"""Small stand-ins, built by the tests, for the control-signal models users have.

* ``yolox_l.onnx``: input ``images`` [1, 3, 640, 640] -> ``output`` [1, 8400, 85]; reports one person box
  (236, 136)-(436, 536) when the image is bright (mean > 50), none for a dark one.
* ``dw-ll_ucoco_384.onnx``: input ``input`` [1, 3, 384, 288] -> ``simcc_x`` [1, 133, 576], ``simcc_y``
  [1, 133, 768] with one peak per keypoint at ``CROP_POINTS`` (crop pixels).
* a tiny Depth-Anything saved with transformers' ``save_pretrained``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dmtest.cache import write_once

PERSON_BOX = (236.0, 136.0, 436.0, 536.0)
CROP_POINTS = np.array([(144 + ((k * 37) % 200) - 100, 192 + ((k * 53) % 300) - 150) for k in range(133)],
                       np.float32)
CROP_POINTS[0] = (144, 192)  # the crop's centre: maps to the box centre
CROP_POINTS[1] = (0, 0)      # the crop's corner: maps to centre - padded scale / 2


# Written explicitly: onnx.helper.make_model stamps the IR version of the installed onnx package
# (onnx 1.23: IR 14), which older onnxruntime releases refuse to load. IR 7 is the one that came with
# opset 13 (onnx 1.8); every onnxruntime the pack supports (>= 1.16, which reads IR <= 9) loads it.
ONNX_OPSET = 13
ONNX_IR_VERSION = 7


def save_onnx(graph, path: Path) -> None:
    """Save a test-built graph as an opset-13, IR-7 model (see ONNX_IR_VERSION)."""
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], ir_version=ONNX_IR_VERSION)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _yolox(path: Path):
    from onnx import TensorProto, helper, numpy_helper

    preds = np.zeros((1, 8400, 85), np.float32)
    cell = 6400 + 1600 + 10 * 20 + 10  # stride 32, grid (10, 10): centre (336, 336)
    x1, y1, x2, y2 = PERSON_BOX
    preds[0, cell, :4] = [0.5, 0.5, np.log((x2 - x1) / 32), np.log((y2 - y1) / 32)]
    preds[0, cell, 4:6] = 0.9
    gate_mask = np.zeros_like(preds)
    gate_mask[..., 4] = 1.0  # only objectness is gated by brightness
    nodes = [helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
             helper.make_node("Greater", ["mean", "threshold"], ["bright"]),
             helper.make_node("Cast", ["bright"], ["gate"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["mask", "gate"], ["gated_mask"]),
             helper.make_node("Sub", ["ones", "mask"], ["ungated"]),
             helper.make_node("Add", ["gated_mask", "ungated"], ["factor"]),
             helper.make_node("Mul", ["preds", "factor"], ["output"])]
    inits = [numpy_helper.from_array(preds, "preds"), numpy_helper.from_array(gate_mask, "mask"),
             numpy_helper.from_array(np.ones_like(preds), "ones"),
             numpy_helper.from_array(np.array(50.0, np.float32), "threshold")]
    save_onnx(helper.make_graph(nodes, "yolox_like", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                                    [1, 3, 640, 640])],
                                [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 8400, 85])], inits), path)


def _rtmpose(path: Path):
    from onnx import TensorProto, helper, numpy_helper

    simcc_x, simcc_y = np.zeros((1, 133, 576), np.float32), np.zeros((1, 133, 768), np.float32)
    for k, (x, y) in enumerate(CROP_POINTS):
        simcc_x[0, k, int(round(x * 2))] = 0.9
        simcc_y[0, k, int(round(y * 2))] = 0.9
    nodes = [helper.make_node("ReduceMean", ["input"], ["mean"], keepdims=0),
             helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
             helper.make_node("Add", ["x_const", "nothing"], ["simcc_x"]),
             helper.make_node("Add", ["y_const", "nothing"], ["simcc_y"])]
    inits = [numpy_helper.from_array(simcc_x, "x_const"), numpy_helper.from_array(simcc_y, "y_const"),
             numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    save_onnx(helper.make_graph(nodes, "rtmpose_like", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                      [1, 3, 384, 288])],
                                [helper.make_tensor_value_info("simcc_x", TensorProto.FLOAT, [1, 133, 576]),
                                 helper.make_tensor_value_info("simcc_y", TensorProto.FLOAT, [1, 133, 768])], inits), path)


def _tiny_depth_anything(folder: Path):
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    backbone = Dinov2Config(image_size=56, patch_size=14, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                            intermediate_size=64, out_features=["stage1", "stage2", "stage3", "stage4"],
                            reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32],
                                 fusion_hidden_size=16, head_hidden_size=8, patch_size=14)
    torch.manual_seed(0)
    DepthAnythingForDepthEstimation(config).save_pretrained(str(folder))
    DPTImageProcessor(size={"height": 56, "width": 56}, keep_aspect_ratio=False, ensure_multiple_of=14,
                      image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(str(folder))


DEPTH_MODEL = "dm_tiny_depth_anything"


def ensure_control_models(dwpose_folder: Path, depth_folder: Path) -> None:
    for name, build in (("yolox_l.onnx", _yolox), ("dw-ll_ucoco_384.onnx", _rtmpose)):
        write_once(dwpose_folder / name, build)
    write_once(depth_folder / DEPTH_MODEL, _tiny_depth_anything)
