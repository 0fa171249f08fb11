"""DreaMoving for ComfyUI (arXiv 2312.05107): registered through ComfyUI's V3 extension entry point."""
from .nodes import comfy_entrypoint

__all__ = ["comfy_entrypoint"]
