"""Poses in the OpenPose layout: data, POSE_KEYPOINT JSON, and the drawing SD1.5 openpose ControlNets know.

A person holds ``body`` [18, 3] (OpenPose order: nose, neck, r-shoulder, r-elbow, r-wrist, l-shoulder,
l-elbow, l-wrist, r-hip, r-knee, r-ankle, l-hip, l-knee, l-ankle, r-eye, l-eye, r-ear, l-ear), optional
``left_hand``/``right_hand`` [21, 3] and ``face`` [68 or 70, 3]; columns are x, y in pixels and a
confidence (0 = missing). The drawing reproduces ControlNet's ``annotator/openpose`` (DWPose flavour):
limbs as 60%-dimmed ellipses (stick width 4), joints as radius-4 dots, hand edges in HSV colours with
red joints, face points white.
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

BODY_LIMBS = [(1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
              (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17)]  # 0-based, ControlNet's first 17 limbs
BODY_COLORS = [(255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
               (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
               (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85)]
HAND_EDGES = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10), (10, 11), (11, 12),
              (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20)]
STICK_WIDTH = 4
MIN_CONFIDENCE = 0.3


@dataclass
class Person:
    body: np.ndarray
    left_hand: np.ndarray | None = None
    right_hand: np.ndarray | None = None
    face: np.ndarray | None = None


@dataclass
class PoseFrame:
    width: int
    height: int
    people: list[Person] = field(default_factory=list)


def _points(flat, count=None) -> np.ndarray | None:
    if not flat:
        return None
    pts = np.asarray(flat, dtype=np.float32).reshape(-1, 3)
    return pts if count is None else pts[:count]


def _flat(points: np.ndarray | None) -> list[float]:
    return [] if points is None else [float(v) for v in points.reshape(-1)]


def to_pose_keypoint(frames: list[PoseFrame]) -> list[dict]:
    """ComfyUI's POSE_KEYPOINT (OpenPose JSON per frame, pixel coordinates), as comfyui_controlnet_aux emits."""
    return [{"people": [{"pose_keypoints_2d": _flat(p.body), "face_keypoints_2d": _flat(p.face),
                         "hand_left_keypoints_2d": _flat(p.left_hand), "hand_right_keypoints_2d": _flat(p.right_hand)}
                        for p in f.people], "canvas_width": f.width, "canvas_height": f.height} for f in frames]


def from_pose_keypoint(data: list[dict]) -> list[PoseFrame]:
    """Parse POSE_KEYPOINT; coordinates in [0, 1] (some tools write those) are scaled to the canvas."""
    frames = []
    for i, frame in enumerate(data):
        try:
            width, height = int(frame["canvas_width"]), int(frame["canvas_height"])
            people = []
            for person in frame.get("people", []):
                parts = [_points(person.get(k)) for k in ("pose_keypoints_2d", "hand_left_keypoints_2d",
                                                          "hand_right_keypoints_2d", "face_keypoints_2d")]
                if parts[0] is None or parts[0].shape[0] < 18:
                    raise ValueError("pose_keypoints_2d must hold 18 points (x, y, confidence)")
                present = [p for p in parts if p is not None]
                if max(float(np.abs(p[:, :2]).max()) for p in present) <= 1.0:
                    for p in present:
                        p[:, 0] *= width
                        p[:, 1] *= height
                people.append(Person(parts[0][:18], parts[1], parts[2], parts[3]))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"pose keypoints: frame {i} is not OpenPose JSON ({err})") from err
        frames.append(PoseFrame(width, height, people))
    return frames


def _visible(point) -> bool:
    return point[2] >= MIN_CONFIDENCE


def draw_pose(frame: PoseFrame, body: bool = True, hands: bool = True, face: bool = True) -> np.ndarray:
    """RGB uint8 [height, width, 3] rendering of the frame on black."""
    canvas = np.zeros((frame.height, frame.width, 3), dtype=np.uint8)
    if body:
        for person in frame.people:
            for (a, b), color in zip(BODY_LIMBS, BODY_COLORS):
                pa, pb = person.body[a], person.body[b]
                if not (_visible(pa) and _visible(pb)):
                    continue
                (x1, y1), (x2, y2) = pa[:2], pb[:2]
                length = math.hypot(x1 - x2, y1 - y2)
                angle = math.degrees(math.atan2(y1 - y2, x1 - x2))
                polygon = cv2.ellipse2Poly((int((x1 + x2) / 2), int((y1 + y2) / 2)), (int(length / 2), STICK_WIDTH),
                                           int(angle), 0, 360, 1)
                cv2.fillConvexPoly(canvas, polygon, color)
        canvas = (canvas * 0.6).astype(np.uint8)
        for person in frame.people:
            for point, color in zip(person.body, BODY_COLORS):
                if _visible(point):
                    cv2.circle(canvas, (int(point[0]), int(point[1])), 4, color, thickness=-1)
    for person in frame.people if hands else []:
        for hand in (person.left_hand, person.right_hand):
            if hand is None:
                continue
            for i, (a, b) in enumerate(HAND_EDGES):
                if _visible(hand[a]) and _visible(hand[b]):
                    color = [c * 255 for c in colorsys.hsv_to_rgb(i / len(HAND_EDGES), 1.0, 1.0)]  # cv2 rounds
                    cv2.line(canvas, (int(hand[a][0]), int(hand[a][1])), (int(hand[b][0]), int(hand[b][1])), color,
                             thickness=2)
            for point in hand:
                if _visible(point):
                    cv2.circle(canvas, (int(point[0]), int(point[1])), 4, (0, 0, 255), thickness=-1)
    for person in frame.people if face else []:
        for point in person.face if person.face is not None else []:
            if _visible(point):
                cv2.circle(canvas, (int(point[0]), int(point[1])), 3, (255, 255, 255), thickness=-1)
    return canvas
