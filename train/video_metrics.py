"""Metrics of a generated video against the ground-truth render of the same held-out clip (uint8 frames
[F, H, W, 3]): pixel error (L1, PSNR, SSIM), whether the figure is where the pose says (silhouette IoU, and its
specificity: the IoU gained over the same masks moved aside), whether it keeps the reference's look (colour error
per body part), and temporal stability (frame-to-frame change).

Each measure also runs on the ground truth itself where that is meaningful (``ceiling``), since the silhouette
and colour measures are estimates: a method is judged by how close it comes to the ground truth's own reading.
"""
from __future__ import annotations

import cv2
import numpy as np

# OpenPose-18 segments whose middle lies on a body part: (part, keypoint a, keypoint b)
PART_SEGMENTS = (("torso", 1, 8), ("torso", 1, 11), ("upper arms", 2, 3), ("upper arms", 5, 6),
                 ("forearms", 3, 4), ("forearms", 6, 7), ("thighs", 8, 9), ("thighs", 11, 12),
                 ("shins", 9, 10), ("shins", 12, 13), ("head", 0, 1))
FOREGROUND_THRESHOLD = 24  # max channel difference from the inpainted background plate, of 255
REGION_MARGIN = 0.3        # the figure is searched for in its ground-truth box grown by this share on each side


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255 ** 2 / max(mse, 1e-10)))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two RGB frames (Gaussian window, sigma 1.5, per channel)."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    x, y = a.astype(np.float64), b.astype(np.float64)

    def blur(z):
        return cv2.GaussianBlur(z, (7, 7), 1.5)

    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    return float(np.mean((2 * mx * my + c1) * (2 * cov + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))))


def search_region(mask: np.ndarray) -> np.ndarray:
    """The ground-truth figure's bounding box grown by REGION_MARGIN on each side, as a mask."""
    region = np.zeros_like(mask, dtype=np.uint8)
    ys, xs = np.nonzero(mask)
    if len(ys):
        h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        y0, x0 = max(0, int(ys.min() - REGION_MARGIN * h)), max(0, int(xs.min() - REGION_MARGIN * w))
        region[y0:int(ys.max() + REGION_MARGIN * h) + 1, x0:int(xs.max() + REGION_MARGIN * w) + 1] = 1
    return region


def foreground(frame: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Pixels of ``region`` that differ from the background around it (the frame inpainted over the region)."""
    plate = cv2.inpaint(frame, region, 3, cv2.INPAINT_TELEA)
    difference = np.abs(frame.astype(np.int16) - plate.astype(np.int16)).max(-1)
    return (difference > FOREGROUND_THRESHOLD) & region.astype(bool)


def silhouette_iou(frames: np.ndarray, masks: np.ndarray) -> float:
    """Mean IoU of each frame's estimated figure with the ground-truth mask."""
    scores = []
    for frame, mask in zip(frames, masks):
        found = foreground(frame, search_region(mask))
        union = (found | mask).sum()
        scores.append((found & mask).sum() / union if union else 1.0)
    return float(np.mean(scores))


def moved_aside(mask: np.ndarray) -> np.ndarray:
    """The mask moved sideways by its own width (towards the side with more room; as far as the frame allows)."""
    xs = np.nonzero(mask.any(0))[0]
    if not len(xs):
        return mask
    width, w = xs.max() - xs.min() + 1, mask.shape[1]
    shift = -min(width, xs.min()) if xs.min() > w - 1 - xs.max() else min(width, w - 1 - xs.max())
    return np.roll(mask, shift, axis=1)


def pose_specificity(frames: np.ndarray, masks: np.ndarray, iou: float | None = None) -> float:
    """Silhouette IoU with the ground-truth masks (``iou`` when already measured) minus that with the same masks
    moved aside: a figure where the pose says reads high, a figure elsewhere or frames of noise (whose colour
    blobs the estimate also finds near the figure) read about 0."""
    own = silhouette_iou(frames, masks) if iou is None else iou
    return own - silhouette_iou(frames, np.stack([moved_aside(m) for m in masks]))


def part_colours(image: np.ndarray, keypoints: np.ndarray) -> dict[str, np.ndarray]:
    """Median colour per body part, sampled at 35/50/65% along each part's segments (visible ends only)."""
    h, w = image.shape[:2]
    samples: dict[str, list] = {}
    for part, a, b in PART_SEGMENTS:
        if keypoints[a, 2] <= 0 or keypoints[b, 2] <= 0:
            continue
        for f in (0.35, 0.5, 0.65):
            x, y = keypoints[a, :2] + f * (keypoints[b, :2] - keypoints[a, :2])
            if 0 <= x < w and 0 <= y < h:
                samples.setdefault(part, []).append(image[int(y), int(x)].astype(np.float64))
    return {part: np.median(np.stack(values), axis=0) for part, values in samples.items()}


def colour_error(frames: np.ndarray, keypoints: np.ndarray, reference: np.ndarray,
                 reference_keypoints: np.ndarray) -> float:
    """Mean RGB distance (of 255) between each body part's colour in the frames (at the ground-truth keypoints)
    and in the reference photo."""
    wanted = part_colours(reference, reference_keypoints)
    errors = [np.linalg.norm(colour - wanted[part]) for frame, points in zip(frames, keypoints)
              for part, colour in part_colours(frame, points).items() if part in wanted]
    return float(np.mean(errors)) if errors else float("nan")


def frame_change(frames: np.ndarray) -> float:
    """Mean absolute change between consecutive frames (of 255)."""
    return float(np.abs(np.diff(frames.astype(np.float32), axis=0)).mean()) if len(frames) > 1 else 0.0


def video_metrics(generated: np.ndarray, truth: dict) -> dict[str, float]:
    """All measures of ``generated`` against ``truth`` ({"frames", "mask", "keypoints", "reference",
    "reference_keypoints"}, the clip's arrays over the same frames)."""
    gt = truth["frames"]
    if generated.shape != gt.shape:
        raise ValueError(f"generated video is {generated.shape}, the ground truth {gt.shape}")
    iou = silhouette_iou(generated, truth["mask"])
    return {
        "l1": float(np.abs(generated.astype(np.float32) - gt.astype(np.float32)).mean() / 255),
        "psnr": float(np.mean([psnr(g, t) for g, t in zip(generated, gt)])),
        "ssim": float(np.mean([ssim(g, t) for g, t in zip(generated, gt)])),
        "silhouette_iou": iou,
        "pose_specificity": pose_specificity(generated, truth["mask"], iou),
        "colour_error": colour_error(generated, truth["keypoints"], truth["reference"], truth["reference_keypoints"]),
        "frame_change": frame_change(generated),
        "frame_change_truth": frame_change(gt),
    }


def ceiling(truth: dict) -> dict[str, float]:
    """The ground truth through the same measures: the best a method can read."""
    return video_metrics(truth["frames"], truth)
