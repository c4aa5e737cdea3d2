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

    chunk: int | tuple  # the chunk it was made for (a batch of states: each row's)
    phonemes: PhonemeWindow | None  # the phoneme window object it was made with (compared by identity)
    batch: int
    parts: dict[str, ChunkParts] = field(default_factory=dict)  # per stream
    valid: dict[str, torch.Tensor] = field(default_factory=dict)  # per stream (1 or B, S + W·Tc + Tc) key validity
    phoneme_kv: dict[str, list] = field(default_factory=dict)  # per stream, per layer rotated phoneme keys/values

    def fits(self, chunk: int | tuple, phonemes: PhonemeWindow | None, batch: int) -> bool:
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


@dataclass
class StateBatch:
    """Several streams' states stepped as one batch (engine/batch.py): row i is ``members[i]`` (a batch-1
    :class:`StreamState`) at its own chunk. ``caches`` are a stacked copy of the members' caches, made once per
    chunk (engine/step.py, ``stack_states``) and used by every denoising step and the commit; the commit writes
    each row's finished chunk back into its member's own cache and advances that member."""

    members: list[StreamState]
    caches: dict[str, RingKVCache]  # per stream, (L, B, H, T, Dh) buffers, rows in member order
    kernels: Kernels = REFERENCE
    anchor: torch.Tensor | None = None  # (B, tokens per frame, dim), rows in member order
    chunk_memo: ChunkMemo | None = None
    cond_memo: dict = field(default_factory=dict)

    @property
    def chunk(self) -> tuple[int, ...]:
        """Each row's chunk index."""
        return tuple(m.chunk for m in self.members)
