"""The chunk step: one chunk of both streams against their KV ring caches, and the commit that stores it.

``chunk_step`` is the one chunk-step function — the sampler (generator.py) and the Mutual Forcing rollouts
in training both call it. It builds one :class:`~mfruntime.model.transformer.StreamPass` per stream whose
self-attention is the state's kernels over the ring cache (rotate, write the chunk into the scratch rows,
attend over [sink | ring | chunk]; engine/kernels.py), and runs the network's layer loop on them. The
block-causal mask reduces, for one chunk, to the ring's key-validity vector. Without autograd, everything
the forwards of one chunk share (positions, rotations, frame-aligned phonemes, phoneme tokens and keys,
the conditioning per noise level) is kept in the state and reused by every denoising step and the commit.
"""
from __future__ import annotations

import torch

from mfruntime.engine.cache import RingKVCache
from mfruntime.engine.kernels import REFERENCE, Kernels
from mfruntime.engine.state import ChunkMemo, StreamState
from mfruntime.model.phonemes import PhonemeWindow
from mfruntime.model.transformer import StreamPass, TwinStreamTransformer


def new_state(net: TwinStreamTransformer, sinks: dict, batch: int, kernels: Kernels = REFERENCE) -> StreamState:
    """A fresh streaming state for ``net`` (the cache size depends on the batch); ``kernels``: the
    implementation of the cache operations its chunk steps use (engine/kernels.py)."""
    dev = next(net.parameters()).device
    caches = {}
    for s in net.active:
        cfg = net.cfg.video if s == "video" else net.cfg.audio
        sink_k, sink_v = sinks[s]
        caches[s] = RingKVCache(cfg.layers, batch, cfg.heads, cfg.head_dim, net.cfg.window_chunks,  # type: ignore[union-attr]
                                net.tokens_per_chunk(s), sink_k, sink_v, device=dev)
    return StreamState(caches=caches, anchor=sinks.get("anchor"), kernels=kernels)


def _ring_attention(ring: RingKVCache, kern: Kernels, rope: torch.Tensor, valid: torch.Tensor):
    """A pass's self-attention over its ring cache, through the kernels. (It holds tensors, not the pass: no
    reference cycle, so a pass is freed as soon as the forward is done.)"""
    def attend(layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        return kern.ring_attention(q, k, v, ring.k[layer], ring.v[layer], ring.scratch_start, rope, valid)
    return attend


def _passes(net: TwinStreamTransformer, state: StreamState, x: dict[str, torch.Tensor], t: dict, d: dict,
            ph: PhonemeWindow | None) -> dict[str, StreamPass]:
    batch, chunks = net.check_inputs(x, t, d)
    if chunks != 1:
        raise ValueError(f"a chunk step takes one chunk per stream (B, 1, ...), got {chunks}")
    first, kern = state.chunk, state.kernels
    dev = next(net.parameters()).device
    memo = None
    if not torch.is_grad_enabled():  # every forward of this chunk shares its parts
        memo = state.chunk_memo
        if memo is None or not memo.fits(first, ph, batch):
            memo = state.chunk_memo = ChunkMemo(first, ph, batch)
    passes: dict[str, StreamPass] = {}
    valid: dict[str, torch.Tensor] = {}
    for s in net.active:
        ring = state.caches[s]
        if ring.sink_chunk != first:  # [sink at this chunk's start time | ring | chunk]
            ring.set_sink_keys(net.rotated_sink(ring.sink_k, torch.tensor([first], device=dev)), first)
        if memo is not None and s in memo.parts:
            parts, valid[s] = memo.parts[s], memo.valid[s]
        else:
            parts = net.chunk_parts(s, ph, first, 1, batch, dev, state.anchor, full_masks=False)
            valid[s] = ring.valid(first).to(dev)[None]  # (1, S + W·Tc + Tc) key validity
            if memo is not None:
                memo.parts[s], memo.valid[s] = parts, valid[s]
        h = net.tokens(s, x[s]) + parts.extra
        c = net.conditioning(s, t[s], d[s], batch, 1, dev, state.cond_memo if memo is not None else None)
        rope = parts.rope[None]
        passes[s] = StreamPass(h=h, c=c, group=net.tokens_per_chunk(s), rope=rope, rope_t=parts.rope_t[None],
                               self_attend=_ring_attention(ring, kern, rope, valid[s]), self_mask=valid[s],
                               cross_mask=None, ph=parts.ph, ph_rope=parts.ph_rope, ph_mask=parts.ph_mask,
                               attend=kern.attend, backend={"ring": ring})
        if memo is not None:  # phoneme keys/values, made by the first forward's layers, reused by the rest
            p = passes[s]
            p.ph_kv = memo.phoneme_kv.setdefault(s, [])
    for s, p in passes.items():
        other = [o for o in passes if o != s]
        p.cross_mask = valid[other[0]] if other else None
    return passes


def chunk_step(net: TwinStreamTransformer, state: StreamState, x: dict[str, torch.Tensor], t: dict, d: dict,
               phonemes: PhonemeWindow | None) -> dict[str, torch.Tensor]:
    """Velocity for the current chunk (state.chunk) against the ring cache; the cache keeps its chunks.

    x: per stream latents (B, 1, ...); t, d: per stream numbers or (B,); phonemes: (B, P) window or None.
    """
    passes = _passes(net, state, x, t, d, phonemes)
    kern = state.kernels
    out = net.run_layers(passes, commit=False, sublayers=kern.sublayers, fused_layer=kern.layer)
    return {s: net.untokens(s, y, 1) for s, y in out.items()}


def commit(net: TwinStreamTransformer, state: StreamState, x: dict[str, torch.Tensor],
           phonemes: PhonemeWindow | None) -> None:
    """The extra forward at t = 0 that writes the finished chunk's keys/values, then advances the state."""
    zeros = {s: 0.0 for s in net.active}
    passes = _passes(net, state, x, zeros, zeros, phonemes)
    kern = state.kernels
    net.run_layers(passes, commit=True, sublayers=kern.sublayers, fused_layer=kern.layer)
    for s, p in passes.items():
        ring = state.caches[s]
        for layer, (k, v) in enumerate(p.write):
            kern.ring_write(ring.k[layer], ring.v[layer], k, v, state.chunk, ring.ring_start, ring.window)
        ring.mark_written(state.chunk)
    state.chunk += 1
