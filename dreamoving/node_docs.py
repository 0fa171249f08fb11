"""The node reference (docs/nodes.md), rendered from ComfyUI's /object_info so it cannot drift from the code."""
from __future__ import annotations


def _kind(spec) -> tuple[str, dict]:
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if isinstance(spec[0], list):
        return "COMBO", {"options": spec[0], **options}
    return spec[0], options


def _range(kind: str, options: dict, is_file: bool) -> str:
    if is_file:
        return "a file (or folder) name from the models folder"
    if kind == "COMBO":
        choices = options.get("options", [])
        return "one of " + ", ".join(f"`{c}`" for c in choices) if 0 < len(choices) <= 8 else "a file name"
    if kind in ("INT", "FLOAT"):
        return f"{options.get('min', '')} .. {options.get('max', '')}, default {options.get('default', '')}"
    if kind in ("STRING", "BOOLEAN"):
        return f"default {options.get('default', '')!r}"
    return "link"


def render_node_reference(object_info: dict, file_inputs: set[tuple[str, str]], prefix: str = "DreaMoving") -> str:
    """Markdown for every ``prefix`` node; ``file_inputs`` ((node, input) pairs) list model files, whose
    choices depend on the machine and are not spelled out."""
    lines = ["# Node reference", "", "Generated from ComfyUI's `/object_info` (`python scripts/build_assets.py`).", ""]
    for node_id in sorted(k for k in object_info if k.startswith(prefix)):
        info = object_info[node_id]
        lines += [f"## {info['display_name']} (`{node_id}`)", "", f"Category `{info['category']}`. {info['description']}",
                  "", "| input | type | range | what it does |", "|---|---|---|---|"]
        for group in ("required", "optional"):
            for name in info.get("input_order", {}).get(group, []):
                kind, options = _kind(info["input"][group][name])
                tooltip = options.get("tooltip", "").replace("|", "/")
                optional = " (optional)" if group == "optional" else ""
                shown = {k: v for k, v in options.items() if k != "options"} if kind == "COMBO" else options
                described = _range(kind, options if kind == "COMBO" else shown, (node_id, name) in file_inputs)
                lines.append(f"| `{name}`{optional} | {kind} | {described} | {tooltip} |")
        outputs = ", ".join(f"`{n}` ({t})" for n, t in zip(info["output_name"], info["output"]))
        lines += ["", f"Outputs: {outputs}.", ""]
    return "\n".join(lines)
