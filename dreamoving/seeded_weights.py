"""Weights generated at set-up instead of shipped: bit-identical on every machine.

Values come from a counter-based generator (SplitMix64 over each tensor's element index, keyed by the seed
and the tensor's name) using only integer arithmetic and one exact float scaling, so no library's random
stream or vectorised maths can make two machines disagree. ``tensor_digest`` hashes the result, and callers
compare it with the digest recorded beside the generator.
"""
from __future__ import annotations

import hashlib
import math

import numpy as np
import torch

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _key(seed: int, name: str) -> np.uint64:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return np.uint64(int.from_bytes(digest[:8], "little"))


def seeded_uniform(seed: int, name: str, shape: tuple[int, ...], bound: float) -> torch.Tensor:
    """float32 values uniform in [-bound, bound), a pure function of (seed, name, shape, bound)."""
    count = math.prod(shape)
    counters = np.arange(count, dtype=np.uint64) ^ _key(seed, name)
    unit = (_splitmix64(counters) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53  # exact: 53-bit integers
    return torch.from_numpy(((unit * 2.0 - 1.0) * bound).astype(np.float32).reshape(shape))


def seeded_init(shapes: dict[str, tuple[int, ...]], seed: int, dtype: torch.dtype = torch.float16,
                embedding_std: float = 0.02) -> dict[str, torch.Tensor]:
    """An initialisation with sane scales: norm weights 1, biases 0, embeddings of std ``embedding_std``,
    other weights of std 1/sqrt(fan_in) (uniform, so the bound is sqrt(3) times the std)."""
    out = {}
    for name in sorted(shapes):
        shape, leaf = tuple(shapes[name]), name.rsplit(".", 1)[-1]
        if leaf == "bias":
            value = torch.zeros(shape)
        elif len(shape) <= 1:
            value = torch.ones(shape)
        else:
            std = embedding_std if "embedding" in name else 1 / math.sqrt(math.prod(shape[1:]))
            value = seeded_uniform(seed, name, shape, math.sqrt(3) * std)
        out[name] = value.to(dtype)
    return out


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
