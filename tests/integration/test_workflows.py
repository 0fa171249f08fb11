"""Issue 8: the shipped workflows (API twins run on the fixtures; UI twins convert to them) and the
headless queue client against a real server."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dmtest import fixtures
from dmtest.fixtures import on_fixtures
from dreamoving.comfy_launch import PACK_DIR
from dreamoving.workflow_format import api_to_ui, ui_to_api

WORKFLOWS = PACK_DIR / "workflows"
NAMES = sorted(p.stem for p in (WORKFLOWS / "api").glob("*.json"))


def load(name: str, ui: bool = False) -> dict:
    return json.loads((WORKFLOWS / (f"{name}.json" if ui else f"api/{name}.json")).read_text())


@pytest.fixture(scope="module")
def input_files(pack_host):
    """reference.png and driving.mp4 in the host's input folder."""
    import folder_paths

    folder = Path(folder_paths.get_input_directory())
    fixtures.write_demo_inputs(folder)
    return folder


@pytest.fixture(scope="module")
def object_info(comfy_server):
    return comfy_server.client.get_json("/object_info")


@pytest.mark.parametrize("name", NAMES)
def test_ui_twin_converts_to_api_twin(object_info, name):
    api, ui = load(name), load(name, ui=True)
    assert {n["type"] for n in ui["nodes"]} <= set(object_info), "every node is one this ComfyUI lists"
    assert ui_to_api(ui, object_info) == api
    assert api_to_ui(api, object_info) == ui, "the UI twin is what workflows/build.py writes"


def test_ui_twins_in_the_real_frontend(comfy_server):
    """The page's own drag-in (app.loadGraphData) and Queue conversion (app.graphToPrompt) give the API twins."""
    chromium = shutil.which("chromium")
    if chromium is None:
        if os.environ.get("DREAMOVING_REQUIRE_COMFYUI") == "1":
            pytest.fail("chromium is required here (apt-get install chromium) for the frontend check")
        pytest.skip("no chromium: frontend check skipped")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        page = browser.new_page()
        page.goto(comfy_server.client.url)
        page.wait_for_function("() => window.app && window.app.graph", timeout=60000)
        for name in NAMES:
            output = page.evaluate("""async (wf) => { await window.app.loadGraphData(wf);
                                         return (await window.app.graphToPrompt()).output; }""", load(name, ui=True))
            for node in output.values():
                node.pop("_meta", None)
            assert output == load(name), f"{name}: the frontend queues something else than the API twin"
        browser.close()


@pytest.mark.parametrize("name,frames", [("dreamoving_pose_dance", 64), ("dreamoving_pose_depth_dance", 64),
                                         ("dreamoving_long_video", 150), ("dreamoving_text_only", 64)])
def test_api_workflow_runs_on_fixtures(pack_host, input_files, name, frames):
    assert name in NAMES
    workflow = on_fixtures(load(name))
    sampler = next(k for k, v in workflow.items() if v["class_type"] == "DreaMovingSampler")
    saver = next(k for k, v in workflow.items() if v["class_type"] == "SaveVideo")
    results = pack_host.run(workflow)
    assert results[sampler][0][0]["samples"].shape[0] == frames
    assert torch.isfinite(results[sampler][0][0]["samples"]).all()
    assert saver in results


def node_id(workflow: dict, class_type: str) -> str:
    return next(k for k, v in workflow.items() if v["class_type"] == class_type)


def run_queue(server, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(PACK_DIR))
    return subprocess.run([sys.executable, "-m", "dreamoving.queue", *args, "--server", server.client.url],
                          capture_output=True, text=True, env=env, timeout=600)


def test_queue_client_success_with_progress_and_outputs(comfy_server, input_files, tmp_path):
    workflow = tmp_path / "text_only.json"
    graph = on_fixtures(load("dreamoving_text_only"))
    workflow.write_text(json.dumps(graph))
    sampler, video = node_id(graph, "DreaMovingSampler"), node_id(graph, "LoadVideo")
    run = run_queue(comfy_server, str(workflow), "--set", f"{sampler}.frames=8", "--upload",
                    f"{video}.file={input_files / 'driving.mp4'}", "--out", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"node {sampler} (DreaMovingSampler) [" in run.stderr and "2/2" in run.stderr
    saved = [Path(line) for line in run.stdout.split()]
    assert saved and all(p.exists() and p.stat().st_size > 0 for p in saved)


def test_queue_client_error_paths(comfy_server, tmp_path):
    workflow = tmp_path / "wf.json"
    bad = on_fixtures(load("dreamoving_text_only"))
    checkpoint = node_id(bad, "CheckpointLoaderSimple")
    bad[checkpoint]["inputs"]["ckpt_name"] = "no_such.safetensors"
    workflow.write_text(json.dumps(bad))
    rejected = run_queue(comfy_server, str(workflow))
    assert rejected.returncode == 2 and f"node {checkpoint} (CheckpointLoaderSimple)" in rejected.stderr
    failing = on_fixtures(load("dreamoving_text_only"))
    video, poses = node_id(failing, "LoadVideo"), node_id(failing, "DreaMovingPoseExtract")
    failing[video] = {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 2, "color": 0}}
    failing[poses]["inputs"].update({"no_person": "error", "images": [video, 0]})
    failing[node_id(failing, "CreateVideo")]["inputs"]["fps"] = 8.0
    del failing[node_id(failing, "GetVideoComponents")]
    workflow.write_text(json.dumps(failing))
    failed = run_queue(comfy_server, str(workflow))
    assert failed.returncode == 1 and "no person found in frame 0" in failed.stderr
    ui = run_queue(comfy_server, str(WORKFLOWS / "dreamoving_text_only.json"))
    assert ui.returncode == 2 and "UI format" in ui.stderr
    bad_set = run_queue(comfy_server, str(WORKFLOWS / "api" / "dreamoving_text_only.json"), "--set", "99.seed=1")
    assert bad_set.returncode == 2 and "has no node 99" in bad_set.stderr
    down = subprocess.run([sys.executable, "-m", "dreamoving.queue", str(workflow), "--server", "http://127.0.0.1:9"],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(PACK_DIR)))
    assert down.returncode == 3 and "no ComfyUI server answers" in down.stderr


def test_node_reference_is_current(object_info):
    from dreamoving.main import WEIGHTS
    from dreamoving.node_docs import render_node_reference

    committed = (PACK_DIR / "docs" / "nodes.md").read_text()
    assert committed == render_node_reference(object_info, set(WEIGHTS)) + "\n", \
        "docs/nodes.md is stale: run python scripts/build_assets.py --server URL"
    assert committed.count("## ") == len([k for k in object_info if k.startswith("DreaMoving")])


def test_workflows_are_served_as_templates(comfy_server):
    from dreamoving.comfy_launch import PACK_NAME

    templates = comfy_server.client.get_json("/workflow_templates")
    assert sorted(templates[PACK_NAME]) == NAMES, "the UI workflows (not the API twins) are the pack's templates"
