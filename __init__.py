"""DreaMoving for ComfyUI (arXiv 2312.05107): registered through ComfyUI's V3 extension entry point."""
import logging

from .dreamoving.host_version import unsupported_host_message

try:
    from comfyui_version import __version__ as _comfyui_version
except ImportError:  # a ComfyUI too old to declare its version
    _comfyui_version = None
if (_warning := unsupported_host_message(_comfyui_version)) is not None:
    logging.warning(_warning)

from .nodes import comfy_entrypoint  # noqa: E402  (after the warning: older hosts may fail on this import)

__all__ = ["comfy_entrypoint"]
