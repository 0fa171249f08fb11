"""Pose drawing, POSE_KEYPOINT JSON, DWPose decoding on test-built ONNX graphs, and retargeting."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from dmtest import control_models
from dreamoving.dwpose import DWPose, wholebody_to_openpose
from dreamoving.pose import Person, PoseFrame, draw_pose, from_pose_keypoint, to_pose_keypoint
from dreamoving.pose_retarget import BODY_TREE, retarget


def body(points: dict[int, tuple[float, float]]) -> np.ndarray:
    out = np.zeros((18, 3), np.float32)
    for i, (x, y) in points.items():
        out[i] = (x, y, 1.0)
    return out


def test_body_drawing_is_pixel_exact():
    frame = PoseFrame(128, 96, [Person(body({1: (50, 50), 2: (90, 50)}))])
    reference = np.zeros((96, 128, 3), np.uint8)
    # ControlNet's openpose drawing for neck -> right shoulder: a red ellipse (stick width 4), dimmed to 60%,
    # then the neck (orange 255,85,0) and right shoulder (255,170,0) joints as radius-4 dots
    cv2.fillConvexPoly(reference, cv2.ellipse2Poly((70, 50), (20, 4), 180, 0, 360, 1), (255, 0, 0))
    reference = (reference * 0.6).astype(np.uint8)
    cv2.circle(reference, (50, 50), 4, (255, 85, 0), thickness=-1)
    cv2.circle(reference, (90, 50), 4, (255, 170, 0), thickness=-1)
    drawn = draw_pose(frame)
    assert np.array_equal(drawn, reference)
    assert tuple(drawn[50, 70]) == (153, 0, 0) and tuple(drawn[50, 50]) == (255, 85, 0)
    assert not draw_pose(frame, body=False).any()


def test_hand_and_face_drawing_is_pixel_exact():
    hand = np.zeros((21, 3), np.float32)
    hand[0], hand[1] = (20, 30, 1), (40, 30, 1)
    face = np.zeros((68, 3), np.float32)
    face[0] = (60, 10, 1)
    frame = PoseFrame(80, 40, [Person(body({}), left_hand=hand, face=face)])
    reference = np.zeros((40, 80, 3), np.uint8)
    cv2.line(reference, (20, 30), (40, 30), (255.0, 0.0, 0.0), thickness=2)  # edge 0: hue 0
    cv2.circle(reference, (20, 30), 4, (0, 0, 255), thickness=-1)
    cv2.circle(reference, (40, 30), 4, (0, 0, 255), thickness=-1)
    cv2.circle(reference, (60, 10), 3, (255, 255, 255), thickness=-1)
    assert np.array_equal(draw_pose(frame), reference)


def test_pose_keypoint_round_trip_and_normalised_input():
    person = Person(body({0: (10, 20), 1: (12, 30)}), left_hand=np.ones((21, 3), np.float32),
                    face=np.full((70, 3), 2.0, np.float32))
    data = to_pose_keypoint([PoseFrame(64, 48, [person]), PoseFrame(64, 48, [])])
    assert data[0]["canvas_width"] == 64 and len(data[0]["people"][0]["pose_keypoints_2d"]) == 54
    back = from_pose_keypoint(data)
    assert np.array_equal(back[0].people[0].body, person.body) and back[0].people[0].right_hand is None
    assert np.array_equal(back[0].people[0].face, person.face) and back[1].people == []
    normalised = [{"canvas_width": 100, "canvas_height": 50, "people": [{"pose_keypoints_2d": [0.5, 0.5, 1] * 18}]}]
    assert from_pose_keypoint(normalised)[0].people[0].body[0].tolist() == [50, 25, 1]
    with pytest.raises(ValueError, match="pose keypoints: frame 0 is not OpenPose JSON"):
        from_pose_keypoint([{"people": []}])


def test_dwpose_pipeline_on_onnx_graphs_with_the_real_io(tmp_path):
    control_models.ensure_control_models(tmp_path, tmp_path)
    estimator = DWPose(str(tmp_path / "yolox_l.onnx"), str(tmp_path / "dw-ll_ucoco_384.onnx"), ["CPUExecutionProvider"])
    image = np.full((640, 640, 3), 200, np.uint8)
    assert estimator.people_boxes(image).tolist() == [list(control_models.PERSON_BOX)]
    person = estimator(image).people[0]
    # box (236,136)-(436,536): centre (336,336); padded x1.25 and fitted to 3:4 -> 375 x 500 pixels
    assert person.body[0, :2].tolist() == [336, 336], "crop centre -> box centre (nose)"
    corner = wholebody_to_openpose(*estimator.keypoints(image, np.array(control_models.PERSON_BOX)))
    assert person.body[0].tolist() == corner.body[0].tolist()
    points, _ = estimator.keypoints(image, np.array(control_models.PERSON_BOX))
    assert points[1].tolist() == [336 - 187.5, 336 - 250], "crop corner -> centre - scale / 2"
    assert estimator(np.zeros((640, 640, 3), np.uint8)).people == []
    with pytest.raises(ValueError, match=r"dw-ll_ucoco_384.onnx: expected an input of shape \[1, 3, 384, 288\]"):
        DWPose(str(tmp_path / "yolox_l.onnx"), str(tmp_path / "yolox_l.onnx"), ["CPUExecutionProvider"])


def test_wholebody_to_openpose_order():
    points = np.arange(133 * 2, dtype=np.float32).reshape(133, 2)
    scores = np.ones(133, np.float32)
    person = wholebody_to_openpose(points, scores)
    # OpenPose 2 = right shoulder = COCO 6; 5 = left shoulder = COCO 5; neck = their midpoint
    assert person.body[2, :2].tolist() == points[6].tolist() and person.body[5, :2].tolist() == points[5].tolist()
    assert person.body[1, :2].tolist() == ((points[5] + points[6]) / 2).tolist()
    assert person.left_hand[0, :2].tolist() == points[91].tolist() and person.face.shape == (68, 3)


def _skeleton(lengths: dict, angles: dict, neck=(100.0, 100.0)) -> np.ndarray:
    out = np.zeros((18, 3), np.float32)
    out[1] = (*neck, 1.0)
    for parent, child in BODY_TREE:
        a = angles[(parent, child)]
        out[child] = (out[parent, 0] + lengths[(parent, child)] * math.cos(a),
                      out[parent, 1] + lengths[(parent, child)] * math.sin(a), 1.0)
    return out


def test_retarget_takes_reference_lengths_and_keeps_angles():
    rng = np.random.default_rng(0)
    drive_len = {limb: float(rng.uniform(10, 40)) for limb in BODY_TREE}
    ref_len = {limb: float(rng.uniform(10, 40)) for limb in BODY_TREE}
    base = {limb: float(rng.uniform(-math.pi, math.pi)) for limb in BODY_TREE}
    driving = []
    for t in range(8):
        angles = {limb: a + 0.2 * t * (limb == (2, 3)) for limb, a in base.items()}  # the right arm swings
        driving.append(PoseFrame(256, 256, [Person(_skeleton(drive_len, angles, neck=(100 + 3 * t, 100)))]))
    reference = PoseFrame(320, 240, [Person(_skeleton(ref_len, base, neck=(160, 60)))])
    out = retarget(driving, reference, smooth_frames=1)
    for t, frame in enumerate(out):
        src, new = driving[t].people[0].body, frame.people[0].body
        assert (frame.width, frame.height) == (320, 240)
        for parent, child in BODY_TREE:
            length = np.linalg.norm(new[child, :2] - new[parent, :2])
            assert length == pytest.approx(ref_len[(parent, child)], rel=1e-4)
            angle_new = math.atan2(*(new[child, :2] - new[parent, :2])[::-1])
            angle_src = math.atan2(*(src[child, :2] - src[parent, :2])[::-1])
            assert angle_new == pytest.approx(angle_src, abs=1e-4)
    torso = np.mean([ref_len[(1, 8)] / drive_len[(1, 8)], ref_len[(1, 11)] / drive_len[(1, 11)]])
    assert out[5].people[0].body[1, :2].tolist() == pytest.approx([160 + 15 * torso, 60], rel=1e-4)
