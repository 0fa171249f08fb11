"""Poses in the OpenPose layout: data, POSE_KEYPOINT JSON, and the drawing SD1.5 openpose ControlNets know.

A person holds ``body`` [18, 3] (OpenPose order: nose, neck, r-shoulder, r-elbow, r-wrist, l-shoulder,
l-elbow, l-wrist, r-hip, r-knee, r-ankle, l-hip, l-knee, l-ankle, r-eye, l-eye, r-ear, l-ear), optional
``left_hand``/``right_hand`` [21, 3], ``face`` [68 or 70, 3] and ``feet`` [6, 3] (COCO-WholeBody order, as
OpenPose's BODY_25 19-24: l-big toe, l-small toe, l-heel, r-big toe, r-small toe, r-heel); columns are x, y in
pixels and a confidence (0 = missing).

POSE_KEYPOINT is a list of frames {canvas_width, canvas_height, people}, each person with flat x, y, confidence
lists: ``pose_keypoints_2d`` (18 points; OpenPose's BODY_25 is read as 18 + feet), ``face_keypoints_2d`` (68 or
70), ``hand_left/right_keypoints_2d`` (21) and, from core ComfyUI's SDPose Keypoint Extractor
(comfy_extras/nodes_sdpose.py, ``_to_openpose_frames``), ``foot_keypoints_2d`` (6). Coordinates are pixels, or
all within [0, 1] (then scaled to the canvas). SDPose writes undetected points as (-1, -1): read as missing.
SDPose also writes COCO-WholeBody's left hand under ``hand_right_keypoints_2d`` and the right under
``hand_left``, so the hands go to the wrists their roots lie on, decided once per input by majority over its
people (keys are kept when no wrist and hand root are seen). ``to_pose_keypoint`` writes the same keys
(``foot_keypoints_2d`` for people with feet): body, hands, face and feet round-trip.

The drawing reproduces ControlNet's ``annotator/openpose`` (DWPose flavour): limbs as 60%-dimmed ellipses
(stick width 4), joints as radius-4 dots, hand edges in HSV colours with red joints, face points white. Feet,
off by default as in core's SDPose Draw Keypoints, are radius-4 dots in the first six body colours (as there).
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
BODY25_TO_18 = [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]  # BODY_25's 8 is the mid-hip
LEFT_WRIST, RIGHT_WRIST = 7, 4
STICK_WIDTH = 4
MIN_CONFIDENCE = 0.3
EXPECTED = ("expected a list of OpenPose frames {canvas_width, canvas_height, people: [{pose_keypoints_2d: 18 "
            "(or BODY_25's 25) points, optional face_keypoints_2d: 68 or 70, hand_left/right_keypoints_2d: 21, "
            "foot_keypoints_2d: 6}]} of x, y, confidence, as DWPose (comfyui_controlnet_aux) or ComfyUI's SDPose "
            "Keypoint Extractor give")


@dataclass
class Person:
    body: np.ndarray
    left_hand: np.ndarray | None = None
    right_hand: np.ndarray | None = None
    face: np.ndarray | None = None
    feet: np.ndarray | None = None


@dataclass
class PoseFrame:
    width: int
    height: int
    people: list[Person] = field(default_factory=list)


def _visible(point) -> bool:
    return point[2] >= MIN_CONFIDENCE


def _points(person: dict, key: str, counts: tuple[int, ...]) -> np.ndarray | None:
    """``person[key]`` as [points, 3] (None when absent or empty); SDPose's (-1, -1) points get confidence 0."""
    flat = person.get(key)
    if flat is None or len(flat) == 0:
        return None
    points = np.array(flat, dtype=np.float32).reshape(-1)
    if points.size not in [3 * c for c in counts]:
        allowed = " or ".join(f"{3 * c} ({c} points)" for c in counts)
        raise ValueError(f"{key} has {points.size} numbers, not {allowed}")
    points = points.reshape(-1, 3)
    points[(points[:, 0] == -1) & (points[:, 1] == -1), 2] = 0
    return points


def _person(person: dict, width: int, height: int) -> Person:
    if not isinstance(person, dict):
        raise TypeError(f"a person is a {type(person).__name__}, not a dict")
    body = _points(person, "pose_keypoints_2d", (18, 25))
    if body is None:
        raise ValueError("pose_keypoints_2d is missing or empty")
    feet = _points(person, "foot_keypoints_2d", (6,))
    if len(body) == 25:
        body, feet = body[BODY25_TO_18], (body[19:] if feet is None else feet)
    parts = [body, _points(person, "hand_left_keypoints_2d", (21,)), _points(person, "hand_right_keypoints_2d", (21,)),
             _points(person, "face_keypoints_2d", (68, 70)), feet]
    present = [p for p in parts if p is not None]
    if max(float(np.abs(p[:, :2]).max()) for p in present) <= 1.0:
        for p in present:
            p[:, 0] *= width
            p[:, 1] *= height
    return Person(*parts)


def _root_distances(body: np.ndarray, pairs) -> list[float]:
    """Distance from each (hand, wrist) pair's hand root to the wrist, where both are seen."""
    return [float(np.linalg.norm(hand[0, :2] - body[wrist, :2])) for hand, wrist in pairs
            if hand is not None and _visible(hand[0]) and _visible(body[wrist])]


def _hands_swapped(people: list[Person]) -> bool:
    """Whether most people's hand roots lie nearer the other wrist (SDPose's labels) than their own."""
    votes = 0
    for p in people:
        own = _root_distances(p.body, [(p.left_hand, LEFT_WRIST), (p.right_hand, RIGHT_WRIST)])
        other = _root_distances(p.body, [(p.left_hand, RIGHT_WRIST), (p.right_hand, LEFT_WRIST)])
        if own and len(own) == len(other):
            votes += 1 if sum(other) < sum(own) else -1
    return votes > 0


def _flat(points: np.ndarray | None) -> list[float]:
    return [] if points is None else [float(v) for v in points.reshape(-1)]


def to_pose_keypoint(frames: list[PoseFrame]) -> list[dict]:
    """ComfyUI's POSE_KEYPOINT (OpenPose JSON per frame, pixel coordinates), as comfyui_controlnet_aux emits;
    people with feet also get SDPose's ``foot_keypoints_2d``."""
    def person(p: Person) -> dict:
        out = {"pose_keypoints_2d": _flat(p.body), "face_keypoints_2d": _flat(p.face),
               "hand_left_keypoints_2d": _flat(p.left_hand), "hand_right_keypoints_2d": _flat(p.right_hand)}
        return out if p.feet is None else out | {"foot_keypoints_2d": _flat(p.feet)}
    return [{"people": [person(p) for p in f.people], "canvas_width": f.width, "canvas_height": f.height}
            for f in frames]


def from_pose_keypoint(data: list[dict], name: str = "POSE_KEYPOINT") -> list[PoseFrame]:
    """Parse POSE_KEYPOINT (layouts in the module docstring); ``name`` (the node input) leads any error."""
    if not isinstance(data, (list, tuple)):
        raise ValueError(f"{name}: got a {type(data).__name__}; {EXPECTED}")
    frames = []
    for i, frame in enumerate(data):
        where = f"frame {i}"
        try:
            if not isinstance(frame, dict):
                raise TypeError(f"a frame is a {type(frame).__name__}, not a dict")
            width, height = int(frame["canvas_width"]), int(frame["canvas_height"])
            if width <= 0 or height <= 0:
                raise ValueError(f"canvas is {width} x {height}")
            people = []
            for j, person in enumerate(frame.get("people") or []):
                where = f"frame {i}, person {j}"
                people.append(_person(person, width, height))
        except (KeyError, TypeError, ValueError) as err:
            why = f"no {err.args[0]!r}" if isinstance(err, KeyError) else str(err)
            raise ValueError(f"{name}: {where} is not OpenPose JSON ({why}); {EXPECTED}") from err
        frames.append(PoseFrame(width, height, people))
    if _hands_swapped([p for f in frames for p in f.people]):
        for p in (p for f in frames for p in f.people):
            p.left_hand, p.right_hand = p.right_hand, p.left_hand
    return frames


def draw_pose(frame: PoseFrame, body: bool = True, hands: bool = True, face: bool = True,
              feet: bool = False) -> np.ndarray:
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
    for person in frame.people if feet else []:
        for point, color in zip(person.feet if person.feet is not None else [], BODY_COLORS):
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
