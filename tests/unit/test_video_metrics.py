"""The evaluation's measures on rendered held-out clips: the ground truth reads best, noise and a misplaced or
recoloured figure read worse."""
from __future__ import annotations

import numpy as np
import pytest

from train import dancers
from train.video_metrics import (ceiling, colour_error, frame_change, moved_aside, pose_specificity, silhouette_iou,
                                 ssim, video_metrics)


@pytest.fixture(scope="module")
def clip():
    spec = dancers.plan_clip("eval", 0, 12, 15, 0)
    return dancers.render_clip(spec, 64, 96, 15, 4)


def test_ground_truth_reads_as_the_ceiling(clip):
    best = ceiling(clip)
    assert best["l1"] == 0 and best["ssim"] == pytest.approx(1.0) and best["psnr"] > 100
    assert best["silhouette_iou"] > 0.6, "the figure estimate finds most of the rendered body"
    assert best["frame_change"] == best["frame_change_truth"] > 0
    assert best["pose_specificity"] > 0.5, "the figure is where its own masks are, not beside them"


def test_noise_a_moved_figure_and_other_clothes_read_worse(clip):
    best = ceiling(clip)
    noise = np.random.default_rng(0).integers(0, 256, clip["frames"].shape, dtype=np.uint8)
    moved = np.roll(clip["frames"], 12, axis=2)
    assert silhouette_iou(noise, clip["mask"]) < 0.25 and silhouette_iou(moved, clip["mask"]) < 0.4
    recoloured = clip["frames"].copy()
    recoloured[clip["mask"]] = 255 - recoloured[clip["mask"]]
    assert colour_error(recoloured, clip["keypoints"], clip["reference"], clip["reference_keypoints"]) > \
        best["colour_error"] + 30
    assert video_metrics(noise, clip)["frame_change"] > 10 * best["frame_change"]
    assert ssim(noise[0], clip["frames"][0]) < 0.1


def test_a_still_video_does_not_change_and_shapes_must_match(clip):
    still = np.repeat(clip["frames"][:1], 5, axis=0)
    assert frame_change(still) == 0
    with pytest.raises(ValueError, match="generated video is"):
        video_metrics(still, clip)


def test_pose_specificity_is_near_zero_for_noise_and_a_figure_beside_the_pose(clip):
    noise = np.random.default_rng(0).integers(0, 256, clip["frames"].shape, dtype=np.uint8)
    assert silhouette_iou(noise, clip["mask"]) > 0.05, "noise does read as some figure"
    assert abs(pose_specificity(noise, clip["mask"])) < 0.1
    moved = np.roll(clip["frames"], 16, axis=2)
    assert pose_specificity(moved, clip["mask"]) < 0.3 * pose_specificity(clip["frames"], clip["mask"])
    for mask in clip["mask"]:
        aside = moved_aside(mask)
        assert aside.sum() == mask.sum() and (aside & mask).sum() < 0.2 * mask.sum()
