"""Content Guider nodes: the insightface loader, the guider loader and Content Guider Encode."""
from __future__ import annotations

import torch

import comfy.model_management
import folder_paths
from comfy_api.v0_0_2 import io

from ..dreamoving.content_guider import KIND_INPUTS
from ..dreamoving.face_analysis import FaceAnalyzer, NoFaceFound, list_packs, onnx_providers
from ..dreamoving.guider_files import load_content_guider
from .guider_patch import attach_guider
from .images import uint8_frames

Guider = io.Custom("DREAMOVING_GUIDER")
InsightFace = io.Custom("INSIGHTFACE")  # the type IPAdapter_plus's loader outputs too
GUIDER_FOLDERS = ("dreamoving", "ipadapter")


def insightface_roots() -> list[str]:
    return folder_paths.get_folder_paths("insightface")


class InsightFaceLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        packs = sorted({p for root in insightface_roots() for p in list_packs(root)})
        return io.Schema(
            node_id="DreaMovingInsightFaceLoader",
            display_name="Load InsightFace (DreaMoving)",
            category="DreaMoving/loaders",
            description="Face detection, alignment and ArcFace identity from an insightface model pack.",
            inputs=[
                io.Combo.Input("model_pack", options=packs,
                               tooltip="A pack folder in models/insightface/models/ (buffalo_l, antelopev2)."),
                io.Combo.Input("provider", options=["auto", "CPU", "CUDA"], default="auto",
                               tooltip="onnxruntime provider; auto follows the device ComfyUI computes on."),
            ],
            outputs=[InsightFace.Output(display_name="INSIGHTFACE")],
        )

    @classmethod
    def execute(cls, model_pack, provider) -> io.NodeOutput:
        device = comfy.model_management.get_torch_device().type
        roots = [r for r in insightface_roots() if model_pack in list_packs(r)] or insightface_roots()[:1]
        return io.NodeOutput(FaceAnalyzer(roots[0], model_pack, onnx_providers(device, provider)))


class ContentGuiderLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        files = sorted({f for folder in GUIDER_FOLDERS for f in folder_paths.get_filename_list(folder)})
        return io.Schema(
            node_id="DreaMovingContentGuiderLoader",
            display_name="Load DreaMoving Content Guider",
            category="DreaMoving/loaders",
            description="Our Content Guider (face + cloth streams), or an IP-Adapter SD1.5 file (base, plus, "
                        "plus-face, FaceID, FaceID-Plus/PlusV2) loaded into the face or the cloth stream.",
            inputs=[
                io.Combo.Input("guider_file", options=files,
                               tooltip="A file in models/dreamoving or models/ipadapter."),
                io.Combo.Input("stream", options=["face", "cloth"], default="face",
                               tooltip="For IP-Adapter files: which stream they drive (ours hold both)."),
                io.Float.Input("faceid_v2_scale", default=1.0, min=0.0, max=5.0, step=0.05,
                               tooltip="FaceID-PlusV2 only: weight of the CLIP refinement added to the ID tokens."),
                Guider.Input("guider", optional=True,
                             tooltip="Combine with this guider (e.g. a FaceID face stream + a Plus cloth stream)."),
            ],
            outputs=[Guider.Output(display_name="GUIDER")],
        )

    @classmethod
    def execute(cls, guider_file, stream, faceid_v2_scale, guider=None) -> io.NodeOutput:
        path = next(filter(None, (folder_paths.get_full_path(f, guider_file) for f in GUIDER_FOLDERS)), None)
        if path is None:
            raise FileNotFoundError(f"guider_file: '{guider_file}' is not in models/dreamoving or models/ipadapter")
        loaded = load_content_guider(path, stream, faceid_v2_scale)
        return io.NodeOutput(loaded if guider is None else guider.with_streams_of(loaded))


def _clip_features(clip_vision, image: torch.Tensor) -> dict[str, torch.Tensor]:
    out = clip_vision.encode_image(image)
    return {"hidden": out["penultimate_hidden_states"], "embeds": out["image_embeds"]}


class ContentGuiderEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DreaMovingContentGuiderEncode",
            display_name="Content Guider Encode (Face/Cloth/Text)",
            category="DreaMoving/conditioning",
            description="Text conditioning plus the person's face and clothes: Z' = Attn(text) + a_f Attn(face) + "
                        "a_c Attn(cloth) in every cross-attention layer. Outputs the guided MODEL and the text "
                        "conditioning; a_f = a_c = 0 is text-only generation.",
            inputs=[
                io.Model.Input("model", tooltip="The (motion) U-Net to guide."),
                io.Clip.Input("clip", tooltip="Text encoder for the prompts."),
                io.ClipVision.Input("clip_vision", optional=True,
                                    tooltip="CLIP ViT-H/14 image encoder (Load CLIP Vision). Not used by a guider "
                                            "that carries its own image encoder (the embedded model's)."),
                Guider.Input("guider", tooltip="From Load DreaMoving Content Guider."),
                io.String.Input("text", multiline=True, default="a person dancing",
                                tooltip="What the video shows."),
                io.String.Input("negative_text", multiline=True, default="",
                                tooltip="What to avoid."),
                io.Float.Input("a_f", default=1.0, min=0.0, max=5.0, step=0.01,
                               tooltip="Face strength (0 = no face guidance)."),
                io.Float.Input("a_c", default=1.0, min=0.0, max=5.0, step=0.01,
                               tooltip="Cloth/body strength (0 = no cloth guidance)."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Where in the denoising the guidance starts."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Where in the denoising the guidance ends."),
                io.Combo.Input("face_crop", options=["align on landmarks", "image as is"], default="align on landmarks",
                               tooltip="CLIP sees the face aligned on the detected landmarks, or the face image "
                                       "unchanged (for an already-cropped face)."),
                io.Combo.Input("no_face", options=["error", "CLIP-only face tokens"], default="error",
                               tooltip="When no face is detected: stop with an error, or continue with CLIP "
                                       "features only (zero identity embedding)."),
                io.Image.Input("face_image", optional=True, tooltip="Reference photo with the face."),
                io.Image.Input("cloth_image", optional=True, tooltip="Reference photo of the clothes/body."),
                InsightFace.Input("face_analysis", optional=True,
                                  tooltip="From Load InsightFace; needed by FaceID-type face streams."),
            ],
            outputs=[io.Model.Output(display_name="MODEL"), io.Conditioning.Output(display_name="positive"),
                     io.Conditioning.Output(display_name="negative")],
        )

    @classmethod
    def execute(cls, model, clip, guider, text, negative_text, a_f, a_c, start_percent, end_percent,
                face_crop, no_face, clip_vision=None, face_image=None, cloth_image=None,
                face_analysis=None) -> io.NodeOutput:
        positive = clip.encode_from_tokens_scheduled(clip.tokenize(text))
        negative = clip.encode_from_tokens_scheduled(clip.tokenize(negative_text))
        weights = {"face": a_f, "cloth": a_c}
        images = {"face": face_image, "cloth": cloth_image}
        param = next(guider.parameters())
        encoder = guider.image_encoder if guider.image_encoder is not None else clip_vision
        tokens = {}
        for stream, kind in guider.kinds.items():
            if images[stream] is None:
                if weights[stream] != 0:
                    raise ValueError(f"{stream}_image: the guider's {stream} stream needs an image "
                                     f"(or set {'a_f' if stream == 'face' else 'a_c'} to 0)")
                continue
            if encoder is None:
                raise ValueError("clip_vision: this guider has no image encoder of its own; connect Load CLIP "
                                 "Vision with the CLIP ViT-H/14 image encoder")
            uncond_features = cls._uncond_features(encoder)
            if stream == "face":
                cond = cls._face_features(encoder, face_image, face_analysis, kind, face_crop, no_face)
            else:
                cond = _clip_features(encoder, cloth_image[:1])
            with torch.no_grad():
                tokens[stream] = tuple(guider.tokens(stream, {k: v.to(param) for k, v in f.items()}).cpu()
                                       for f in (cond, uncond_features))
        if not tokens:
            return io.NodeOutput(model, positive, negative)
        guided = attach_guider(model, guider, tokens, weights, start_percent, end_percent)
        return io.NodeOutput(guided, positive, negative)

    @staticmethod
    def _uncond_features(clip_vision) -> dict[str, torch.Tensor]:
        """IP-Adapter's negative side: CLIP features of an all-zero (normalised) image, zero embeddings."""
        mean = torch.tensor(clip_vision.image_mean, dtype=torch.float32).view(1, 1, 1, 3)
        features = _clip_features(clip_vision, mean.expand(1, 224, 224, 3))
        return {"hidden": features["hidden"], "embeds": torch.zeros_like(features["embeds"]),
                "id": torch.zeros(1, 512)}

    @staticmethod
    def _face_features(clip_vision, image, face_analysis, kind, face_crop, no_face) -> dict[str, torch.Tensor]:
        needs_id = "id" in KIND_INPUTS[kind]
        if face_analysis is None:
            if needs_id:
                raise ValueError(f"face_analysis: the face stream ({kind}) needs an identity embedding; connect "
                                 f"Load InsightFace")
            return _clip_features(clip_vision, image[:1])
        analyzer = face_analysis if isinstance(face_analysis, FaceAnalyzer) else FaceAnalyzer.wrapping(face_analysis)
        try:
            face = analyzer.analyze(uint8_frames(image[:1])[0])
        except NoFaceFound:
            if no_face == "error":
                raise
            return dict(_clip_features(clip_vision, image[:1]), id=torch.zeros(1, 512))
        crop = torch.from_numpy(face.crop).float().div(255).unsqueeze(0) if face_crop == "align on landmarks" \
            else image[:1]
        return dict(_clip_features(clip_vision, crop), id=torch.from_numpy(face.embedding).unsqueeze(0))
