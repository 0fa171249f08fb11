"""A CLIP tokenizer folder (``vocab.json``, ``merges.txt``) built from the BPE file open_clip ships (OpenAI's
``bpe_simple_vocab_16e6.txt.gz``), for a single-file checkpoint when no tokenizer folder is at hand. It equals
the files of ``openai/clip-vit-large-patch14`` (and of ComfyUI's ``comfy/sd1_tokenizer``).
"""
from __future__ import annotations

import gzip
import json
import os

MERGES = 49152 - 256 - 2  # OpenAI's vocabulary: 256 bytes x 2 (plain, end of word) + merges + 2 special tokens
SPECIAL = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
           "pad_token": "<|endoftext|>"}


def clip_tokenizer_folder(folder: str) -> str:
    """Write the tokenizer files into ``folder`` (once) and return it."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    if os.path.isfile(os.path.join(folder, "merges.txt")):
        return folder
    merges = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1:MERGES + 1]
    byte_tokens = list(bytes_to_unicode().values())
    vocab = byte_tokens + [t + "</w>" for t in byte_tokens] + ["".join(m.split()) for m in merges] + \
        ["<|startoftext|>", "<|endoftext|>"]
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({token: i for i, token in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(dict(SPECIAL, model_max_length=77, do_lower_case=True, tokenizer_class="CLIPTokenizer"), f)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:  # last: it marks the folder complete
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    return folder
