"""Model folders this pack reads, registered with ComfyUI without clobbering what is already set.

Other packs (AnimateDiff-Evolved, IPAdapter_plus) and extra_model_paths.yaml may have registered the
same names first: their paths stay, in their order; we only add our default folder and extensions.
"""
from __future__ import annotations

import os

import folder_paths

# name -> extensions of the files listed (an empty set lists everything, e.g. insightface pack folders)
PACK_FOLDERS = {
    "animatediff_models": {".ckpt", ".pt", ".pth", ".safetensors"},
    "dreamoving": {".safetensors"},
    "ipadapter": {".bin", ".safetensors"},
    "insightface": set(),
    "dwpose": {".onnx"},   # yolox_l.onnx, dw-ll_ucoco_384.onnx (the files comfyui_controlnet_aux users have)
    "depth": set(),        # one folder per transformers depth model (save_pretrained layout)
}


def register_model_folders() -> None:
    """Append ``models/<name>`` to each folder name and add our extensions, keeping existing entries first."""
    for name, extensions in PACK_FOLDERS.items():
        existed = name in folder_paths.folder_names_and_paths
        folder_paths.add_model_folder_path(name, os.path.join(folder_paths.models_dir, name))
        known = folder_paths.folder_names_and_paths[name][1]
        if not existed or known:  # an existing empty set already means "every extension"
            known.update(extensions)
