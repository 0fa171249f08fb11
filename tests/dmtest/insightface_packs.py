"""insightface-shaped ONNX model packs built by the tests (no downloads).

* an SCRFD-style detector (``det_10g.onnx``): input ``[1, 3, 640, 640]``, nine outputs (scores, boxes and
  keypoints for strides 8/16/32, two anchors per cell), which reports one face at a known place when the
  image's mean brightness is above a threshold, and none for a dark image;
* an ArcFace-style recogniser (``w600k_r50.onnx``): ``[1, 3, 112, 112] -> [1, 512]``, a fixed linear map
  of the crop's channel means and a coarse 4x4 pooling, so different faces give different embeddings.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dmtest.cache import write_once
from dmtest.control_models import save_onnx

DET = 640
STRIDES = (8, 16, 32)
FACE_CELL = (10, 10)  # stride-32 cell holding the face: centre (320, 320)
FACE_BOX = 3.0        # half-size in stride units: box (224, 224)-(416, 416)
KPS = [(-1.0, -0.8), (1.0, -0.8), (0.0, 0.1), (-0.7, 1.0), (0.7, 1.0)]  # eyes, nose, mouth (stride units)


def _detector(path: Path):
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, outputs = [], [], []
    # gate = 1 when the image is bright enough (mean of the normalised input > -0.5), else 0
    nodes += [helper.make_node("ReduceMean", ["input.1"], ["mean"], keepdims=0),
              helper.make_node("Greater", ["mean", "threshold"], ["bright"]),
              helper.make_node("Cast", ["bright"], ["gate"], to=TensorProto.FLOAT)]
    inits.append(numpy_helper.from_array(np.array(-0.5, dtype=np.float32), "threshold"))
    groups = {"score": [], "bbox": [], "kps": []}
    for stride in STRIDES:
        cells = (DET // stride) ** 2 * 2
        score, bbox, kps = np.zeros((cells, 1), np.float32), np.ones((cells, 4), np.float32), np.zeros((cells, 10), np.float32)
        if stride == 32:
            y, x = FACE_CELL
            anchor = (y * (DET // stride) + x) * 2
            score[anchor] = 0.95
            bbox[anchor] = FACE_BOX
            kps[anchor] = np.array(KPS, np.float32).reshape(-1)
        for kind, value in (("score", score), ("bbox", bbox), ("kps", kps)):
            name = f"{kind}_{stride}"
            inits.append(numpy_helper.from_array(value, name + "_const"))
            if kind == "score":
                nodes.append(helper.make_node("Mul", [name + "_const", "gate"], [name]))
            else:
                nodes.append(helper.make_node("Identity", [name + "_const"], [name]))
            groups[kind].append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    outputs = groups["score"] + groups["bbox"] + groups["kps"]
    graph = helper.make_graph(nodes, "scrfd_like", [helper.make_tensor_value_info(
        "input.1", TensorProto.FLOAT, [1, 3, DET, DET])], outputs, inits)
    save_onnx(graph, path)


def _recogniser(path: Path):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = rng.standard_normal((3 * 16, 512)).astype(np.float32)
    nodes = [helper.make_node("AveragePool", ["input.1"], ["pooled"], kernel_shape=[28, 28], strides=[28, 28]),
             helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "w"], ["683"])]
    graph = helper.make_graph(nodes, "arcface_like",
                              [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 112, 112])],
                              [helper.make_tensor_value_info("683", TensorProto.FLOAT, [1, 512])],
                              [numpy_helper.from_array(weights, "w")])
    save_onnx(graph, path)


def ensure_pack(root: Path, name: str = "buffalo_l") -> Path:
    """``<root>/models/<name>`` with the two ONNX files; returns ``root``."""
    folder = root / "models" / name
    folder.mkdir(parents=True, exist_ok=True)
    for file, build in (("det_10g.onnx", _detector), ("w600k_r50.onnx", _recogniser)):
        write_once(folder / file, build)
    return root


def face_image(seed: int = 0) -> np.ndarray:
    """A bright 640x640 RGB image (uint8) whose face region varies with ``seed``."""
    rng = np.random.default_rng(seed)
    image = np.full((DET, DET, 3), 200, np.uint8)
    image[224:416, 224:416] = rng.integers(0, 255, (192, 192, 3), dtype=np.uint8)
    return image
