"""The KV ring cache of one stream: a fixed sink plus the last W chunks, preallocated.

Layout of the key/value buffers per layer, (B, H, S + W·Tc + Tc, Dh):

    [ sink (S) | ring: W slots of Tc tokens | scratch: the chunk being denoised (Tc) ]

Keys are stored already rotated by their absolute time (rotary position), so
slot order never matters: chunk k lives in slot k mod W, and attention only needs
to know which slots are filled. The sink's keys are kept time-unrotated in
``sink_k`` and re-rotated into the buffer at each chunk's start time, so the sink
sits at the same relative time for every chunk (no drift on long streams).
Shapes never change after ``__init__`` (friendly to torch.compile/export), and the
per-chunk cost is constant in stream length. Attention reads the whole buffer in
place: no concatenation per step. Writing into the buffer and attending over it are the kernel seam's job
(engine/kernels.py); this object only owns the memory and the bookkeeping.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class CacheSnapshot:
    k: torch.Tensor
    v: torch.Tensor
    slot_chunk: torch.Tensor
    sink_chunk: int


class RingKVCache:
    def __init__(self, layers: int, batch: int, heads: int, head_dim: int, window: int, tokens_per_chunk: int,
                 sink_k: torch.Tensor, sink_v: torch.Tensor, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> None:
        """sink_k/sink_v: (L, B, H, S, Dh) keys (time-unrotated) and values of the sink tokens."""
        if sink_k.shape[:3] != (layers, batch, heads) or sink_k.shape[-1] != head_dim or sink_v.shape != sink_k.shape:
            raise ValueError(f"sink keys/values must be (L={layers}, B={batch}, H={heads}, S, Dh={head_dim}), "
                             f"got {tuple(sink_k.shape)} and {tuple(sink_v.shape)}")
        self.window, self.tokens_per_chunk = window, tokens_per_chunk
        self.sink_tokens = sink_k.shape[-2]
        total = self.sink_tokens + window * tokens_per_chunk + tokens_per_chunk
        self.k = torch.zeros(layers, batch, heads, total, head_dim, dtype=dtype, device=device)
        self.v = torch.zeros_like(self.k)
        self.sink_k = sink_k.detach().to(device=device, dtype=dtype)
        self.v[:, :, :, : self.sink_tokens] = sink_v.detach().to(device=device, dtype=dtype)
        self.slot_chunk = torch.full((window,), -1, dtype=torch.long, device=device)  # chunk held by each slot
        self.sink_chunk = -1  # chunk whose start time the sink keys in the buffer are rotated to

    @classmethod
    def stacked(cls, rings: "list[RingKVCache]") -> "RingKVCache":
        """One batch of several streams' caches (a copy, rows in order), for a chunk step that serves them all
        (engine/batch.py). Only its buffers are used: which slots each row holds, and where its chunk is written
        back, stay with the caches it was made from."""
        first = rings[0]
        for r in rings[1:]:
            if (r.k.shape[0], *r.k.shape[2:]) != (first.k.shape[0], *first.k.shape[2:]) or r.window != first.window \
                    or r.tokens_per_chunk != first.tokens_per_chunk or r.k.dtype != first.k.dtype:
                raise ValueError("caches stacked into one batch must have the same layers, heads, length and dtype")
        out = cls.__new__(cls)
        out.window, out.tokens_per_chunk, out.sink_tokens = first.window, first.tokens_per_chunk, first.sink_tokens
        out.k = torch.cat([r.k for r in rings], dim=1)  # (L, B, H, T, Dh)
        out.v = torch.cat([r.v for r in rings], dim=1)
        out.sink_k = first.sink_k  # unused: each row's sink keys are rotated in its own cache, then copied in k
        out.slot_chunk = first.slot_chunk.new_full((first.window,), -1)  # not meaningful for a stacked batch
        out.sink_chunk = -1
        return out

    @property
    def ring_start(self) -> int:
        return self.sink_tokens

    @property
    def scratch_start(self) -> int:
        return self.sink_tokens + self.window * self.tokens_per_chunk

    def set_sink_keys(self, rotated: torch.Tensor, chunk: int) -> None:
        """Put the sink keys rotated to ``chunk``'s start time (L, B, H, S, Dh) into the buffer."""
        self.k[:, :, :, : self.sink_tokens] = rotated
        self.sink_chunk = chunk

    def mark_written(self, chunk: int) -> None:
        self.slot_chunk[chunk % self.window] = chunk

    def valid(self, chunk: int) -> torch.Tensor:
        """(S + W·Tc + Tc,) bool: the key positions chunk ``chunk`` attends to — the sink, the ring slots holding
        one of the W chunks before it, and the chunk itself (in the scratch region)."""
        held = (self.slot_chunk >= 0) & (self.slot_chunk < chunk) & (self.slot_chunk >= chunk - self.window)  # (W,)
        ring = held.repeat_interleave(self.tokens_per_chunk)
        ones = torch.ones(self.sink_tokens, dtype=torch.bool, device=ring.device)
        return torch.cat([ones, ring, torch.ones(self.tokens_per_chunk, dtype=torch.bool, device=ring.device)])

    def snapshot(self) -> CacheSnapshot:
        return CacheSnapshot(self.k.clone(), self.v.clone(), self.slot_chunk.clone(), self.sink_chunk)

    def restore(self, snap: CacheSnapshot) -> None:
        self.k.copy_(snap.k)
        self.v.copy_(snap.v)
        self.slot_chunk.copy_(snap.slot_chunk)
        self.sink_chunk = snap.sink_chunk
