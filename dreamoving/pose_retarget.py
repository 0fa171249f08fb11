"""Pose retargeting: the driving video's motion on the reference person's body.

Every limb of the driving skeleton keeps its direction in every frame (so joint angles and the motion are
unchanged) and is scaled to the reference's length for that limb (per-limb ratio reference / driving,
the driving length taken as its median over the video, so foreshortening still shows). The neck follows
the driving neck's path, scaled by the torso ratio, from the reference's neck position. Hands, face and each
foot (SDPose's or BODY_25's feet) move rigidly with their wrist, nose or ankle, scaled like the limb ending
there. Body keypoints are smoothed over time first.
"""
from __future__ import annotations

import numpy as np

from .pose import MIN_CONFIDENCE, Person, PoseFrame

NECK = 1
# (parent, child), parents before children; the tree of OpenPose's 18 body points rooted at the neck
BODY_TREE = [(1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7),
             (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13)]
TORSO = [(1, 8), (1, 11)]
# points carried by a body joint, scaled like the limb ending there: (Person field, its rows, joint, limb)
ATTACHED = [("left_hand", slice(None), 7, (6, 7)), ("right_hand", slice(None), 4, (3, 4)),
            ("face", slice(None), 0, (1, 0)), ("feet", slice(0, 3), 13, (12, 13)), ("feet", slice(3, 6), 10, (9, 10))]


def _visible(points: np.ndarray) -> np.ndarray:
    return points[..., 2] >= MIN_CONFIDENCE


def smooth(track: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over ``window`` frames of visible points ([frames, points, 3])."""
    if window <= 1:
        return track
    out = track.copy()
    half = window // 2
    seen = _visible(track)
    for t in range(len(track)):
        lo, hi = max(0, t - half), min(len(track), t + half + 1)
        weights = seen[lo:hi].astype(np.float32)[..., None]
        total = weights.sum(0)
        mean = (track[lo:hi, :, :2] * weights).sum(0) / np.maximum(total, 1)
        out[t, :, :2] = np.where((total > 0) & seen[t][:, None], mean, track[t, :, :2])
    return out


def _limb_lengths(body: np.ndarray) -> dict[tuple[int, int], float]:
    return {(a, b): float(np.linalg.norm(body[b, :2] - body[a, :2])) for a, b in BODY_TREE
            if body[a, 2] >= MIN_CONFIDENCE and body[b, 2] >= MIN_CONFIDENCE}


def limb_ratios(driving: np.ndarray, reference: np.ndarray) -> dict[tuple[int, int], float]:
    """Reference length / median driving length per limb; limbs the reference lacks use the torso ratio."""
    ref = _limb_lengths(reference)
    per_frame = [_limb_lengths(body) for body in driving]
    ratios = {}
    for limb in BODY_TREE:
        lengths = [f[limb] for f in per_frame if limb in f and f[limb] > 0]
        if lengths and limb in ref:
            ratios[limb] = ref[limb] / float(np.median(lengths))
    torso = [ratios[limb] for limb in TORSO if limb in ratios]
    default = float(np.mean(torso)) if torso else float(np.median(list(ratios.values()) or [1.0]))
    return {limb: ratios.get(limb, default) for limb in BODY_TREE} | {"torso": default}


def retarget(driving: list[PoseFrame], reference: PoseFrame, smooth_frames: int = 5) -> list[PoseFrame]:
    """The driving poses (first person per frame) moved onto ``reference``'s first person and canvas."""
    if not reference.people:
        raise ValueError("reference pose: no person in the reference image")
    if not any(f.people for f in driving):
        raise ValueError("driving poses: no person in any frame")
    blank = np.zeros((18, 3), np.float32)
    bodies = smooth(np.stack([f.people[0].body if f.people else blank for f in driving]), smooth_frames)
    ref = reference.people[0]
    ratios = limb_ratios(bodies, ref.body)
    start = next(i for i, f in enumerate(driving) if f.people)
    origin = bodies[start, NECK, :2]
    out = []
    for t, frame in enumerate(driving):
        if not frame.people:
            out.append(PoseFrame(reference.width, reference.height))
            continue
        src = bodies[t]
        body = np.zeros_like(src)
        body[NECK] = src[NECK]
        body[NECK, :2] = ref.body[NECK, :2] + (src[NECK, :2] - origin) * ratios["torso"]
        for parent, child in BODY_TREE:
            if src[child, 2] >= MIN_CONFIDENCE and body[parent, 2] >= MIN_CONFIDENCE:
                body[child, :2] = body[parent, :2] + (src[child, :2] - src[parent, :2]) * ratios[(parent, child)]
                body[child, 2] = src[child, 2]
        parts = {}
        for part, rows, joint, limb in ATTACHED:
            points = getattr(frame.people[0], part)
            if points is not None:
                parts.setdefault(part, points.copy())[rows] = _attached(points[rows], src, body, joint, ratios[limb])
        out.append(PoseFrame(reference.width, reference.height, [Person(body, **parts)]))
    return out


def _attached(points, src_body, new_body, joint, ratio):
    """Points moved rigidly with their body joint and scaled like the limb that carries it."""
    if new_body[joint, 2] < MIN_CONFIDENCE:
        return np.zeros_like(points)  # its joint is gone: all points hidden
    moved = points.copy()
    moved[:, :2] = new_body[joint, :2] + (points[:, :2] - src_body[joint, :2]) * ratio
    return moved
