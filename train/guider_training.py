"""Stage 1: the Content Guider (face + cloth projections and their per-layer K/V) on human images, U-Net frozen.

The U-Net's cross-attention layers run Eq. 1 through an attention processor built on the same
``dreamoving.content_guider`` math the nodes use; the new K/V start as copies of the text ones.
"""
from __future__ import annotations

import glob
import os

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from dreamoving.attention import sdpa_attention
from dreamoving.content_guider import ContentGuider, FaceIDProjection, Resampler, guided_attention
from dreamoving.guider_files import save_content_guider

from .config import StageConfig
from .data import resize_center_crop
from .motion_training import _batch, run_training
from .sd15 import SD15Parts


def cross_attention_layers(unet) -> list:
    """The attn2 modules of a diffusers U-Net in IP-Adapter's order (down, up, mid), as the guider's layers."""
    return [unet.get_submodule(name.removesuffix(".processor")) for name in unet.attn_processors
            if name.endswith("attn2.processor")]


def new_content_guider(unet, clip_dim: int, face_tokens: int = 4, cloth_tokens: int = 16, depth: int = 4,
                       dim_head: int = 64, face_kind: str = "faceid_plus", width: int | None = None) -> ContentGuider:
    """A FaceID-PlusV2-like face stream (``face_kind="resampler"``: IP-Adapter-Plus-Face-like, no identity
    embedding) and an IP-Adapter-Plus-like cloth stream, K/V copied from the text ones; ``width``: the
    resamplers' inner size (the text context size by default)."""
    layers = cross_attention_layers(unet)
    context = unet.config.cross_attention_dim
    width = width or context
    guider = ContentGuider([layer.to_q.out_features for layer in layers], context)
    perceiver = dict(dim=width, depth=depth, dim_head=dim_head, heads=max(1, width // dim_head),
                     embedding_dim=clip_dim, output_dim=context)

    def resampler(tokens: int) -> Resampler:
        module = Resampler(num_queries=tokens, **perceiver)
        torch.nn.init.normal_(module.latents, std=width ** -0.5)
        return module

    if face_kind == "resampler":
        guider.add_stream("face", "resampler", resampler(face_tokens))
    else:
        guider.add_stream("face", "faceid_plus", FaceIDProjection(512, face_tokens, context, perceiver, shortcut=True))
    guider.add_stream("cloth", "resampler", resampler(cloth_tokens))
    with torch.no_grad():
        for target, layer in zip(guider.layers, layers):
            for stream in ("face", "cloth"):
                getattr(target, f"to_k_{stream}").weight.copy_(layer.to_k.weight)
                getattr(target, f"to_v_{stream}").weight.copy_(layer.to_v.weight)
    return guider


class GuidedAttnProcessor:
    """diffusers attn2 processor: text attention plus each stream's weighted attention (Eq. 1)."""

    def __init__(self, guider: ContentGuider, layer: int, state: dict):
        self.guider, self.layer, self.state = guider, layer, state

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        q, k, v = attn.to_q(hidden_states), attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states)
        text = sdpa_attention(q, k, v, attn.heads)
        layer = self.guider.layers[self.layer]
        terms = [(weight, *layer.kv(stream, tokens)) for stream, (tokens, weight) in self.state.items()]
        return attn.to_out[1](attn.to_out[0](guided_attention(q, text, terms, attn.heads)))


class GuidedUNet(torch.nn.Module):
    """The frozen U-Net with the guider (the trainable part) in its cross-attention layers."""

    def __init__(self, unet, guider: ContentGuider):
        super().__init__()
        self.unet, self.guider = unet, guider
        self.state: dict = {}
        processors = dict(unet.attn_processors)
        attn2 = [name for name in processors if name.endswith("attn2.processor")]
        for index, name in enumerate(attn2):
            processors[name] = GuidedAttnProcessor(guider, index, self.state)
        unet.set_attn_processor(processors)

    def set_features(self, features: list[dict], weights: dict[str, float], like: torch.Tensor,
                     repeats: int = 1) -> None:
        """What the next U-Net calls attend: per sample {"id", "face_hidden", "cloth_hidden"} (zeros = the
        unconditional side), each sample's tokens repeated ``repeats`` times (a video's frames)."""
        self.state.clear()
        face = self.guider.tokens("face", {"id": torch.stack([f["id"] for f in features]).to(like),
                                           "hidden": torch.stack([f["face_hidden"] for f in features]).to(like)})
        cloth = self.guider.tokens("cloth", {"hidden": torch.stack([f["cloth_hidden"] for f in features]).to(like)})
        self.state.update(face=(face.repeat_interleave(repeats, 0), weights["face"]),
                          cloth=(cloth.repeat_interleave(repeats, 0), weights["cloth"]))

    def forward(self, sample, timesteps, text, features: list[dict], weights: dict[str, float]):
        self.set_features(features, weights, sample)
        return self.unet(sample, timesteps, encoder_hidden_states=text).sample


def guider_loss(model: GuidedUNet, parts: SD15Parts, inputs: list[dict], scheduler, device) -> torch.Tensor:
    noisy, noise, t, text, _ = _batch(parts, inputs, scheduler, device)

    def dropped(i):
        return i["uncond_features"] or {k: torch.zeros_like(v) for k, v in i["features"].items()}

    features = [dropped(i) if i["drop_image"] else i["features"] for i in inputs]
    prediction = model(noisy, t, text, features, {"face": 1.0, "cloth": 1.0})
    return F.mse_loss(prediction.float(), noise.float())


def train_guider(config: StageConfig, parts: SD15Parts, guider: ContentGuider, dataset, output_dir: str,
                 resume: bool = False, log=print, image_encoder=None) -> ContentGuider:
    """Stage 1; exports ``content_guider.safetensors`` (our format) for Load DreaMoving Content Guider, holding
    ``image_encoder`` (frozen; it made the dataset's features) where one is given instead of CLIP."""

    def export(trained: GuidedUNet):
        trained.guider.image_encoder = image_encoder
        save_content_guider(trained.guider, os.path.join(output_dir, "content_guider.safetensors"),
                            trained_by=f"dreamoving train stage {config.stage} ({config.name})", steps=config.steps)

    return run_training(config, parts, GuidedUNet(parts.unet, guider), guider,
                        lambda m, i, s, d: guider_loss(m, parts, i, s, d), export, dataset, output_dir, resume,
                        log).guider


class EncodedReferences(torch.utils.data.Dataset):
    """Stage 1 items from a dataset with ``reference`` and ``face`` images ([3, H, W] in [0, 1], e.g. the
    rendered dancers): the target frame shows the person in another pose than the reference, and the features
    come from ``encoder`` (``encode_image``, as CLIP_VISION); no identity embedding (zeros). A dropped image
    (classifier-free guidance) takes the features of a mean-coloured image, as Content Guider Encode's negative."""

    def __init__(self, dataset, encoder):
        self.dataset, self.encoder = dataset, encoder
        gray = torch.tensor(encoder.image_mean).view(3, 1, 1).expand(3, 64, 64)
        self.uncond = {"id": torch.zeros(512), "face_hidden": self._hidden(gray), "cloth_hidden": self._hidden(gray)}

    @torch.no_grad()
    def _hidden(self, image: torch.Tensor) -> torch.Tensor:
        return self.encoder.encode_image(image.permute(1, 2, 0)[None])["penultimate_hidden_states"][0]

    def __len__(self) -> int:
        return len(self.dataset)

    def features(self, item: dict) -> dict:
        """The guider's inputs for an item's face crop and reference image."""
        return {"id": torch.zeros(512), "face_hidden": self._hidden(item["face"]),
                "cloth_hidden": self._hidden(item["reference"])}

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        return {"pixels": item["pixels"], "caption": item["caption"], "features": self.features(item),
                "uncond_features": self.uncond}


class GuiderImages(torch.utils.data.Dataset):
    """Images (``name.png``/``.jpg``) with ``name.txt`` captions and ``name.features.safetensors`` (see
    ``prepare_features``); a random crop (seeded by index) resized to ``resolution``."""

    def __init__(self, folder: str, resolution: int):
        self.images = image_paths(folder)
        missing = [p for p in self.images if not os.path.isfile(_features_path(p))]
        if not self.images or missing:
            raise FileNotFoundError(f"'{folder}': no images, or features missing (run prepare_features): {missing[:2]}")
        self.resolution = resolution

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        from PIL import Image

        path = self.images[index]
        image = np.asarray(Image.open(path).convert("RGB"))
        h, w = image.shape[:2]
        rng = np.random.default_rng(index)
        side = int(min(h, w) * rng.uniform(0.8, 1.0))
        top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        with open(os.path.splitext(path)[0] + ".txt", encoding="utf-8") as f:
            caption = f.read().strip()
        return {"pixels": resize_center_crop(image[None, top:top + side, left:left + side], self.resolution),
                "caption": caption, "features": load_file(_features_path(path))}


def image_paths(folder: str) -> list[str]:
    """The stage 1 images of ``folder`` (png, jpg), sorted."""
    return sorted(p for ext in ("png", "jpg", "jpeg") for p in glob.glob(os.path.join(folder, f"*.{ext}")))


def _features_path(image_path: str) -> str:
    return os.path.splitext(image_path)[0] + ".features.safetensors"


def load_clip_vision(source: str):
    """(model, image processor) from a transformers folder (IP-Adapter's image_encoder) or an OpenCLIP file."""
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    if os.path.isfile(source):
        from .openclip import load_openclip_vision

        return load_openclip_vision(source)
    return (CLIPVisionModelWithProjection.from_pretrained(source, local_files_only=True).eval(),
            CLIPImageProcessor.from_pretrained(source, local_files_only=True))


@torch.no_grad()
def prepare_features(folder: str, clip_source: str, face_analyzer) -> int:
    """For every image: the ArcFace identity, CLIP penultimate states of the aligned face crop and of the
    whole image (the cloth/body stream); images without a face get a zero identity and use the image."""
    from PIL import Image

    from dreamoving.face_analysis import NoFaceFound

    clip, processor = load_clip_vision(clip_source)

    def hidden(rgb):
        return clip(**processor(images=[rgb], return_tensors="pt"), output_hidden_states=True).hidden_states[-2][0]

    paths = image_paths(folder)
    for path in paths:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        try:
            face = face_analyzer.analyze(rgb)
            identity, crop = torch.from_numpy(face.embedding), face.crop
        except NoFaceFound:
            identity, crop = torch.zeros(512), rgb
        save_file({"id": identity.contiguous(), "face_hidden": hidden(crop).contiguous(),
                   "cloth_hidden": hidden(rgb).contiguous()}, _features_path(path))
    return len(paths)
