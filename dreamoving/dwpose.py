"""DWPose whole-body pose estimation on onnxruntime: YOLOX person boxes, then RTMPose (SimCC) keypoints.

The files users have: ``yolox_l.onnx`` (input ``images`` [1, 3, 640, 640], output [1, 8400, 85]) and
``dw-ll_ucoco_384.onnx`` (input [1, 3, 384, 288], outputs ``simcc_x`` [1, 133, 576], ``simcc_y``
[1, 133, 768]). The 133 COCO-WholeBody points become OpenPose's 18 body points (neck added), two
21-point hands and 68 face points.
"""
from __future__ import annotations

import cv2
import numpy as np

from .pose import Person, PoseFrame

DET_SIZE = (640, 640)    # h, w
POSE_SIZE = (288, 384)   # w, h
SIMCC_SPLIT = 2.0
MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)
# COCO-WholeBody body order -> OpenPose order, after the neck is inserted at 17
MMPOSE_IDX = [17, 6, 8, 10, 7, 9, 12, 14, 16, 13, 15, 2, 1, 4, 3]
OPENPOSE_IDX = [1, 2, 3, 4, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 17]
KEYPOINT_THRESHOLD = 0.3


class NoPersonFound(ValueError):
    """No person box passed the detector's thresholds."""


def _check_input(session, name: str, shape: list[int]):
    got = list(session.get_inputs()[0].shape)
    if got[1:] != shape[1:]:
        raise ValueError(f"{name}: expected an input of shape {shape}, the file has {got} (is it the right model?)")


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    order, keep = scores.argsort()[::-1], []
    while order.size:
        i = order[0]
        keep.append(int(i))
        xx1 = np.maximum(boxes[i, 0], boxes[order[1:], 0])
        yy1 = np.maximum(boxes[i, 1], boxes[order[1:], 1])
        xx2 = np.minimum(boxes[i, 2], boxes[order[1:], 2])
        yy2 = np.minimum(boxes[i, 3], boxes[order[1:], 3])
        inter = np.maximum(0, xx2 - xx1) * np.maximum(0, yy2 - yy1)
        area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
        iou = inter / (area(boxes[i]) + area(boxes[order[1:]]) - inter + 1e-9)
        order = order[1:][iou <= threshold]
    return keep


def _warp_matrix(center: np.ndarray, scale: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Affine map of the box (center, scale) onto the model input (RTMPose's top-down affine, no rotation)."""
    w, h = size
    src = np.stack([center, center + [0, -scale[0] * 0.5], center + [-scale[0] * 0.5, -scale[0] * 0.5]])
    dst = np.array([[w * 0.5, h * 0.5], [w * 0.5, h * 0.5 - w * 0.5], [0.0, h * 0.5 - w * 0.5]])
    return cv2.getAffineTransform(src.astype(np.float32), dst.astype(np.float32))


class DWPose:
    """``DWPose(det_path, pose_path, providers)(rgb)`` -> PoseFrame of every person found."""

    def __init__(self, det_path: str, pose_path: str, providers: list[str]):
        import onnxruntime

        self.det = onnxruntime.InferenceSession(det_path, providers=providers)
        self.pose = onnxruntime.InferenceSession(pose_path, providers=providers)
        _check_input(self.det, "yolox_l.onnx", [1, 3, *DET_SIZE])
        _check_input(self.pose, "dw-ll_ucoco_384.onnx", [1, 3, POSE_SIZE[1], POSE_SIZE[0]])

    def people_boxes(self, rgb: np.ndarray) -> np.ndarray:
        """[N, 4] person boxes (x1, y1, x2, y2) in image pixels."""
        h, w = rgb.shape[:2]
        ratio = min(DET_SIZE[0] / h, DET_SIZE[1] / w)
        padded = np.full((*DET_SIZE, 3), 114, np.uint8)
        padded[:int(h * ratio), :int(w * ratio)] = cv2.resize(rgb, (int(w * ratio), int(h * ratio)))
        blob = np.ascontiguousarray(padded.transpose(2, 0, 1)[None], dtype=np.float32)
        out = self.det.run(None, {self.det.get_inputs()[0].name: blob})[0][0]
        grids, strides = [], []
        for stride in (8, 16, 32):
            gh, gw = DET_SIZE[0] // stride, DET_SIZE[1] // stride
            xv, yv = np.meshgrid(np.arange(gw), np.arange(gh))
            grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
            strides.append(np.full((gh * gw, 1), stride))
        grid, stride = np.concatenate(grids), np.concatenate(strides)
        centers = (out[:, :2] + grid) * stride
        sizes = np.exp(out[:, 2:4]) * stride
        boxes = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=1) / ratio
        person = out[:, 4] * out[:, 5]  # objectness x "person" class
        keep = person > 0.3
        boxes, person = boxes[keep], person[keep]
        return boxes[_nms(boxes, person, 0.45)] if len(boxes) else np.zeros((0, 4), np.float32)

    def keypoints(self, rgb: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """([133, 2] pixels, [133] scores) of the person in ``box``."""
        w, h = POSE_SIZE
        center = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], np.float32)
        scale = np.array([box[2] - box[0], box[3] - box[1]], np.float32) * 1.25
        scale = np.array([scale[0], scale[0] / (w / h)]) if scale[0] > scale[1] * w / h else \
            np.array([scale[1] * w / h, scale[1]])
        crop = cv2.warpAffine(rgb, _warp_matrix(center, scale, POSE_SIZE), (w, h), flags=cv2.INTER_LINEAR)
        blob = ((crop.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1)[None]
        simcc_x, simcc_y = self.pose.run(None, {self.pose.get_inputs()[0].name: np.ascontiguousarray(blob)})[:2]
        x, y = simcc_x[0].argmax(-1), simcc_y[0].argmax(-1)
        scores = np.minimum(simcc_x[0].max(-1), simcc_y[0].max(-1))
        points = np.stack([x, y], -1).astype(np.float32) / SIMCC_SPLIT
        return points / np.array([w, h]) * scale + center - scale / 2, scores

    def __call__(self, rgb: np.ndarray) -> PoseFrame:
        frame = PoseFrame(rgb.shape[1], rgb.shape[0])
        for box in self.people_boxes(rgb):
            points, scores = self.keypoints(rgb, box)
            frame.people.append(wholebody_to_openpose(points, scores))
        return frame


def wholebody_to_openpose(points: np.ndarray, scores: np.ndarray) -> Person:
    """133 COCO-WholeBody points -> OpenPose body (neck = mid-shoulders), hands and 68 face points."""
    info = np.concatenate([points, scores[:, None]], axis=1).astype(np.float32)
    neck = info[[5, 6]].mean(axis=0)
    neck[2] = float(info[5, 2] > KEYPOINT_THRESHOLD and info[6, 2] > KEYPOINT_THRESHOLD)  # as DWPose: 1 or 0
    info = np.insert(info, 17, neck, axis=0)
    info[OPENPOSE_IDX] = info[MMPOSE_IDX]
    return Person(body=info[:18], face=info[24:92], left_hand=info[92:113], right_hand=info[113:134])
