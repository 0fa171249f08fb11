"""ComfyUI's two workflow formats, converted with the server's ``/object_info`` (which inputs are widgets,
in which order):

* API format: ``{node_id: {"class_type", "inputs": {name: value or [from_node, slot]}}}`` (what ``/prompt`` takes);
* UI format: LiteGraph's ``nodes`` (with ``widgets_values`` in widget order) and ``links`` (what the page
  saves and a drag-in loads).

Widget order follows the frontend: required then optional inputs in ``input_order``; an INT with
``control_after_generate`` is followed by its control value; image/video upload inputs by the upload
button's value. A dynamic combo (``COMFY_DYNAMICCOMBO_V3``, ComfyUI 0.33+: e.g. DA3Render's ``output``) is a
widget followed by the inputs of the option it selects, named ``<combo>.<input>`` in both formats (nested
combos likewise), as the host's executor and frontend name them.

A UI twin written for a given ComfyUI records its version (``extra.dreamoving.comfyui_version``): the
widget lists, hence ``widgets_values``, are those of that host's nodes.
"""
from __future__ import annotations

import uuid
from typing import Iterator

DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", DYNAMIC_COMBO}
UPLOAD_FLAGS = ("image_upload", "video_upload", "audio_upload")
COLUMN, ROW = 420, 40


def _spec(name: str, spec) -> tuple[str, object, dict]:
    return name, spec[0], spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def _option_inputs(combo: str, options: dict, value) -> list[tuple[str, object, dict]]:
    """The inputs a dynamic combo set to ``value`` adds, named ``combo.input`` (required, then optional)."""
    for option in options.get("options", []):
        if option["key"] == value:
            groups = option.get("inputs", {})
            return [_spec(f"{combo}.{name}", spec) for group in ("required", "optional")
                    for name, spec in groups.get(group, {}).items()]
    return []


def _inputs(definition: dict, value_of) -> Iterator[tuple[str, object, dict]]:
    """(name, type, options) of every input in the frontend's order; after a dynamic combo come the inputs of
    its selected option, ``value_of(name, kind, options)`` (called once the caller has handled the combo)."""
    order = definition.get("input_order") or {k: list(v) for k, v in definition["input"].items()}
    pending = [_spec(name, definition["input"][group][name]) for group in ("required", "optional")
               for name in order.get(group, [])]
    while pending:
        name, kind, options = pending.pop(0)
        yield name, kind, options
        if kind == DYNAMIC_COMBO:
            pending[:0] = _option_inputs(name, options, value_of(name, kind, options))


def _default(kind, options: dict):
    """The value the frontend gives a widget that nothing sets."""
    if "default" in options:
        return options["default"]
    if isinstance(kind, list):
        return kind[0] if kind else None
    if kind == DYNAMIC_COMBO and options.get("options"):
        return options["options"][0]["key"]
    return None


def _is_widget(kind) -> bool:
    return isinstance(kind, list) or kind in WIDGET_TYPES


def _extra_widget_values(options: dict) -> list:
    """Values the frontend stores after a widget: seed control, upload button."""
    extra = []
    if options.get("control_after_generate"):
        extra.append("fixed")
    if any(options.get(flag) for flag in UPLOAD_FLAGS):
        extra.append("image")
    return extra


def _is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


def _depths(prompt: dict) -> dict[str, int]:
    depth: dict[str, int] = {}

    def visit(node_id: str) -> int:
        if node_id not in depth:
            parents = [v[0] for v in prompt[node_id]["inputs"].values() if _is_link(v)]
            depth[node_id] = 1 + max((visit(str(p)) for p in parents), default=-1)
        return depth[node_id]

    for node_id in prompt:
        visit(node_id)
    return depth


def built_with(workflow: dict) -> str | None:
    """The ComfyUI version whose node definitions a UI twin was written from (None: not recorded)."""
    return workflow.get("extra", {}).get("dreamoving", {}).get("comfyui_version")


def api_to_ui(prompt: dict, object_info: dict, comfyui_version: str | None = None) -> dict:
    """A drag-in UI workflow with the same nodes, links and values, laid out in columns by depth;
    ``comfyui_version`` (the host ``object_info`` came from) is recorded in ``extra``."""
    ids = {node_id: i + 1 for i, node_id in enumerate(sorted(prompt, key=lambda k: (len(k), k)))}
    depth = _depths(prompt)
    heights: dict[int, int] = {}
    nodes, links = {}, []
    for node_id in sorted(prompt, key=lambda k: (depth[k], ids[k])):
        entry = prompt[node_id]
        definition = object_info[entry["class_type"]]
        column = depth[node_id]
        y = heights.get(column, 0)
        inputs, widgets = [], []

        def widget_value(name, kind, options):
            value = entry["inputs"].get(name)
            return _default(kind, options) if _is_link(value) or value is None else value

        for name, kind, options in _inputs(definition, widget_value):
            value = entry["inputs"].get(name)
            if _is_widget(kind):
                widgets += [widget_value(name, kind, options), *_extra_widget_values(options)]
            if _is_link(value) or not _is_widget(kind):
                slot = {"name": name, "type": "COMBO" if isinstance(kind, list) else kind, "link": None}
                if _is_widget(kind):
                    slot["widget"] = {"name": name}
                inputs.append(slot)
        size = [380, 60 + 28 * (len(inputs) + len(widgets))]
        heights[column] = y + size[1] + ROW
        nodes[node_id] = {"id": ids[node_id], "type": entry["class_type"], "pos": [column * COLUMN, y],
                          "size": size, "flags": {}, "order": 0, "mode": 0, "inputs": inputs,
                          "outputs": [{"name": n, "type": t, "links": []}
                                      for n, t in zip(definition["output_name"], definition["output"])],
                          "properties": {"Node name for S&R": entry["class_type"]}, "widgets_values": widgets}
        if "_meta" in entry and "title" in entry["_meta"]:
            nodes[node_id]["title"] = entry["_meta"]["title"]
    for node_id, entry in prompt.items():
        for slot in nodes[node_id]["inputs"]:
            value = entry["inputs"].get(slot["name"])
            if not _is_link(value):
                continue
            source, index = nodes[str(value[0])], value[1]
            link_id = len(links) + 1
            links.append([link_id, source["id"], index, nodes[node_id]["id"], nodes[node_id]["inputs"].index(slot),
                          source["outputs"][index]["type"]])
            slot["link"] = link_id
            source["outputs"][index]["links"].append(link_id)
    for order, node_id in enumerate(sorted(prompt, key=lambda k: (depth[k], ids[k]))):
        nodes[node_id]["order"] = order
    extra = {"ds": {"scale": 1, "offset": [0, 0]}}
    if comfyui_version is not None:
        extra["dreamoving"] = {"comfyui_version": comfyui_version}
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, repr(sorted(ids.items())))), "revision": 0,
            "last_node_id": len(ids), "last_link_id": len(links), "nodes": list(nodes.values()), "links": links,
            "groups": [], "config": {}, "extra": extra, "version": 0.4}


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """The API prompt a UI workflow queues (active nodes only); unknown node types are an error naming them."""
    links = {link[0]: link for link in workflow["links"]}
    missing = sorted({n["type"] for n in workflow["nodes"] if n["type"] not in object_info})
    if missing:
        raise ValueError(f"workflow uses nodes this ComfyUI does not have: {', '.join(missing)}")
    prompt = {}
    for node in workflow["nodes"]:
        if node.get("mode", 0) != 0:
            continue
        values = list(node.get("widgets_values") or [])
        linked = {slot["name"]: links[slot["link"]] for slot in node.get("inputs", []) if slot.get("link") is not None}
        inputs, shown = {}, {}
        for name, kind, options in _inputs(object_info[node["type"]],
                                           lambda name, kind, options: shown.get(name, _default(kind, options))):
            if _is_widget(kind):
                value = values.pop(0) if values else None
                del values[:len(_extra_widget_values(options))]
                if value is not None:
                    shown[name] = value
                if name not in linked and value is not None:
                    inputs[name] = value
            if name in linked:
                link = linked[name]
                inputs[name] = [str(link[1]), link[2]]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt
