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
from mfruntime.engine.state import ChunkMemo, StateBatch, StreamState
from mfruntime.model.phonemes import PhonemeWindow
from mfruntime.model.transformer import ChunkParts, StreamPass, TwinStreamTransformer


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


def stack_states(net: TwinStreamTransformer, states: list[StreamState]) -> StateBatch:
    """Several batch-1 states (characters at any chunks) as one :class:`StateBatch`: each row's sink rotated to
    its own chunk, then the caches stacked (a copy; made once per chunk and used by all its forwards)."""
    if not states:
        raise ValueError("stack_states needs at least one state")
    kern = states[0].kernels
    dev = next(net.parameters()).device
    for st in states:
        if st.kernels is not kern:
            raise ValueError("states stepped as one batch must use the same kernels (backend)")
        if any(c.k.shape[1] != 1 for c in st.caches.values()):
            raise ValueError("stack_states takes states of batch 1 (one character each)")
        _rotate_sinks(net, st, dev)
    caches = {s: RingKVCache.stacked([st.caches[s] for st in states]) for s in net.active}
    anchor = None if states[0].anchor is None else torch.cat([st.anchor for st in states])  # type: ignore[misc]
    return StateBatch(list(states), caches, kern, anchor)


def _rotate_sinks(net: TwinStreamTransformer, state: StreamState, dev) -> None:
    """[sink at this chunk's start time | ring | chunk]: re-rotate the sink keys when the chunk changed."""
    for s in net.active:
        ring = state.caches[s]
        if ring.sink_chunk != state.chunk:
            ring.set_sink_keys(net.rotated_sink(ring.sink_k, torch.tensor([state.chunk], device=dev)), state.chunk)


def _stack_parts(rows: list[ChunkParts]) -> ChunkParts:
    """Batch-1 parts of several rows → one batch; the rotations get a batch dim: (B, N, Dh/2). ``extra`` is the
    number 0.0 in a model that adds nothing to its tokens (no aligned phonemes, no anchor): it stays a number."""
    extras = [p.extra for p in rows]
    if all(isinstance(e, torch.Tensor) for e in extras):
        extra: torch.Tensor | float = torch.cat(extras)  # type: ignore[arg-type]
    elif any(isinstance(e, torch.Tensor) for e in extras):  # rows of one model differ: a bug upstream
        raise ValueError("rows of one batch must all add features to their tokens, or none")
    else:
        extra = 0.0
    return ChunkParts(extra=extra, rope=torch.stack([p.rope for p in rows]),
                      rope_t=torch.stack([p.rope_t for p in rows]), ph=torch.cat([p.ph for p in rows]),
                      ph_rope=torch.cat([p.ph_rope for p in rows]), ph_mask=torch.cat([p.ph_mask for p in rows]))


def _parts(net: TwinStreamTransformer, state: StreamState | StateBatch, s: str, ph: PhonemeWindow | None,
           batch: int, dev) -> tuple[ChunkParts, torch.Tensor]:
    """Stream ``s``'s parts of this chunk and its key validity (1 or B, S + W·Tc + Tc)."""
    if isinstance(state, StateBatch):  # every row at its own chunk: its own positions, phonemes and validity
        rows = [net.chunk_parts(s, None if ph is None else ph.row(i), m.chunk, 1, 1, dev, m.anchor, full_masks=False)
                for i, m in enumerate(state.members)]
        valid = torch.stack([m.caches[s].valid(m.chunk) for m in state.members]).to(dev)  # (B, T)
        return _stack_parts(rows), valid
    _rotate_sinks(net, state, dev)
    parts = net.chunk_parts(s, ph, state.chunk, 1, batch, dev, state.anchor, full_masks=False)
    return parts, state.caches[s].valid(state.chunk).to(dev)[None]  # (1, T)


def _passes(net: TwinStreamTransformer, state: StreamState | StateBatch, x: dict[str, torch.Tensor], t: dict,
            d: dict, ph: PhonemeWindow | None) -> dict[str, StreamPass]:
    batch, chunks = net.check_inputs(x, t, d)
    if chunks != 1:
        raise ValueError(f"a chunk step takes one chunk per stream (B, 1, ...), got {chunks}")
    if isinstance(state, StateBatch) and batch != len(state.members):
        raise ValueError(f"a batch of {len(state.members)} states takes {len(state.members)} rows, got {batch}")
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
        if memo is not None and s in memo.parts:
            parts, valid[s] = memo.parts[s], memo.valid[s]
        else:
            parts, valid[s] = _parts(net, state, s, ph, batch, dev)
            if memo is not None:
                memo.parts[s], memo.valid[s] = parts, valid[s]
        h = net.tokens(s, x[s]) + parts.extra
        c = net.conditioning(s, t[s], d[s], batch, 1, dev, state.cond_memo if memo is not None else None)
        rope = parts.rope if parts.rope.dim() == 3 else parts.rope[None]  # (1 or B, N, Dh/2)
        rope_t = parts.rope_t if parts.rope_t.dim() == 3 else parts.rope_t[None]
        passes[s] = StreamPass(h=h, c=c, group=net.tokens_per_chunk(s), rope=rope, rope_t=rope_t,
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


def chunk_step(net: TwinStreamTransformer, state: StreamState | StateBatch, x: dict[str, torch.Tensor], t: dict, d: dict,
               phonemes: PhonemeWindow | None) -> dict[str, torch.Tensor]:
    """Velocity for the current chunk (state.chunk) against the ring cache; the cache keeps its chunks.

    x: per stream latents (B, 1, ...); t, d: per stream numbers or (B,); phonemes: (B, P) window or None.
    ``state`` is one stream state (B rows at the same chunk: training's rollouts) or a :class:`StateBatch`
    (row i is one character at its own chunk: engine/batch.py).
    """
    passes = _passes(net, state, x, t, d, phonemes)
    kern = state.kernels
    out = net.run_layers(passes, commit=False, sublayers=kern.sublayers, fused_layer=kern.layer)
    return {s: net.untokens(s, y, 1) for s, y in out.items()}


def commit(net: TwinStreamTransformer, state: StreamState | StateBatch, x: dict[str, torch.Tensor],
           phonemes: PhonemeWindow | None) -> None:
    """The extra forward at t = 0 that writes the finished chunk's keys/values, then advances the state (a
    batch of states: each row into its member's own cache, at its own chunk)."""
    zeros = {s: 0.0 for s in net.active}
    passes = _passes(net, state, x, zeros, zeros, phonemes)
    kern = state.kernels
    net.run_layers(passes, commit=True, sublayers=kern.sublayers, fused_layer=kern.layer)
    members = state.members if isinstance(state, StateBatch) else [state]
    for s, p in passes.items():
        for i, m in enumerate(members):
            ring = m.caches[s]
            rows = slice(None) if m is state else slice(i, i + 1)
            for layer, (k, v) in enumerate(p.write):
                kern.ring_write(ring.k[layer], ring.v[layer], k[rows], v[rows], m.chunk, ring.ring_start, ring.window)
            ring.mark_written(m.chunk)
    for m in members:
        m.chunk += 1
