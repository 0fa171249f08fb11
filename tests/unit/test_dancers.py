"""Synthetic dancers: motion capture kinematics, the renderer's keypoints and bodies, and the dataset."""
from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest

from train import dancer_render, dancers, mocap
from train.dancer_render import PARTS, Body, Character

MOTIONS = ("walk", "dance_a", "cartwheel", "crawl")


@pytest.fixture(scope="module")
def skeleton():
    return mocap.load_skeleton()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("dancers")
    dancers.generate(str(root), train_clips=4, eval_clips=2, frames=8, eval_frames=8, pose_scale=2, log=None)
    return root


def _posed(skeleton, motion, frames=30, speed=1.0, start=0.0):
    return mocap.forward_kinematics(skeleton, mocap.resample(motion, 15, frames, speed, start))


def _bone_lengths(skeleton, posed):
    children = [j for j, p in enumerate(skeleton.parents) if p >= 0]
    parents = [skeleton.parents[j] for j in children]
    return np.linalg.norm(posed.positions[:, children] - posed.positions[:, parents], axis=-1)


def test_bone_lengths_are_the_urdf_offsets_in_every_frame(skeleton):
    offsets = np.linalg.norm(skeleton.offsets[[j for j, p in enumerate(skeleton.parents) if p >= 0]], axis=1)
    assert 0.4 < offsets.max() < 0.45, "the URDF is read at pybullet's 0.25 scale (thigh ~0.42 m)"
    for name in MOTIONS:
        lengths = _bone_lengths(skeleton, _posed(skeleton, mocap.load_motion(name), speed=1.3, start=0.4))
        np.testing.assert_allclose(lengths, np.broadcast_to(offsets, lengths.shape), atol=1e-5, err_msg=name)


def test_walk_keeps_a_foot_on_the_ground_and_wraps_forward(skeleton):
    walk = mocap.load_motion("walk")
    posed = _posed(skeleton, walk, frames=45)
    soles = np.stack([mocap.link_point(skeleton, posed, f"{side}_ankle", point)
                      for side in ("right", "left") for point in mocap.foot_points(skeleton, side).values()], 1)
    lowest = soles[..., 1].min(1)
    assert np.abs(lowest).max() < 0.03, f"the stance foot stays on the floor, got {lowest.min():.3f}..{lowest.max():.3f}"
    head = mocap.head_point(skeleton, posed, "nose")[:, 1]
    assert 1.35 < head.min() and head.max() < 1.65, "a standing adult's nose height"
    times = np.array([0.1, 0.5, 0.9])
    later = mocap.sample(walk, times + walk.duration)
    now = mocap.sample(walk, times)
    np.testing.assert_allclose(later.root, now.root + walk.cycle_offset, atol=1e-9)
    np.testing.assert_allclose(later.rotations, now.rotations, atol=1e-9)
    assert walk.cycle_offset[0] > 1.0 and walk.cycle_offset[1] == 0, "a cycle walks forward along +x"


def test_mirroring_swaps_sides_and_keeps_bone_lengths(skeleton):
    pose = mocap.resample(mocap.load_motion("dance_a"), 15, 20, 1.0, 0.3)
    posed, flipped = mocap.forward_kinematics(skeleton, pose), mocap.forward_kinematics(skeleton, mocap.mirror(pose, skeleton))
    plane = pose.root[0, 2]
    reflected = posed.positions * [1, 1, -1] + [0, 0, 2 * plane]
    for joint in skeleton.joints:
        other = joint.replace("right_", "@").replace("left_", "right_").replace("@", "left_")
        np.testing.assert_allclose(flipped.positions[:, skeleton.index(joint)],
                                   reflected[:, skeleton.index(other)], atol=1e-9, err_msg=joint)
    np.testing.assert_allclose(_bone_lengths(skeleton, flipped), _bone_lengths(skeleton, posed), atol=1e-9)
    points, flipped_points = mocap.openpose_points(skeleton, posed), mocap.openpose_points(skeleton, flipped)
    r_eye, l_eye = mocap.OPENPOSE_POINTS.index("right_eye"), mocap.OPENPOSE_POINTS.index("left_eye")
    np.testing.assert_allclose(flipped_points[:, r_eye], points[:, l_eye] * [1, 1, -1] + [0, 0, 2 * plane], atol=1e-9)


@pytest.mark.parametrize("text, why", [
    ("{not json", "not JSON"),
    ('{"Loop": "wrap"}', "Frames"),
    ('{"Loop": "wrap", "Frames": [[0.1, 0, 0.9, 0], [0.1, 0, 0.9, 0]]}', "frame 0 is not 44 numbers"),
    ('{"Loop": "sometimes", "Frames": []}', "Loop"),
])
def test_malformed_motion_files_name_the_file(tmp_path, text, why):
    path = tmp_path / "broken_motion.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(str(path))) as err:
        mocap.read_motion(str(path))
    assert why in str(err.value) and "DeepMimic" in str(err.value)


def _on(mask: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """Whether each visible keypoint lies on the mask or within 1 px of it."""
    grown = mask.copy()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            grown |= np.roll(mask, (dy, dx), axis=(0, 1))
    x, y = keypoints[:, 0].astype(int), keypoints[:, 1].astype(int)
    return grown[y, x]


def test_keypoints_land_on_the_rendered_body(skeleton, dataset):
    hits, faces_on_head = [], []
    for clip in sorted((dataset / "clips").glob("*.npz")):
        with np.load(clip) as data:
            mask, keypoints = data["mask"], data["keypoints"]
        assert mask.any(axis=(1, 2)).all(), "the dancer is in every frame"
        assert not (mask[:, 0].any() or mask[:, -1].any() or mask[:, :, 0].any() or mask[:, :, -1].any()), \
            f"{clip.name}: the figure stays inside the frame"
        for m, k in zip(mask, keypoints):
            hits += list(_on(m, k[k[:, 2] > 0]))
    for i, name in enumerate(MOTIONS):
        character = Character.sample(40 + i)
        posed = _posed(skeleton, mocap.load_motion(name), frames=6, start=0.5)
        cameras = dancer_render.clip_cameras(Body(character, skeleton), posed, 15, (64, 96), yaw=np.radians(25 * i - 30))
        for frame in dancer_render.render_frames(character, skeleton, posed, cameras):
            visible = frame.keypoints[frame.keypoints[:, 2] > 0]
            hits += list(_on(frame.mask, visible))
            head = frame.parts == PARTS.index("head")
            for point in (0, 14, 15):  # nose, eyes
                if frame.keypoints[point, 2] > 0:
                    faces_on_head.append(_on(head, frame.keypoints[point:point + 1])[0])
    assert len(hits) > 500 and np.mean(hits) >= 0.95, f"{np.mean(hits):.3f} of {len(hits)} keypoints on the body"
    assert len(faces_on_head) > 30 and np.mean(faces_on_head) >= 0.9, f"{np.mean(faces_on_head):.3f} on the head"


def test_face_points_turned_away_are_missing(skeleton):
    character = Character.sample(5)
    posed = _posed(skeleton, mocap.load_motion("walk"), frames=1)
    body = Body(character, skeleton)
    front = dancer_render.render_frames(character, skeleton, posed, dancer_render.clip_cameras(body, posed, 15, (64, 96)))
    back = dancer_render.render_frames(character, skeleton, posed,
                                       dancer_render.clip_cameras(body, posed, 15, (64, 96), yaw=np.pi))
    assert front[0].keypoints[[0, 14, 15, 16, 17], 2].all(), "all face points seen from the front"
    assert not back[0].keypoints[[0, 14, 15], 2].any(), "no nose or eyes seen from behind"
    assert back[0].keypoints[:14, 2][1:].all(), "the body is seen from behind"
    r_shoulder, l_shoulder = front[0].keypoints[2, 0], front[0].keypoints[5, 0]
    assert r_shoulder < l_shoulder, "facing the camera, the person's right is on the image's left"


def _shade_free_distance(pixels: np.ndarray, albedo) -> np.ndarray:
    """Distance of colours [N, 3] in [0, 1] from the albedo under its best Lambert shade in 0.3..1.2."""
    albedo = np.asarray(albedo)
    scale = np.clip(pixels @ albedo / max(albedo @ albedo, 1e-6), 0.3, 1.2)
    return np.linalg.norm(pixels - scale[:, None] * albedo, axis=1)


def test_a_dancer_is_a_clothed_body_not_a_stick_figure(skeleton):
    posed = _posed(skeleton, mocap.load_motion("walk"), frames=1)
    for seed in (1, 2, 5, 7, 8):  # solid, solid, two-tone, striped, striped
        character = Character.sample(seed)
        camera = dancer_render.clip_cameras(Body(character, skeleton), posed, 15, (128, 192), elevation=0.0, fill=0.8)
        frame = dancer_render.render_frames(character, skeleton, posed, camera)[0]
        k = frame.keypoints
        neck, hips = k[1, :2], (k[8, :2] + k[11, :2]) / 2
        row = int((neck[1] + hips[1]) / 2)
        torso_width = (frame.parts[row] == PARTS.index("torso")).sum()
        arm = (k[2, :2] + k[3, :2]) / 2
        arm_width = (frame.parts[int(arm[1])] == PARTS.index("upper_arm")).sum() / 2  # both arms cross the row
        assert torso_width >= 1.5 * arm_width > 0, f"seed {seed}: torso {torso_width} px, upper arm {arm_width} px"

        corners = k[[2, 5, 11, 8], :2]
        inner = corners.mean(0) + 0.7 * (corners - corners.mean(0))
        region = cv2.fillConvexPoly(np.zeros(frame.mask.shape, np.uint8), np.round(inner).astype(np.int32), 1) > 0
        assert frame.mask[region].mean() > 0.95, f"seed {seed}: the torso is solid"
        colours = {"shirt": character.shirt, "skin": character.skin, "legwear": character.legwear_colour,
                   "background": character.background}
        if character.pattern != "solid":
            colours["second"] = character.second
        pixels = frame.rgb[region].astype(float) / 255
        nearest = np.argmin([_shade_free_distance(pixels, c) for c in colours.values()], axis=0)
        shares = np.bincount(nearest, minlength=len(colours)) / len(pixels)
        assert list(colours)[shares.argmax()] == "shirt" and shares[0] > 0.45, \
            f"seed {seed}: {dict(zip(colours, shares.round(2)))} ({character.describe()})"


def test_generation_is_deterministic(dataset, tmp_path):
    dancers.generate(str(tmp_path), train_clips=4, eval_clips=2, frames=8, eval_frames=8, pose_scale=2, log=None)
    assert (tmp_path / "index.json").read_text() == (dataset / "index.json").read_text()
    assert (tmp_path / "captions.csv").read_text() == (dataset / "captions.csv").read_text()
    for clip in sorted((dataset / "clips").glob("*.npz")):
        with np.load(clip) as a, np.load(tmp_path / "clips" / clip.name) as b:
            assert sorted(a.files) == sorted(b.files)
            for key in a.files:
                assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), f"{clip.name}: {key}"


def test_clip_arrays_have_the_documented_layout(dataset):
    with np.load(dataset / "clips" / "train_00000.npz") as data:
        shapes = {key: (data[key].shape, data[key].dtype.name) for key in data.files}
        depth, mask = data["depth"], data["mask"]
    assert shapes == {"frames": ((8, 96, 64, 3), "uint8"), "pose": ((8, 192, 128, 3), "uint8"),
                      "depth": ((8, 96, 64), "uint8"), "keypoints": ((8, 18, 3), "float32"),
                      "mask": ((8, 96, 64), "bool"), "reference": ((192, 128, 3), "uint8"),
                      "reference_keypoints": ((18, 3), "float32"), "face": ((112, 112, 3), "uint8")}
    assert (depth[~mask] == 0).all() and depth[mask].min() >= 32 and depth.max() == 255


def test_split_holds_out_dance_b_and_eval_characters(dataset):
    clips = json.loads((dataset / "index.json").read_text())["clips"]
    train = [c for c in clips.values() if c["split"] == "train"]
    evaluation = [c for c in clips.values() if c["split"] == "eval"]
    assert len(train) == 4 and len(evaluation) == 2
    assert any(c["motion"] == dancers.EVAL_MOTION for c in evaluation)
    assert all(c["character_seed"] >= dancers.EVAL_SEEDS for c in evaluation)
    planned = [dancers.plan_clip("train", i, 48, 15, 0) for i in range(150)]
    assert all(p.motion != dancers.EVAL_MOTION and p.character_seed < dancers.EVAL_SEEDS for p in planned + [
        dancers.plan_clip("train", i, 8, 15, 0) for i in range(4)])
    assert len({p.motion for p in planned}) >= 12, "train draws from all the other motions"
    assert 0.35 < np.mean([p.mirrored for p in planned]) < 0.65
    assert all(0.75 <= p.speed <= 1.5 and abs(p.camera["yaw"]) <= 60 for p in planned)
    assert "dance_b" in dancers.summary(str(dataset)) and "eval: 2 clips, 16 frames" in dancers.summary(str(dataset))


def test_datasets_give_training_tensors(dataset):
    clips = dancers.DancerClips(str(dataset), "train", frames=4)
    assert len(clips) == 4
    item = clips[1]
    assert item["pixels"].shape == (4, 3, 96, 64) and -1 <= item["pixels"].min() and item["pixels"].max() <= 1
    assert item["control"].shape == (4, 3, 96, 64) and 0 <= item["control"].min() and item["control"].max() <= 1
    assert item["control"].max() > 0.5, "the pose survives the nearest-exact resize"
    assert item["reference"].shape == (3, 192, 128) and item["face"].shape == (3, 112, 112)
    assert 0 <= item["reference"].min() and item["reference"].max() <= 1 and item["keypoints"].shape == (4, 18, 3)
    assert item["caption"].startswith("a person with ")
    again = dancers.DancerClips(str(dataset), "train", frames=4)[1]
    assert all(np.array_equal(item[k], again[k]) for k in ("pixels", "control", "keypoints"))
    first = dancers.DancerClips(str(dataset), "eval", frames=8, start="first")[0]
    with np.load(dataset / "clips" / "eval_00000.npz") as data:
        assert np.array_equal(((first["pixels"] + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy(), data["frames"])
    with pytest.raises(ValueError, match="fewer than the 9"):
        dancers.DancerClips(str(dataset), "train", frames=9)

    images = dancers.DancerImages(str(dataset), "eval")
    assert len(images) == 16
    image = images[9]
    assert image["pixels"].shape == (1, 3, 96, 64) and image["face"].shape == (3, 112, 112)
    assert set(image) == {"pixels", "caption", "reference", "face"}
