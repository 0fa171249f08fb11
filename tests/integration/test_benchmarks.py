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


def test_attention_bench_compares_comfyuis_backend_with_the_reference(comfy_root):
    result = bench(comfy_root, "attention.py", "--frames", "8", "--tokens", "16", "--repeat", "1")
    assert [row[0].split(":")[0] for row in result["rows"]] == ["ComfyUI", "naive softmax"]
    assert result["max_abs_difference"] < 1e-4
