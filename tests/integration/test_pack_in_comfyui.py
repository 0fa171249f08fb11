"""Issue 2: the pack loads in a real ComfyUI, lists its nodes, and changes nothing it is not asked to."""
from __future__ import annotations

import torch

from dmtest import fixtures, prompts

OUR_NODES = {"DreaMovingMotionUNetLoader", "DreaMovingSampler", "DreaMovingVideoControlNetLoader",
             "DreaMovingVideoControlNetApply", "DreaMovingInsightFaceLoader", "DreaMovingContentGuiderLoader",
             "DreaMovingContentGuiderEncode", "DreaMovingPoseExtract", "DreaMovingPoseRetarget", "DreaMovingDepthExtract"}


def test_loading_the_pack_changes_no_plain_output(pack_host):
    """Bit-identical txt2img latents before and after the pack is imported and registered."""
    after = pack_host.run(prompts.txt2img(fixtures.SMALL_CKPT))["5"][0][0]["samples"]
    assert torch.equal(after, pack_host.plain_baseline)


def test_nodes_registered_with_schema(pack_host):
    import nodes

    for node_id in OUR_NODES:
        cls = nodes.NODE_CLASS_MAPPINGS[node_id]
        schema = cls.GET_SCHEMA()
        assert schema.category.startswith("DreaMoving")
        assert schema.display_name
        missing = [i.id for i in schema.inputs if not getattr(i, "tooltip", None)]
        assert not missing, f"{node_id}: inputs without a tooltip: {missing}"


def test_model_folders_keep_existing_entries(pack_host):
    import folder_paths

    paths = folder_paths.get_folder_paths("animatediff_models")
    assert paths[0] == str(fixtures.model_folders()["animatediff_models"]), "extra_model_paths entry must stay first"
    assert any(p.endswith("models/animatediff_models") for p in paths)
    for name in ("dreamoving", "ipadapter", "insightface"):
        assert folder_paths.get_folder_paths(name)


def test_server_loads_pack_and_lists_nodes(comfy_server):
    info = comfy_server.client.get_json("/object_info")
    assert OUR_NODES <= set(info), sorted(k for k in info if k.startswith("DreaMoving"))
    loader = info["DreaMovingMotionUNetLoader"]
    assert loader["display_name"] == "Load DreaMoving Motion U-Net"
    log = comfy_server.log()
    assert "IMPORT FAILED" not in log and "Cannot import" not in log, log[-3000:]
    assert "DreaMoving: this ComfyUI is" not in log and "DreaMoving: could not tell" not in log, \
        "a supported host gets no version warning"


def test_server_runs_txt2img_and_reports_node_errors(comfy_server):
    from dreamoving.comfy_client import ComfyError

    history = comfy_server.client.run(prompts.txt2img(fixtures.SMALL_CKPT, steps=2))
    assert history["status"]["status_str"] == "success"
    bad = prompts.txt2img("no_such_model.safetensors")
    try:
        comfy_server.client.queue(bad)
    except ComfyError as err:
        assert "node 1 (CheckpointLoaderSimple)" in str(err) and "no_such_model.safetensors" in str(err)
    else:
        raise AssertionError("an unknown checkpoint name must be rejected with its node_errors")
