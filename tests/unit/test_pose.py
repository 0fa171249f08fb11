"""Pose drawing, POSE_KEYPOINT JSON, DWPose decoding on test-built ONNX graphs, and retargeting."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from dmtest import control_models
from dreamoving.dwpose import DWPose, wholebody_to_openpose
from dreamoving.pose import BODY_COLORS, Person, PoseFrame, draw_pose, from_pose_keypoint, to_pose_keypoint
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
    assert "foot_keypoints_2d" not in data[0]["people"][0], "no feet: comfyui_controlnet_aux's keys only"
    back = from_pose_keypoint(data)
    assert np.array_equal(back[0].people[0].body, person.body) and back[0].people[0].right_hand is None
    assert np.array_equal(back[0].people[0].face, person.face) and back[1].people == []
    normalised = [{"canvas_width": 100, "canvas_height": 50, "people": [{"pose_keypoints_2d": [0.5, 0.5, 1] * 18}]}]
    assert from_pose_keypoint(normalised)[0].people[0].body[0].tolist() == [50, 25, 1]
    with pytest.raises(ValueError, match=r"POSE_KEYPOINT: frame 0 is not OpenPose JSON \(no 'canvas_width'\)"):
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


# core ComfyUI 0.33.0's SDPose Keypoint Extractor (comfy_extras/nodes_sdpose.py: _to_openpose_frames, l.40-73,
# after _preprocess_keypoints, l.13-37): per person flat x, y, score lists in image pixels; pose_keypoints_2d = 18
# OpenPose points, foot_keypoints_2d = 6 (COCO-WholeBody 17-22: l-big toe, l-small toe, l-heel, r-big toe,
# r-small toe, r-heel), face_keypoints_2d = 68 landmarks + body[14] + body[15], hand_right_keypoints_2d =
# COCO-WholeBody 91-111 (the person's LEFT hand), hand_left_keypoints_2d = 112-132 (the right); a point not found
# is written (-1, -1) with its raw heatmap score (comfy/ldm/modules/sdpose.py l.83-84, nodes_sdpose.py l.497-500).
FOOT_OFFSETS = [(8, 10), (14, 6), (-2, 8), (-8, 10), (-14, 6), (2, 8)]  # from the ankle: left foot, right foot
HAND_OFFSETS = [(0, 0)] + [(3 * finger - 6, 4 + 3 * joint) for finger in range(5) for joint in range(4)]
RING = np.stack([np.cos(np.linspace(0, 2 * np.pi, 68, endpoint=False)),
                 np.sin(np.linspace(0, 2 * np.pi, 68, endpoint=False))], 1)


def sdpose_person(body18: np.ndarray) -> dict:
    """``body18`` [18, 3] with feet on the ankles, hands on the wrists and a face ring on the nose, as SDPose writes."""
    def flat(xy, scores):
        pts = np.concatenate([np.asarray(xy, np.float32), np.asarray(scores, np.float32)[:, None]], 1)
        pts[pts[:, 2] <= 0, :2] = -1  # not found
        return pts.reshape(-1).tolist()
    seen = np.full(21, 0.9)
    feet = [body18[13 if i < 3 else 10, :2] + d for i, d in enumerate(FOOT_OFFSETS)]
    face = np.concatenate([body18[0, :2] + 6 * RING, body18[[14, 15], :2]])
    face_scores = np.r_[np.full(5, 0.8), -0.03, np.full(62, 0.8), body18[[14, 15], 2]]  # landmark 5 not found
    return {"pose_keypoints_2d": flat(body18[:, :2], body18[:, 2]), "foot_keypoints_2d": flat(feet, seen[:6]),
            "face_keypoints_2d": flat(face, face_scores),
            "hand_right_keypoints_2d": flat(body18[7, :2] + HAND_OFFSETS, seen),  # the left hand (COCO 91-111)
            "hand_left_keypoints_2d": flat(body18[4, :2] + HAND_OFFSETS, seen)}


STANDING = {0: (128, 40), 1: (128, 70), 2: (100, 70), 3: (90, 110), 4: (85, 150), 5: (156, 70), 6: (166, 110),
            7: (171, 150), 8: (112, 170), 9: (110, 230), 10: (108, 290), 11: (144, 170), 12: (146, 230),
            13: (148, 290), 14: (122, 34), 15: (134, 34), 16: (114, 38), 17: (142, 38)}


def sdpose_standing() -> list[dict]:
    person = sdpose_person(body(STANDING))
    person["pose_keypoints_2d"][17 * 3:18 * 3] = [-1.0, -1.0, 0.8]  # l-ear: x < 0 after remapping keeps its score
    return [{"canvas_width": 256, "canvas_height": 320, "people": [person]}]


def test_sdpose_keypoints_parse_into_openpose_joints():
    person = from_pose_keypoint(sdpose_standing())[0].people[0]
    assert person.body.shape == (18, 3) and person.body[13].tolist() == [148, 290, 1], "l-ankle at OpenPose 13"
    assert person.body[17, 2] == 0, "(-1, -1) is SDPose's 'not found', whatever its score"
    assert person.feet.shape == (6, 3) and person.feet[0].tolist() == pytest.approx([156, 300, 0.9])
    assert person.face.shape == (70, 3) and person.face[68, :2].tolist() == [122, 34] and person.face[5, 2] <= 0
    # SDPose files the left hand under hand_right_keypoints_2d: each hand goes to the wrist its root lies on
    assert person.left_hand[0, :2].tolist() == [171, 150] and person.right_hand[0, :2].tolist() == [85, 150]
    labelled = sdpose_standing()
    p = labelled[0]["people"][0]
    left, right = "hand_left_keypoints_2d", "hand_right_keypoints_2d"
    p[left], p[right] = p[right], p[left]
    assert from_pose_keypoint(labelled)[0].people[0].left_hand[0, :2].tolist() == [171, 150], "right labels kept"
    body25 = np.arange(75, dtype=np.float32).reshape(25, 3)  # OpenPose's BODY_25: 8 = mid-hip, 19-24 = feet
    read = from_pose_keypoint([{"canvas_width": 500, "canvas_height": 500, "people": [
        {"pose_keypoints_2d": body25.reshape(-1).tolist()}]}])[0].people[0]
    assert read.body[8].tolist() == body25[9].tolist() and read.feet.tolist() == body25[19:].tolist()


def test_sdpose_keypoints_render():
    frame = from_pose_keypoint(sdpose_standing())[0]
    drawn = draw_pose(frame)
    assert tuple(drawn[70, 114]) == (153, 0, 0), "neck -> r-shoulder: red, dimmed"
    assert tuple(drawn[260, 147]) == (0, 51, 153), "l-knee -> l-ankle: (0, 85, 255), dimmed"
    assert tuple(drawn[150, 171]) == (0, 0, 255) and tuple(drawn[40, 134]) == (255, 255, 255), "hand root, face"
    assert not drawn[:30, :100].any(), "no limb to the l-ear SDPose did not find"
    assert not drawn[295:].any(), "feet (below the ankle dots) off by default"
    # feet on: radius-4 dots in the first six body colours, as core's SDPose Draw Keypoints does
    with_feet = drawn.copy()
    for point, color in zip(frame.people[0].feet, BODY_COLORS):
        cv2.circle(with_feet, (int(point[0]), int(point[1])), 4, color, thickness=-1)
    assert np.array_equal(draw_pose(frame, feet=True), with_feet)
    assert tuple(with_feet[300, 156]) == (255, 0, 0) and tuple(with_feet[298, 110]) == (85, 255, 0)


def test_sdpose_keypoints_round_trip():
    first = from_pose_keypoint(sdpose_standing())
    data = to_pose_keypoint(first)
    person = data[0]["people"][0]
    assert len(person["foot_keypoints_2d"]) == 18 and len(person["face_keypoints_2d"]) == 210
    assert person["hand_left_keypoints_2d"][:2] == [171, 150], "hands written under the person's own side"
    back = from_pose_keypoint(data)[0].people[0]
    for part in ("body", "feet", "face", "left_hand", "right_hand"):
        assert np.array_equal(getattr(back, part), getattr(first[0].people[0], part)), part


def test_sdpose_keypoints_retarget_with_feet_and_hands():
    rng = np.random.default_rng(1)
    drive_len = {limb: float(rng.uniform(10, 40)) for limb in BODY_TREE}
    ref_len = {limb: float(rng.uniform(10, 40)) for limb in BODY_TREE}
    angles = {limb: float(rng.uniform(-math.pi, math.pi)) for limb in BODY_TREE}
    driving = from_pose_keypoint([{"canvas_width": 256, "canvas_height": 256, "people": [
        sdpose_person(_skeleton(drive_len, angles, neck=(100 + 3 * t, 100)))]} for t in range(4)])
    reference = from_pose_keypoint([{"canvas_width": 320, "canvas_height": 240, "people": [
        sdpose_person(_skeleton(ref_len, angles, neck=(160, 60)))]}])[0]
    for src, frame in zip(driving, retarget(driving, reference, smooth_frames=1)):
        old, new = src.people[0], frame.people[0]
        for parent, child in BODY_TREE:
            assert np.linalg.norm(new.body[child, :2] - new.body[parent, :2]) == pytest.approx(
                ref_len[(parent, child)], rel=1e-4)
        for rows, ankle, shin in ((slice(0, 3), 13, (12, 13)), (slice(3, 6), 10, (9, 10))):
            scale = ref_len[shin] / drive_len[shin]
            np.testing.assert_allclose(new.feet[rows, :2] - new.body[ankle, :2],
                                       (old.feet[rows, :2] - old.body[ankle, :2]) * scale, atol=1e-3)
        np.testing.assert_allclose(new.left_hand[0, :2], new.body[7, :2], atol=1e-3)  # hands on their own wrists
        np.testing.assert_allclose(new.right_hand[0, :2], new.body[4, :2], atol=1e-3)


def test_malformed_pose_keypoint_raises_a_clear_error():
    good = sdpose_standing()[0]
    cases = [
        ({"canvas_width": 64}, r"driving_pose: got a dict; expected a list of OpenPose frames"),
        ([good, "frame"], r"driving_pose: frame 1 is not OpenPose JSON \(a frame is a str, not a dict\)"),
        ([good | {"canvas_width": 0}], r"frame 0 is not OpenPose JSON \(canvas is 0 x 320\)"),
        ([good | {"people": [{"pose_keypoints_2d": [1.0] * 60}]}],
         r"frame 0, person 0 is not OpenPose JSON \(pose_keypoints_2d has 60 numbers, not 54 \(18 points\) "
         r"or 75 \(25 points\)\)"),
        ([good | {"people": [{"pose_keypoints_2d": []}]}], r"pose_keypoints_2d is missing or empty"),
        ([good | {"people": [good["people"][0] | {"face_keypoints_2d": [0.0] * 207}]}],
         r"face_keypoints_2d has 207 numbers, not 204 \(68 points\) or 210 \(70 points\)"),
        ([good | {"people": [good["people"][0] | {"foot_keypoints_2d": [0.0] * 15}]}],
         r"foot_keypoints_2d has 15 numbers, not 18 \(6 points\)"),
        ([good | {"people": [good["people"][0] | {"hand_left_keypoints_2d": ["x"] * 63}]}],
         r"person 0 is not OpenPose JSON \(could not convert string to float"),
    ]
    for data, message in cases:
        with pytest.raises(ValueError, match=message):
            from_pose_keypoint(data, "driving_pose")
