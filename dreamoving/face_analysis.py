"""Face analysis through insightface: detection, alignment and the ArcFace identity embedding.

Model packs (``buffalo_l``, ``antelopev2``) are folders of ONNX files under ``<root>/models/<name>``;
nothing is downloaded: a missing pack is an error that says where its files go.
"""
from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass

import numpy as np

FACE_CROP_SIZE = 224  # the aligned crop handed to CLIP ViT-H (IP-Adapter FaceID-Plus practice)


class NoFaceFound(ValueError):
    """The image holds no face the detector accepts."""


@dataclass
class FaceResult:
    embedding: np.ndarray  # [512], L2-normalised ArcFace identity
    crop: np.ndarray       # [224, 224, 3] RGB uint8, aligned on the five landmarks
    box: np.ndarray        # [4] x1, y1, x2, y2 in input pixels


def pack_dir(root: str, name: str) -> str:
    return os.path.join(root, "models", name)


def list_packs(root: str) -> list[str]:
    """Names of the model packs (folders holding .onnx files) under ``<root>/models``."""
    base = os.path.join(root, "models")
    if not os.path.isdir(base):
        return []
    return sorted(d for d in os.listdir(base) if glob.glob(os.path.join(base, d, "*.onnx")))


# Distributions that all install the Python module ``onnxruntime`` (the same list as install.py's).
ONNXRUNTIME_BUILDS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino",
                      "onnxruntime-rocm", "onnxruntime-silicon", "onnxruntime-qnn", "onnxruntime-coreml")


def onnxruntime_builds() -> dict[str, str]:
    """{distribution: version} of the onnxruntime builds installed (package metadata only; imports nothing)."""
    from importlib import metadata

    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = (dist.metadata.get("Name") or "").lower().replace("_", "-").replace(".", "-")
        if name in ONNXRUNTIME_BUILDS:
            found.setdefault(name, dist.version)
    return found


def onnxruntime_install_warning(builds: dict[str, str] | None = None, platform: str = sys.platform) -> str | None:
    """One warning, with the command that fixes it, when more than one onnxruntime build is installed
    (insightface >= 1.0 brings the CPU ``onnxruntime`` beside ``onnxruntime-gpu``: they overwrite each other's
    files, so the module in use may lack the CUDA provider or mix two releases); None when all is well.
    Cheap (reads package metadata), meant to be logged once when the pack loads."""
    builds = onnxruntime_builds() if builds is None else builds
    if len(builds) < 2:
        return None
    want = "onnxruntime" if platform == "darwin" else "onnxruntime-gpu"
    keep = f"{want}=={builds[want]}" if want in builds else want
    py = f'"{sys.executable}"'
    install_py = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "install.py")
    found = ", ".join(f"{name} {version}" for name, version in sorted(builds.items()))
    return (f"DreaMoving: several onnxruntime builds are installed ({found}). They install the same 'onnxruntime' "
            f"module over each other, so face analysis and DWPose may run without CUDA or fail to load. Keep one: "
            f"{py} -m pip uninstall -y {' '.join(sorted(builds))} && {py} -m pip install {keep} "
            f'(or run {py} "{install_py}"). insightface 1.0 and later list the CPU '
            f"'onnxruntime' as a dependency, so installing a pack that requires insightface can bring it back.")


def onnx_providers(device_type: str, choice: str = "auto") -> list[str]:
    """onnxruntime providers for the device the host computes on (CUDA only there; CPU always last)."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    want_cuda = choice == "CUDA" or (choice == "auto" and device_type == "cuda")
    if choice == "CUDA" and "CUDAExecutionProvider" not in available:
        raise ValueError("provider: CUDA was asked for, but this onnxruntime has no CUDAExecutionProvider "
                         "(install onnxruntime-gpu, and only it)")
    return (["CUDAExecutionProvider"] if want_cuda and "CUDAExecutionProvider" in available else []) + \
        ["CPUExecutionProvider"]


class FaceAnalyzer:
    """insightface's FaceAnalysis limited to detection + recognition, on the given providers."""

    def __init__(self, root: str, name: str, providers: list[str], det_size: int = 640):
        folder = pack_dir(root, name)
        if not glob.glob(os.path.join(folder, "*.onnx")):
            raise FileNotFoundError(f"insightface model pack '{name}' not found: put its .onnx files "
                                    f"(e.g. det_10g.onnx, w600k_r50.onnx) in {folder}")
        from insightface.app import FaceAnalysis

        self.name = name
        self.app = FaceAnalysis(name=name, root=root, providers=providers,
                                allowed_modules=["detection", "recognition"])
        missing = {"detection", "recognition"} - set(self.app.models)
        if missing:
            raise ValueError(f"insightface pack '{name}' in {folder} lacks a {' and a '.join(sorted(missing))} model")
        self.app.prepare(ctx_id=0, det_size=(det_size, det_size))

    @classmethod
    def wrapping(cls, app, name: str = "insightface") -> "FaceAnalyzer":
        """Use an already prepared insightface FaceAnalysis (e.g. IPAdapter_plus's INSIGHTFACE output)."""
        analyzer = cls.__new__(cls)
        analyzer.app, analyzer.name = app, name
        return analyzer

    def analyze(self, rgb: np.ndarray) -> FaceResult:
        """The largest face of an RGB uint8 image; NoFaceFound when there is none."""
        from insightface.utils import face_align

        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        faces = self.app.get(bgr)
        if not faces:
            raise NoFaceFound(f"no face found in the face image ({rgb.shape[1]}x{rgb.shape[0]}) by insightface "
                              f"'{self.name}'; use a clearer, frontal photo, or allow the CLIP-only fallback")
        face = max(faces, key=lambda f: (f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]))
        crop = face_align.norm_crop(bgr, landmark=face.kps, image_size=FACE_CROP_SIZE)[:, :, ::-1]
        return FaceResult(np.asarray(face.normed_embedding, dtype=np.float32), np.ascontiguousarray(crop),
                          np.asarray(face.bbox, dtype=np.float32))
