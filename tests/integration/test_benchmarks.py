"""The benchmark scripts still run against the pack and print the figures they promise (tiny sizes; no timing)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def bench(comfy_root, script: str, *args: str) -> dict:
    """Run ``bench/<script>`` and return its ``JSON:`` line."""
    env = {**os.environ, "COMFYUI_PATH": str(comfy_root)}
    done = subprocess.run([sys.executable, str(REPO / "bench" / script), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [l for l in done.stdout.splitlines() if l.startswith("JSON: ")]
    assert len(lines) == 1, done.stdout[-3000:]
    result = json.loads(lines[0][len("JSON: "):])
    assert set(result["machine"]) >= {"device", "date", "commit", "torch"}
    return result


def test_cost_per_frame_reports_every_variant_beside_its_flop_prediction(comfy_root):
    result = bench(comfy_root, "cost_per_frame.py", "--frames", "2", "--size", "64", "--steps", "2", "--repeats", "1")
    rows = {row[1]: dict(zip(result["columns"], row)) for row in result["rows"]}
    assert list(rows) == ["plain", "motion", "motion+VideoCN+guider", "motion+nativeCN", "motion+VideoCN",
                          "VideoCN / (nativeCN + motion)"]
    assert rows["plain"]["ratio"] == rows["plain"]["FLOP ratio"] == 1.0
    flop = {name: row["FLOP ratio"] for name, row in rows.items()}
    assert 1.0 < flop["motion"] < flop["motion+nativeCN"] < flop["motion+VideoCN"] < flop["motion+VideoCN+guider"]
    for row in rows.values():
        assert row["ratio"] > 0
        assert row["ratio/FLOP-1"] == pytest.approx(row["ratio"] / row["FLOP ratio"] - 1.0)


def test_long_video_reports_the_frames_the_windows_evaluate(comfy_root):
    result = bench(comfy_root, "long_video.py", "--lengths", "8", "16", "--context", "8", "--size", "64", "--steps", "2")
    rows = [dict(zip(result["columns"], row)) for row in result["rows"]]
    assert [r["frames"] for r in rows] == [8, 16]
    assert [r["window frames/frame"] for r in rows] == [1.0, 1.5]  # 16 frames: windows 0-7, 6-13, 8-15
    for r in rows:
        assert r["ms/window frame/step"] == pytest.approx(r["ms/frame/step"] / r["window frames/frame"])
        assert r["peak MiB"] >= 0 and r["ComfyUI estimate MiB (1 window)"] > 0


def test_attention_bench_times_every_kernel_on_every_level_and_names_the_one_we_run(comfy_root):
    result = bench(comfy_root, "attention.py", "--frames", "8", "--size", "64", "--tokens", "4", "--repeat", "1")
    rows = [dict(zip(result["columns"], row)) for row in result["rows"]]
    assert [(r["attention"], r["keys"], r["channels"], r["latent"]) for r in rows] == [
        ("motion (frames)", 8, 320, "8x8"), ("motion (frames)", 8, 640, "4x4"), ("motion (frames)", 8, 1280, "2x2"),
        ("motion (frames)", 8, 1280, "1x1"), ("guider (8 frames, tokens)", 4, 320, "8x8"),
        ("guider (8 frames, tokens)", 4, 640, "4x4"), ("guider (8 frames, tokens)", 4, 1280, "2x2")]
    for r in rows:
        assert r["ours"] == "attention_pytorch"  # ComfyUI's CPU pick is sub-quadratic: SDPA runs instead
        assert r["max |ours - pick|"] < 1e-4 and r["speed-up vs pick"] > 0
        assert all(r[f"{kernel} ms"] > 0 for kernel in ("sub_quad", "split", "basic", "pytorch"))


def test_motion_levels_splits_a_step_into_the_unets_blocks_and_the_motion_blocks(comfy_root):
    result = bench(comfy_root, "motion_levels.py", "--models", "small", "--frames", "2", "--size", "64", "--steps", "1")
    rows = [dict(zip(result["columns"], row)) for row in result["rows"]]
    motion = [(r["blocks"], r["latent"]) for r in rows[:-1] if r["motion s/step"]]
    assert motion == [("down", "8x8"), ("down", "4x4"), ("mid", "4x4"), ("up", "4x4"), ("up", "8x8")]
    total = rows[-1]
    assert total["blocks"] == "all" and total["U-Net s/step"] > 0 and 0 < total["FLOP ratio"] < 1
