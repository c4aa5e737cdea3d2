"""The KV ring cache of one stream: a fixed sink plus the last W chunks, preallocated.

Keys are stored already rotated by their absolute time (rotary position), so the
order of slots never matters: chunk k lives in slot k mod W and attention only
needs to know which slots are filled. Shapes never change after ``__init__``,
which keeps torch.compile/export happy, and per-chunk cost is constant in stream
length. Sink keys are stored without their time rotation; the model rotates them
to the current chunk's start time, so the sink sits at the same relative time
for every chunk (no drift over long streams).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class CacheSnapshot:
    k: torch.Tensor
    v: torch.Tensor
    slot_chunk: torch.Tensor


class RingKVCache:
    def __init__(self, layers: int, batch: int, heads: int, head_dim: int, window: int, tokens_per_chunk: int,
                 sink_k: torch.Tensor, sink_v: torch.Tensor, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> None:
        """sink_k/sink_v: (L, B, H, S, Dh) keys (time-unrotated) and values of the sink tokens."""
        if sink_k.shape[:3] != (layers, batch, heads) or sink_k.shape[-1] != head_dim:
            raise ValueError(f"sink keys must be (L={layers}, B={batch}, H={heads}, S, Dh={head_dim}), got {tuple(sink_k.shape)}")
        self.window, self.tokens_per_chunk = window, tokens_per_chunk
        self.k = torch.zeros(layers, batch, heads, window * tokens_per_chunk, head_dim, dtype=dtype, device=device)
        self.v = torch.zeros_like(self.k)
        self.sink_k, self.sink_v = sink_k.to(dtype), sink_v.to(dtype)
        self.slot_chunk = torch.full((window,), -1, dtype=torch.long, device=device)  # chunk held by each slot

    @property
    def sink_tokens(self) -> int:
        return self.sink_k.shape[-2]

    def slot(self, chunk: int) -> int:
        return chunk % self.window

    def write(self, layer: int, chunk: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store chunk ``chunk``'s keys/values (B, H, Tc, Dh) of one layer (detached: the cache is context)."""
        s = self.slot(chunk) * self.tokens_per_chunk
        self.k[layer, :, :, s : s + self.tokens_per_chunk] = k.detach()
        self.v[layer, :, :, s : s + self.tokens_per_chunk] = v.detach()

    def mark_written(self, chunk: int) -> None:
        self.slot_chunk[self.slot(chunk)] = chunk

    def valid(self) -> torch.Tensor:
        """(W·Tc,) bool: which cached key positions hold a chunk."""
        return (self.slot_chunk >= 0).repeat_interleave(self.tokens_per_chunk)

    def snapshot(self) -> CacheSnapshot:
        return CacheSnapshot(self.k.clone(), self.v.clone(), self.slot_chunk.clone())

    def restore(self, snap: CacheSnapshot) -> None:
        self.k.copy_(snap.k)
        self.v.copy_(snap.v)
        self.slot_chunk.copy_(snap.slot_chunk)
