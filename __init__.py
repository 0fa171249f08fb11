"""DreaMoving for ComfyUI (arXiv 2312.05107): registered through ComfyUI's V3 extension entry point."""
import logging

from .dreamoving.face_analysis import onnxruntime_install_warning
from .dreamoving.host_version import unsupported_host_message

try:
    from comfyui_version import __version__ as _comfyui_version
except ImportError:  # a ComfyUI too old to declare its version
    _comfyui_version = None
for _warning in (unsupported_host_message(_comfyui_version), onnxruntime_install_warning()):
    if _warning is not None:
        logging.warning(_warning)

from .nodes import comfy_entrypoint  # noqa: E402  (after the warning: older hosts may fail on this import)

__all__ = ["comfy_entrypoint"]
