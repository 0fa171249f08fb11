"""Real motion capture for synthetic dancers: pybullet's DeepMimic clips on its humanoid skeleton.

A DeepMimic motion (``pybullet_data/data/motions/humanoid3d_*.txt``) is JSON {"Loop": "wrap" | "none",
"Frames": [[duration, root position (3), root rotation (4, w x y z), chest (4), neck (4), right hip (4),
right knee (1 angle), right ankle (4), right shoulder (4), right elbow (1), left hip (4), left knee (1),
left ankle (4), left shoulder (4), left elbow (1)], ...]} (44 numbers a frame, as pybullet_envs' deep_mimic
``HumanoidPoseInterpolator`` reads them); ``duration`` is the time to the next keyframe. The skeleton is
``pybullet_data/humanoid/humanoid.urdf`` at pybullet's ``globalScaling=0.25`` (metres): joint origins in their
parent link's frame, knees and elbows revolute about their z axis. Y is up; the rest pose faces +x with its
right side at +z.
"""
from __future__ import annotations

import functools
import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace

import numpy as np
import pybullet_data

MOTIONS_DIR = os.path.join(pybullet_data.getDataPath(), "data", "motions")
URDF_PATH = os.path.join(pybullet_data.getDataPath(), "humanoid", "humanoid.urdf")
URDF_SCALE = 0.25  # pybullet_envs/deep_mimic loads humanoid.urdf with globalScaling=0.25
MOTIONS = ("walk", "run", "jump", "spin", "spinkick", "kick", "punch", "cartwheel", "backflip", "roll", "crawl",
           "dance_a", "dance_b", "getup_facedown", "getup_faceup")
FRAME_JOINTS = (("chest", 4), ("neck", 4), ("right_hip", 4), ("right_knee", 1), ("right_ankle", 4),
                ("right_shoulder", 4), ("right_elbow", 1), ("left_hip", 4), ("left_knee", 1), ("left_ankle", 4),
                ("left_shoulder", 4), ("left_elbow", 1))  # after duration, root position and root rotation
FRAME_SIZE = 8 + sum(size for _, size in FRAME_JOINTS)
EXPECTED = ("expected DeepMimic motion JSON {\"Loop\": \"wrap\" | \"none\", \"Frames\": [at least 2 frames of "
            f"{FRAME_SIZE} numbers: duration, root position (3), root rotation (4, w x y z), then chest, neck, "
            "right hip, right knee (1), right ankle, right shoulder, right elbow (1), left hip, left knee (1), left "
            "ankle, left shoulder, left elbow (1) rotations (4, w x y z, unless marked 1 = angle)]}")
HEAD_POINTS = {  # directions in the head's frame (x forward, y up, z right), on the head sphere
    "nose": (1.0, -0.12, 0.0), "right_eye": (0.85, 0.2, 0.36), "left_eye": (0.85, 0.2, -0.36),
    "right_ear": (-0.12, 0.02, 1.0), "left_ear": (-0.12, 0.02, -1.0)}
HEAD_POINT_DEPTH = 0.95  # face points sit just inside the sphere, so they always land on the rendered head
OPENPOSE_POINTS = ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
                   "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
                   "right_eye", "left_eye", "right_ear", "left_ear")


@dataclass(frozen=True)
class Shape:
    """A link's collision shape: ``kind`` sphere (size = radius), capsule (radius, length) or box (x, y, z),
    centred at ``origin`` in the link's frame (metres)."""
    kind: str
    origin: np.ndarray
    size: tuple[float, ...]


@dataclass(frozen=True)
class Skeleton:
    """Joints in parent-first order (each named after its child link); ``offsets`` [J, 3] are joint origins
    in the parent link's frame, ``axes`` [J, 3] revolute axes (zero for other joints)."""
    joints: tuple[str, ...]
    parents: tuple[int, ...]
    offsets: np.ndarray
    axes: np.ndarray
    shapes: dict[str, Shape]

    def index(self, joint: str) -> int:
        return self.joints.index(joint)


@dataclass(frozen=True)
class Pose:
    """A pose sequence: ``root`` [T, 3] world positions and ``rotations`` [T, J, 4] unit quaternions (w x y z)
    in skeleton joint order: the root's in the world, every other joint's relative to its parent link."""
    root: np.ndarray
    rotations: np.ndarray

    def __len__(self) -> int:
        return len(self.root)


@dataclass(frozen=True)
class Motion:
    """Keyframes of one clip: ``times`` [K] seconds, ``pose`` (K frames), ``loop`` for "wrap" clips."""
    name: str
    times: np.ndarray
    pose: Pose
    loop: bool

    @property
    def duration(self) -> float:
        return float(self.times[-1])

    @property
    def cycle_offset(self) -> np.ndarray:
        """Root displacement over one cycle in the ground plane (what each wrap adds)."""
        offset = self.pose.root[-1] - self.pose.root[0]
        return offset * np.array([1.0, 0.0, 1.0])


@dataclass(frozen=True)
class Posed:
    """Forward kinematics: joint ``positions`` [T, J, 3] and link ``rotations`` [T, J, 3, 3] in the world."""
    positions: np.ndarray
    rotations: np.ndarray


def _floats(text: str) -> np.ndarray:
    return np.array([float(v) for v in text.split()])


def _shape(link: ET.Element, scale: float) -> Shape | None:
    collision = link.find("collision")
    if collision is None:
        return None
    origin = _floats(collision.find("origin").get("xyz")) * scale
    geometry = collision.find("geometry")[0]
    if geometry.tag == "sphere":
        return Shape("sphere", origin, (float(geometry.get("radius")) * scale,))
    if geometry.tag == "capsule":
        return Shape("capsule", origin, (float(geometry.get("radius")) * scale, float(geometry.get("length")) * scale))
    return Shape("box", origin, tuple(_floats(geometry.get("size")) * scale))


@functools.lru_cache(maxsize=4)
def load_skeleton(path: str = URDF_PATH, scale: float = URDF_SCALE) -> Skeleton:
    """The humanoid's joints, offsets and link shapes from its URDF (the fixed base link is dropped)."""
    with open(path, encoding="utf-8") as f:
        robot = ET.fromstring(f.read().rstrip("\0\r\n"))  # pybullet's copy ends in a NUL byte
    shapes = {link.get("name"): shape for link in robot.iter("link") if (shape := _shape(link, scale))}
    by_child = {j.find("child").get("link"): j for j in robot.iter("joint")}
    children: dict[str, list[str]] = {}
    for child, joint in by_child.items():
        children.setdefault(joint.find("parent").get("link"), []).append(child)
    order, parents, stack = [], [], [("root", -1)]
    while stack:
        link, parent = stack.pop(0)
        order.append(link)
        parents.append(parent)
        stack.extend((child, len(order) - 1) for child in children.get(link, []))
    offsets = np.array([_floats(by_child[j].find("origin").get("xyz")) * scale for j in order])
    axes = np.array([_floats(by_child[j].find("axis").get("xyz")) if by_child[j].get("type") == "revolute"
                     else np.zeros(3) for j in order])
    return Skeleton(tuple(order), tuple(parents), offsets, axes, shapes)


def _normalized(q: np.ndarray) -> np.ndarray:
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def _axis_angle(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Quaternions [..., 4] for rotations by ``angle`` [...] about the unit ``axis`` [3]."""
    half = angle[..., None] / 2
    return np.concatenate([np.cos(half), np.sin(half) * axis], axis=-1)


def _frames_array(path: str, data) -> np.ndarray:
    """The ``Frames`` of parsed motion JSON as a [K, 44] array, or a ValueError naming ``path``."""
    if not isinstance(data, dict) or data.get("Loop") not in ("wrap", "none") or "Frames" not in data:
        raise ValueError(f"motion file '{path}': no \"Loop\" (wrap/none) or \"Frames\"; {EXPECTED}")
    frames = data["Frames"]
    if not isinstance(frames, list) or len(frames) < 2:
        raise ValueError(f"motion file '{path}': \"Frames\" is not a list of at least 2 frames; {EXPECTED}")
    for i, frame in enumerate(frames):
        if not isinstance(frame, list) or len(frame) != FRAME_SIZE or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in frame):
            size = len(frame) if isinstance(frame, list) else type(frame).__name__
            raise ValueError(f"motion file '{path}': frame {i} is not {FRAME_SIZE} numbers (got {size}); {EXPECTED}")
    array = np.array(frames, dtype=np.float64)
    if not np.isfinite(array).all() or (array[:-1, 0] <= 0).any():
        raise ValueError(f"motion file '{path}': non-finite numbers or a duration <= 0 before the last frame; "
                         f"{EXPECTED}")
    return array


def read_motion(path: str, skeleton: Skeleton | None = None) -> Motion:
    """A DeepMimic motion file as keyframes on ``skeleton`` (default: pybullet's humanoid)."""
    skeleton = skeleton or load_skeleton()
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"motion file '{path}': not JSON ({err}); {EXPECTED}") from err
    array = _frames_array(path, data)
    rotations = np.zeros((len(array), len(skeleton.joints), 4))
    rotations[..., 0] = 1.0
    rotations[:, skeleton.index("root")] = array[:, 4:8]
    column = 8
    for joint, size in FRAME_JOINTS:
        j = skeleton.index(joint)
        values = array[:, column:column + size]
        rotations[:, j] = values if size == 4 else _axis_angle(skeleton.axes[j], values[:, 0])
        column += size
    if (np.linalg.norm(rotations, axis=-1) < 0.5).any():
        raise ValueError(f"motion file '{path}': a rotation quaternion is near zero; {EXPECTED}")
    times = np.concatenate([[0.0], np.cumsum(array[:-1, 0])])
    name = os.path.splitext(os.path.basename(path))[0].removeprefix("humanoid3d_")
    return Motion(name, times, Pose(array[:, 1:4].copy(), _normalized(rotations)), data["Loop"] == "wrap")


@functools.lru_cache(maxsize=32)
def load_motion(name: str) -> Motion:
    """One of pybullet's humanoid motions by name (see MOTIONS)."""
    if name not in MOTIONS:
        raise ValueError(f"unknown motion '{name}'; expected one of {', '.join(MOTIONS)}")
    return read_motion(os.path.join(MOTIONS_DIR, f"humanoid3d_{name}.txt"))


def slerp(q0: np.ndarray, q1: np.ndarray, fraction: np.ndarray) -> np.ndarray:
    """Shortest-path spherical interpolation of quaternions [..., 4] by ``fraction`` (broadcast over [...])."""
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.clip(np.abs(dot), 0.0, 1.0)
    angle = np.arccos(dot)
    sin = np.sin(angle)
    f = np.asarray(fraction)[..., None]
    near = sin < 1e-6
    w0 = np.where(near, 1 - f, np.sin((1 - f) * angle) / np.where(near, 1, sin))
    w1 = np.where(near, f, np.sin(f * angle) / np.where(near, 1, sin))
    return _normalized(w0 * q0 + w1 * q1)


def sample(motion: Motion, times: np.ndarray) -> Pose:
    """The motion at ``times`` (seconds): slerped rotations, lerped root positions. "wrap" motions continue past
    their end, each cycle adding the root's ground-plane displacement; "none" motions hold their ends."""
    times = np.asarray(times, dtype=np.float64)
    cycles = np.floor(times / motion.duration) if motion.loop else np.zeros_like(times)
    local = np.clip(times - cycles * motion.duration, 0.0, motion.duration)
    upper = np.clip(np.searchsorted(motion.times, local, side="right"), 1, len(motion.times) - 1)
    lower = upper - 1
    fraction = (local - motion.times[lower]) / (motion.times[upper] - motion.times[lower])
    keys = motion.pose
    root = keys.root[lower] + fraction[:, None] * (keys.root[upper] - keys.root[lower])
    root = root + cycles[:, None] * motion.cycle_offset
    rotations = slerp(keys.rotations[lower], keys.rotations[upper], fraction[:, None])
    return Pose(root, rotations)


def resample(motion: Motion, fps: float, frames: int, speed: float = 1.0, start: float = 0.0) -> Pose:
    """``frames`` poses at ``fps`` from motion time ``start``, played ``speed`` times as fast."""
    return sample(motion, start + speed * np.arange(frames) / fps)


def mirror(pose: Pose, skeleton: Skeleton) -> Pose:
    """Left and right swapped and reflected across the vertical x-y plane through the first root position
    (the body's sagittal plane: DeepMimic clips start facing +x); bone lengths are unchanged."""
    swap = [skeleton.index(j.replace("right_", "left_") if j.startswith("right_") else j.replace("left_", "right_"))
            for j in skeleton.joints]
    rotations = pose.rotations[:, swap] * np.array([1.0, -1.0, -1.0, 1.0])  # M R M for M = diag(1, 1, -1)
    root = pose.root.copy()
    root[:, 2] = 2 * pose.root[0, 2] - pose.root[:, 2]
    return Pose(root, rotations)


def mirrored(motion: Motion, skeleton: Skeleton | None = None) -> Motion:
    """The motion with every keyframe mirrored (see ``mirror``)."""
    return replace(motion, name=f"{motion.name}_mirrored", pose=mirror(motion.pose, skeleton or load_skeleton()))


def quaternion_matrices(q: np.ndarray) -> np.ndarray:
    """Rotation matrices [..., 3, 3] of unit quaternions [..., 4] (w x y z)."""
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)], -2)


def forward_kinematics(skeleton: Skeleton, pose: Pose) -> Posed:
    """World joint positions and link rotations of every frame."""
    local = quaternion_matrices(pose.rotations)
    positions = np.zeros((len(pose), len(skeleton.joints), 3))
    rotations = np.zeros((len(pose), len(skeleton.joints), 3, 3))
    for j, parent in enumerate(skeleton.parents):
        if parent < 0:
            positions[:, j], rotations[:, j] = pose.root, local[:, j]
        else:
            positions[:, j] = positions[:, parent] + rotations[:, parent] @ skeleton.offsets[j]
            rotations[:, j] = rotations[:, parent] @ local[:, j]
    return Posed(positions, rotations)


def link_point(skeleton: Skeleton, posed: Posed, joint: str, point) -> np.ndarray:
    """World positions [T, 3] of ``point`` given in ``joint``'s link frame."""
    j = skeleton.index(joint)
    return posed.positions[:, j] + posed.rotations[:, j] @ np.asarray(point, dtype=np.float64)


def head_sphere(skeleton: Skeleton) -> tuple[np.ndarray, float]:
    """The head's centre in the neck link's frame and its radius (the URDF's neck sphere)."""
    shape = skeleton.shapes["neck"]
    return shape.origin, shape.size[0]


def head_point(skeleton: Skeleton, posed: Posed, name: str) -> np.ndarray:
    """World positions [T, 3] of a face point (see HEAD_POINTS) on the head sphere."""
    centre, radius = head_sphere(skeleton)
    direction = np.array(HEAD_POINTS[name]) / np.linalg.norm(HEAD_POINTS[name])
    return link_point(skeleton, posed, "neck", centre + HEAD_POINT_DEPTH * radius * direction)


def foot_points(skeleton: Skeleton, side: str) -> dict[str, np.ndarray]:
    """Toe tip, heel and sole centre of one foot in its ankle link's frame (from the URDF's foot box)."""
    shape = skeleton.shapes[f"{side}_ankle"]
    half = np.array(shape.size) / 2
    sole = shape.origin - [0, half[1], 0]
    return {"toe": sole + [half[0], 0, 0], "heel": sole - [half[0], 0, 0], "sole": sole}


def toe_points(skeleton: Skeleton, posed: Posed) -> np.ndarray:
    """World positions [T, 2, 3] of the right and left toe tips."""
    return np.stack([link_point(skeleton, posed, f"{side}_ankle", foot_points(skeleton, side)["toe"])
                     for side in ("right", "left")], axis=1)


def openpose_points(skeleton: Skeleton, posed: Posed) -> np.ndarray:
    """3D OpenPose-18 points [T, 18, 3] (order in OPENPOSE_POINTS): joints where the skeleton has them
    (wrists are the forearm ends), the neck between the shoulders, face points on the head sphere."""
    def point(name: str) -> np.ndarray:
        if name == "neck":
            return (posed.positions[:, skeleton.index("right_shoulder")]
                    + posed.positions[:, skeleton.index("left_shoulder")]) / 2
        if name in HEAD_POINTS:
            return head_point(skeleton, posed, name)
        return posed.positions[:, skeleton.index(name)]
    return np.stack([point(name) for name in OPENPOSE_POINTS], axis=1)


def facing(skeleton: Skeleton, posed: Posed) -> np.ndarray:
    """Headings [T] the body faces (radians about +y, 0 = +x): square to its hip and shoulder lines."""
    right = sum(posed.positions[:, skeleton.index(f"right_{j}")] - posed.positions[:, skeleton.index(f"left_{j}")]
                for j in ("hip", "shoulder"))
    return np.arctan2(right[:, 0], right[:, 2])
