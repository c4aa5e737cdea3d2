"""The streaming state of one generation: a KV ring cache per stream, the next chunk index, the kernels its
chunk steps use, and what the forwards of one chunk share."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mfruntime.engine.cache import RingKVCache
from mfruntime.engine.kernels import REFERENCE, Kernels
from mfruntime.model.phonemes import PhonemeWindow
from mfruntime.model.transformer import ChunkParts


@dataclass
class ChunkMemo:
    """What every forward of one chunk shares (only without autograd): made by its first denoising step,
    reused by the others and the commit, and dropped when the chunk, the phoneme window or the batch changes."""

    chunk: int  # the chunk it was made for
    phonemes: PhonemeWindow | None  # the phoneme window object it was made with (compared by identity)
    batch: int
    parts: dict[str, ChunkParts] = field(default_factory=dict)  # per stream
    valid: dict[str, torch.Tensor] = field(default_factory=dict)  # per stream (1, S + W·Tc + Tc) key validity
    phoneme_kv: dict[str, list] = field(default_factory=dict)  # per stream, per layer rotated phoneme keys/values

    def fits(self, chunk: int, phonemes: PhonemeWindow | None, batch: int) -> bool:
        return self.chunk == chunk and self.phonemes is phonemes and self.batch == batch


@dataclass
class StreamState:
    """Streaming state of a generation: one ring cache per stream and the next chunk index."""

    caches: dict[str, RingKVCache]
    chunk: int = 0
    kernels: Kernels = REFERENCE  # how chunk steps attend over and write to the caches (the backend's choice)
    anchor: torch.Tensor | None = None  # (B, tokens per frame, dim) reference-anchor embedding of the video stream
    chunk_memo: ChunkMemo | None = None  # the current chunk's shared parts (only without autograd)
    # Noise-level conditioning per (stream, t, d) for number-valued t and d (the schedule's values repeat
    # every chunk); only without autograd, bounded.
    cond_memo: dict = field(default_factory=dict)

    def snapshot(self) -> dict:
        return {"chunk": self.chunk, "caches": {k: c.snapshot() for k, c in self.caches.items()}}

    def restore(self, snap: dict) -> None:
        self.chunk = snap["chunk"]
        self.chunk_memo = None
        for k, c in self.caches.items():
            c.restore(snap["caches"][k])
