"""UI <-> API conversion of dynamic combos (ComfyUI 0.33+'s COMFY_DYNAMICCOMBO_V3), without ComfyUI: the
definitions below are copied in shape from 0.33's /object_info (DA3Render, SaveVideo's nested codec)."""
from __future__ import annotations

from dreamoving.workflow_format import api_to_ui, built_with, ui_to_api

DEPTH_INPUTS = {"required": {"normalization": ["COMBO", {"default": "v2_style", "options": ["v2_style", "min_max", "raw"]}],
                             "apply_sky_clip": ["BOOLEAN", {"default": False}]}}
OBJECT_INFO = {
    "Source": {"input": {"required": {}}, "input_order": {"required": []}, "output": ["GEO"], "output_name": ["geo"]},
    "Render": {
        "input": {"required": {
            "geometry": ["GEO", {}],
            "output": ["COMFY_DYNAMICCOMBO_V3", {"options": [
                {"key": "depth", "inputs": DEPTH_INPUTS},
                {"key": "sky_mask", "inputs": {"required": {"colored": ["BOOLEAN", {"default": False}]}}}]}],
            "strength": ["FLOAT", {"default": 1.0}]}},
        "input_order": {"required": ["geometry", "output", "strength"]}, "output": ["IMAGE"], "output_name": ["IMAGE"]},
    "Save": {
        "input": {"required": {
            "codec": ["COMFY_DYNAMICCOMBO_V3", {"options": [
                {"key": "auto", "inputs": {"required": {}}},
                {"key": "h264", "inputs": {"required": {}, "optional": {"encoding": ["COMFY_DYNAMICCOMBO_V3", {"options": [
                    {"key": "auto", "inputs": {"required": {}}},
                    {"key": "re-encode", "inputs": {"required": {"crf": ["FLOAT", {"default": 23.0}]}}}]}]}}}]}]}},
        "input_order": {"required": ["codec"]}, "output": [], "output_name": []},
}


def _prompt(**render) -> dict:
    return {"1": {"class_type": "Source", "inputs": {}},
            "2": {"class_type": "Render", "inputs": {"geometry": ["1", 0], **render}},
            "3": {"class_type": "Save", "inputs": {"codec": "h264", "codec.encoding": "re-encode",
                                                   "codec.encoding.crf": 18.0}}}


def _node(ui: dict, type_: str) -> dict:
    return next(n for n in ui["nodes"] if n["type"] == type_)


def test_selected_option_widgets_follow_their_combo_and_round_trip():
    prompt = _prompt(**{"output": "depth", "output.normalization": "min_max", "output.apply_sky_clip": True,
                        "strength": 0.5})
    ui = api_to_ui(prompt, OBJECT_INFO, "0.33.0")
    assert _node(ui, "Render")["widgets_values"] == ["depth", "min_max", True, 0.5]
    assert _node(ui, "Save")["widgets_values"] == ["h264", "re-encode", 18.0]
    assert [s["name"] for s in _node(ui, "Render")["inputs"]] == ["geometry"]
    assert ui_to_api(ui, OBJECT_INFO) == prompt


def test_other_option_and_defaults():
    ui = api_to_ui(_prompt(**{"output": "sky_mask", "output.colored": True}), OBJECT_INFO)
    assert _node(ui, "Render")["widgets_values"] == ["sky_mask", True, 1.0]
    unset = api_to_ui({"1": {"class_type": "Source", "inputs": {}},
                       "2": {"class_type": "Render", "inputs": {"geometry": ["1", 0]}}}, OBJECT_INFO)
    assert _node(unset, "Render")["widgets_values"] == ["depth", "v2_style", False, 1.0], "first option by default"


def test_a_twin_from_an_older_host_still_converts():
    """0.3.64's SaveVideo codec was a plain combo: its UI twin's value reads as the dynamic combo's key."""
    old = {"nodes": [{"id": 1, "type": "Save", "mode": 0, "inputs": [], "widgets_values": ["auto"]}], "links": []}
    assert ui_to_api(old, OBJECT_INFO) == {"1": {"class_type": "Save", "inputs": {"codec": "auto"}}}


def test_the_host_version_is_recorded():
    assert built_with(api_to_ui(_prompt(output="depth"), OBJECT_INFO, "0.33.0")) == "0.33.0"
    assert built_with(api_to_ui(_prompt(output="depth"), OBJECT_INFO)) is None
