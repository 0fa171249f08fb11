"""Data preparation: shot-aware clips, captions from a file, cached DWPose and depth control videos."""
from __future__ import annotations

import csv

import numpy as np

from dmtest import control_models
from train.prepare import (CaptionFile, clip_ranges, depth_controls, dwpose_controls, prepare, read_video,
                           shot_boundaries, write_video)


def test_clips_stay_inside_shots(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    red, blue = np.zeros((30, 64, 64, 3), np.uint8), np.zeros((30, 64, 64, 3), np.uint8)
    red[..., 0], blue[..., 2] = 220, 220
    write_video(str(raw / "dance.mp4"), np.concatenate([red, blue]), 10)
    frames, fps = read_video(str(raw / "dance.mp4"))
    assert shot_boundaries(frames) == [30] and fps == 10
    assert clip_ranges(60, [30], 10, 1, 2) == [range(0, 20), range(20, 30), range(30, 50), range(50, 60)]
    assert clip_ranges(60, [30], 10, 1.5, 2) == [range(0, 20), range(30, 50)], "tails shorter than min_seconds go"

    captions = tmp_path / "captions.csv"
    captions.write_text("videoid,name\ndance,a person dancing\ndance_001,the second clip\n")
    (tmp_path / "models").mkdir()
    control_models.ensure_control_models(tmp_path / "models", tmp_path / "models")
    controls = [dwpose_controls(str(tmp_path / "models"), ["CPUExecutionProvider"]),
                depth_controls(str(tmp_path / "models" / control_models.DEPTH_MODEL))]
    table = prepare(str(raw), str(tmp_path / "data"), CaptionFile(str(captions)), 1, 2, controls, log=lambda _: None)
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["videoid"] for r in rows] == ["dance_000", "dance_001", "dance_002", "dance_003"]
    assert rows[1]["name"] == "the second clip" and rows[0]["name"] == "a person dancing"
    for row, length in zip(rows, (20, 10, 20, 10)):
        clip, _ = read_video(str(tmp_path / "data" / "clips" / f"{row['videoid']}.mp4"))
        pose, _ = read_video(str(tmp_path / "data" / "poses" / f"{row['videoid']}.mp4"))
        depth, _ = read_video(str(tmp_path / "data" / "depth" / f"{row['videoid']}.mp4"))
        assert len(clip) == len(pose) == len(depth) == length
        assert pose.max() > 0, "the skeleton is drawn"
        assert shot_boundaries(clip) == [], "no transition inside a clip"


def test_webdataset_shards_unpack_to_the_stage1_folder(tmp_path):
    import io
    import json
    import tarfile

    from train.prepare import unpack_webdataset

    shard = tmp_path / "shard-000.tar"
    with tarfile.open(shard, "w") as tar:
        for key, payload in (("000001.jpg", b"\xff\xd8jpeg"), ("000001.txt", b"a dancer in red"),
                             ("000002.png", b"\x89PNG"), ("000002.json", json.dumps({"caption": "a smiling man"}).encode()),
                             ("000003.jpg", b"\xff\xd8no caption")):
            info = tarfile.TarInfo(key)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    folder = tmp_path / "images"
    assert unpack_webdataset([str(shard)], str(folder)) == 2
    assert (folder / "000001.txt").read_text() == "a dancer in red"
    assert (folder / "000002.txt").read_text() == "a smiling man" and (folder / "000002.png").exists()
    assert not (folder / "000003.jpg").exists(), "images without a caption are skipped"
