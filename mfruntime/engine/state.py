"""The streaming state of one generation: a KV ring cache per stream, the next chunk index, the kernels its
chunk steps use, and what the forwards of one chunk share."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mfruntime.engine.cache import RingKVCache
from mfruntime.engine.kernels import REFERENCE, Kernels


@dataclass
class StreamState:
    """Streaming state of a generation: one ring cache per stream and the next chunk index."""

    caches: dict[str, RingKVCache]
    chunk: int = 0
    kernels: Kernels = REFERENCE  # how chunk steps attend over and write to the caches (the backend's choice)
    anchor: torch.Tensor | None = None  # (B, tokens per frame, dim) reference-anchor embedding of the video stream
    # Phoneme keys/values of the current chunk, reused by all its denoising steps and the commit
    # (only without autograd): (chunk, phoneme window object, {stream: per-layer list}).
    phoneme_memo: tuple | None = None
    # What every forward of one chunk shares (positions, rotations, frame-aligned phonemes, phoneme tokens,
    # key validity), reused by its denoising steps and the commit (only without autograd):
    # (chunk, phoneme window object, batch, {stream: parts}).
    chunk_memo: tuple | None = None
    # Noise-level conditioning per (stream, t, d) for number-valued t and d (the schedule's values repeat
    # every chunk); only without autograd, bounded.
    cond_memo: dict = field(default_factory=dict)

    def snapshot(self) -> dict:
        return {"chunk": self.chunk, "caches": {k: c.snapshot() for k, c in self.caches.items()}}

    def restore(self, snap: dict) -> None:
        self.chunk = snap["chunk"]
        self.phoneme_memo = self.chunk_memo = None
        for k, c in self.caches.items():
            c.restore(snap["caches"][k])
