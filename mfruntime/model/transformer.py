"""The twin-stream block-causal transformer (docs/MODEL.md).

A video stream and an audio stream of :class:`StreamBlock`s run in lockstep,
layer by layer: each stream's self-attention covers its sink, its cached chunks
and the current chunk; then each stream attends to the other stream's keys and
values of the same layer; then to the phoneme tokens of the chunk window. The
network predicts the flow-matching velocity of every latent token given its
chunk's noise level ``t`` and step size ``d`` (it knows nothing about step
counts: see sampling.py).

One layer loop (:meth:`TwinStreamTransformer.run_layers`) runs prepared passes
(:class:`StreamPass`): each pass says where its self-attention's keys and values
come from. ``forward_sequence`` builds passes for many chunks at once (block-causal
mask, optional clean context for teacher forcing); the streaming engine
(mfruntime/engine/step.py) builds them for one chunk over its KV ring cache. The
network itself holds no streaming state. Setting ``ModelConfig.video`` or
``.audio`` to None gives a uni-modal model from the same code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from mfruntime.config import ModelConfig, StreamConfig
from mfruntime.model.block import StreamBlock
from mfruntime.model.layers import ScalarEmbedding, additive_mask, masked_attention, modulate, rotated_attention
from mfruntime.model.phonemes import PhonemeWindow, align
from mfruntime.model.rope import Rotary
from mfruntime.model.tokens import (CONTEXT, INPUT, SINK, attention_mask, audio_positions, chunk_start_time, grid,
                                    patchify, unpatchify, video_positions)

STREAMS = ("video", "audio")


def _per_token(m: torch.Tensor, group: int) -> torch.Tensor:
    """Per-group modulation (B, G, dim) → per token: broadcast when G = 1, else repeat each group."""
    return m if m.shape[1] == 1 else m.repeat_interleave(group, dim=1)


def _sequence_attention(prefix_k: torch.Tensor, prefix_v: torch.Tensor, rope: torch.Tensor, mask: torch.Tensor):
    """Self-attention of a full-sequence pass: per-layer prefix (L, B, H, P, Dh) (the rotated sink copies) and
    the tokens' own rotated keys, under the block-causal mask. (It holds tensors, not the pass: no reference
    cycle, so a pass is freed as soon as the forward is done.)"""
    def attend(layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        q, k = Rotary.rotate(q, rope), Rotary.rotate(k, rope)
        keys, values = torch.cat([prefix_k[layer], k], dim=2), torch.cat([prefix_v[layer], v], dim=2)
        return masked_attention(q, keys, values, mask), keys, values
    return attend


class Stream(nn.Module):
    """Embeddings, blocks and output head of one stream."""

    def __init__(self, name: str, cfg: StreamConfig, model: ModelConfig, cross_modal: bool) -> None:
        super().__init__()
        self.name, self.dim = name, cfg.dim
        dim = cfg.dim
        if name == "video":
            in_dim = model.video_codec.latent_channels * model.patch**2
            sink_tokens = (model.video_codec.latent_size // model.patch) ** 2
        else:
            in_dim = model.audio_codec.latent_channels
            sink_tokens = model.audio_ref_steps
        self.in_dim, self.sink_tokens = in_dim, sink_tokens
        self.token_in = nn.Linear(in_dim, dim)
        self.sink_in = nn.Linear(in_dim, dim)
        self.sink_null = nn.Parameter(torch.randn(sink_tokens, dim) * 0.02)  # used when no reference is given
        self.t_embed = ScalarEmbedding(dim)
        # The step size's embedding (the shortcut input of the few-step modes); absent in the no-step-conditioning
        # baseline, which is told the noise level only.
        self.d_embed = ScalarEmbedding(dim) if model.step_conditioning else None
        vocab = len(model.phonemes)
        self.ph_embed = nn.Embedding(vocab, dim)
        self.ph_stress = nn.Embedding(2, dim)
        self.ph_dur = nn.Linear(2, dim)
        self.ph_null = nn.Parameter(torch.randn(1, dim) * 0.02)  # always-present phoneme key ("nothing to say")
        if model.aligned_phonemes:  # the phoneme sounding at each token's instant, added to the token
            self.al_current = nn.Embedding(vocab, dim)
            self.al_previous = nn.Embedding(vocab, dim)
            self.al_following = nn.Embedding(vocab, dim)
            self.al_stress = nn.Embedding(2, dim)
            self.al_position = nn.Linear(4, dim)
            # Small, like the other learned tokens: unit-variance entries would swamp the latent token they are
            # added to (measured: stage-1 STOI 0.74 with N(0, 1), 0.80 with std 0.02; docs/TRAINING.md).
            for emb in (self.al_current, self.al_previous, self.al_following, self.al_stress):
                nn.init.normal_(emb.weight, std=0.02)
        if name == "video" and model.reference_anchor:  # the reference frame's latent patch at each token's place
            self.anchor_in = nn.Linear(in_dim, dim)
        self.blocks = nn.ModuleList(StreamBlock(cfg, cross_modal) for _ in range(cfg.layers))
        self.final_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, in_dim)
        for lin in (self.final_ada, self.out):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def condition(self, t: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """(B, C) noise levels and step sizes → (B, C, dim); d is ignored without step conditioning."""
        c = self.t_embed(t)
        return c if self.d_embed is None else c + self.d_embed(d)

    def phoneme_tokens(self, ph: PhonemeWindow | None, batch: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Phoneme tokens (B, 1 + C·P, dim), their centre times (B, 1 + C·P) and validity (B, 1 + C·P)."""
        null = self.ph_null.expand(batch, 1, -1)
        if ph is None:
            return null, torch.zeros(batch, 1, dtype=torch.float64, device=device), torch.ones(batch, 1, dtype=torch.bool, device=device)
        b = ph.ids.shape[0]
        ids, stressed = ph.ids.reshape(b, -1).to(device), ph.stressed.reshape(b, -1).to(device)  # (B, C·P)
        start, end = ph.start.reshape(b, -1).to(device), ph.end.reshape(b, -1).to(device)
        dur = (end - start).float().clamp(min=0.0)
        feats = torch.stack([dur, torch.log(dur + 1e-3)], dim=-1)  # (B, C·P, 2)
        tok = self.ph_embed(ids) + self.ph_stress(stressed) + self.ph_dur(feats)
        times = torch.cat([torch.zeros(b, 1, dtype=torch.float64, device=device), (start + end) / 2], dim=1)
        valid = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=device), ph.mask.reshape(b, -1).to(device)], dim=1)
        return torch.cat([null, tok], dim=1), times, valid

    def aligned(self, ph: PhonemeWindow | None, times: torch.Tensor, batch: int, device) -> torch.Tensor:
        """Frame-aligned phoneme features (B, C·N, dim) for instants ``times`` (C, N) of C chunks (the "no
        phoneme" features everywhere without phonemes, e.g. in audio-driven mode)."""
        if ph is None:  # nothing to say: every instant gets the "no phoneme" features, as for a masked window
            z = torch.zeros(batch, 1, dtype=torch.long, device=device)
            zt = torch.zeros(batch, 1, dtype=torch.float64, device=device)
            ph = PhonemeWindow(z, z, zt, zt, torch.zeros(batch, 1, dtype=torch.bool, device=device))
        a = align(PhonemeWindow(*(x.to(device) for x in (ph.ids, ph.stressed, ph.start, ph.end, ph.mask))), times)
        e = (self.al_current(a.current) + self.al_previous(a.previous) + self.al_following(a.following)
             + self.al_stress(a.stressed) + self.al_position(a.position))  # (B, C, N, dim)
        return e.reshape(e.shape[0], -1, e.shape[-1])

    def head(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.final_ada(F.silu(c)).chunk(2, dim=-1)
        return self.out(modulate(self.final_norm(h), shift, scale))


@dataclass
class ChunkParts:
    """What every forward over the same chunks shares — nothing here depends on the latents or the noise level,
    so a streaming caller makes it once per chunk and reuses it for every denoising step and the commit."""

    # (B, C·N, dim) features added to the latent tokens (aligned phonemes, reference anchor), or 0.0 when none
    extra: torch.Tensor | float
    # (C·N, Dh/2) complex self-attention rotations (time, and row/column for video); (B, C·N, Dh/2) when the
    # rows of a batch are at different chunks (engine/step.py, a StateBatch)
    rope: torch.Tensor
    rope_t: torch.Tensor  # (C·N, Dh/2) or (B, C·N, Dh/2) complex time-only rotations (cross-modal, phoneme queries)
    ph: torch.Tensor  # (B, M, dim) phoneme tokens
    ph_rope: torch.Tensor  # (B, M, Dh/2) complex phoneme-key rotations
    ph_mask: torch.Tensor  # (B, 1, N, M) additive, or the (B, M) key validity of a single chunk


@dataclass
class StreamPass:
    """Everything one stream needs for one run of the layer loop."""

    h: torch.Tensor  # (B, N, dim) tokens
    c: torch.Tensor  # (B, G, dim) conditioning per group of `group` tokens (a chunk)
    group: int  # tokens per conditioning group
    rope: torch.Tensor  # self-attention rotations (1 or B, N, Dh/2) complex
    rope_t: torch.Tensor  # time-only rotations for cross-modal and phoneme queries
    # Where the self-attention's keys and values come from: (layer, q, k, v) with q, k, v (B, H, N, Dh) before
    # rotary → (attention output, all keys, all values). A full-sequence pass concatenates the sinks (this
    # module); a chunk step reads and writes its stream's ring cache (mfruntime/engine/step.py).
    self_attend: Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    # Masks. Full-sequence passes: (1 or B, 1, N, P + N) additive. Chunk steps: key validity (1 or B, P + N)
    # bool, which is what the block-causal mask reduces to for one chunk.
    self_mask: torch.Tensor
    cross_mask: torch.Tensor | None  # as self_mask, over the other stream's keys
    ph: torch.Tensor  # (B, M, dim) phoneme tokens
    ph_rope: torch.Tensor
    ph_mask: torch.Tensor  # (B, 1, N, M) additive, or (B, M) key validity in a chunk step
    # (q, k, v, mask, cis) → output: the cross-modal and phoneme attention, queries rotated by cis first.
    attend: Callable[..., torch.Tensor] = field(default=None)  # type: ignore[assignment]
    write: list = field(default_factory=list)  # filled with (k, v) per layer when committing
    ph_kv: list = field(default_factory=list)  # per layer rotated phoneme keys and values (memoised per chunk)
    # Private to whoever builds or runs the pass (the engine puts the stream's ring cache here as "ring"; a
    # backend's fused layer keeps what it converts once per pass): the network never reads it.
    backend: dict[str, Any] = field(default_factory=dict)

    def phoneme_keys(self, layer: int, blk: StreamBlock, phoneme_kv=StreamBlock.phoneme_kv) -> tuple:
        """Rotated phoneme keys and values of ``layer`` (B, H, M, Dh), made on first use; ``ph_kv`` may be a
        chunk's memo shared by its forwards."""
        if len(self.ph_kv) <= layer:
            kp, vp = phoneme_kv(blk, self.ph)
            self.ph_kv.append((Rotary.rotate(kp, self.ph_rope), vp))
        return self.ph_kv[layer]


class TwinStreamTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        joint = cfg.video is not None and cfg.audio is not None
        self.streams = nn.ModuleDict({
            name: Stream(name, scfg, cfg, cross_modal=joint)
            for name, scfg in (("video", cfg.video), ("audio", cfg.audio)) if scfg is not None
        })
        self.heads = (cfg.video or cfg.audio).heads  # type: ignore[union-attr]
        if cfg.video is not None and cfg.reference_anchor:
            # Std of (frame latent − reference latent) over training clips (set by the video stage), so the
            # video stream models unit-variance changes from the reference frame (see to_residual).
            self.register_buffer("anchor_scale", torch.ones(()))
        self.rotary = Rotary(cfg.head_dim, cfg.rope_time_fraction, cfg.rope_time_min_hz, cfg.rope_time_max_hz)

    @property
    def active(self) -> tuple[str, ...]:
        return tuple(s for s in STREAMS if s in self.streams)

    # --- input checks ------------------------------------------------------------------
    def latent_shape(self, stream: str, chunks: int) -> tuple[int, ...]:
        """Expected latent shape per batch element: video (C, F, Cv, h, w), audio (C, S, Ca)."""
        cfg = self.cfg
        if stream == "video":
            side = cfg.video_codec.latent_size
            return (chunks, cfg.frames_per_chunk, cfg.video_codec.latent_channels, side, side)
        return (chunks, cfg.latent_steps_per_chunk, cfg.audio_codec.latent_channels)

    def check_inputs(self, x: dict[str, torch.Tensor], t: dict, d: dict, name: str = "x") -> tuple[int, int]:
        if set(x) != set(self.active):
            raise ValueError(f"{name} must have exactly the streams {list(self.active)}, got {sorted(x)}")
        batch = chunks = None
        for s, v in x.items():
            if not isinstance(v, torch.Tensor) or not v.is_floating_point():
                raise ValueError(f"{name}[{s!r}] must be a float tensor, got {type(v).__name__} {getattr(v, 'dtype', '')}")
            c = v.shape[1] if v.dim() > 1 else -1
            want = self.latent_shape(s, c)
            if v.dim() != len(want) + 1 or tuple(v.shape[1:]) != want:
                raise ValueError(f"{name}[{s!r}] must be (B, {', '.join(map(str, self.latent_shape(s, 'C')))}), got {tuple(v.shape)}")  # type: ignore[arg-type]
            if batch is not None and (v.shape[0], c) != (batch, chunks):
                raise ValueError(f"all streams need the same batch and chunk count, got {tuple(v.shape[:2])} vs {(batch, chunks)}")
            batch, chunks = v.shape[0], c
        for label, vals in (("t", t), ("d", d)):
            if set(vals) != set(self.active):
                raise ValueError(f"{label} must have exactly the streams {list(self.active)}, got {sorted(vals)}")
        return batch, chunks  # type: ignore[return-value]

    def _per_chunk(self, v, batch: int, chunks: int, device) -> torch.Tensor:
        v = torch.as_tensor(v, dtype=torch.float32, device=device)
        if v.dim() == 0:
            v = v.expand(batch, chunks)
        elif v.dim() == 1 and v.shape[0] == batch:
            v = v[:, None].expand(batch, chunks)
        if tuple(v.shape) != (batch, chunks):
            raise ValueError(f"t and d must be a number, (B,) or (B, C) = ({batch}, {chunks}), got {tuple(v.shape)}")
        return v

    # --- tokens ------------------------------------------------------------------------
    def tokens(self, s: str, x: torch.Tensor) -> torch.Tensor:
        if s == "video":
            return self.streams[s].token_in(patchify(x, self.cfg.patch))
        b, c, n, ch = x.shape
        return self.streams[s].token_in(x.reshape(b, c * n, ch))  # (B, C·S, dim)

    def untokens(self, s: str, y: torch.Tensor, chunks: int) -> torch.Tensor:
        if s == "video":
            vc = self.cfg.video_codec
            return unpatchify(y, chunks, self.cfg.frames_per_chunk, vc.latent_channels, vc.latent_size, vc.latent_size, self.cfg.patch)
        return y.reshape(y.shape[0], chunks, self.cfg.latent_steps_per_chunk, -1)

    def _positions(self, s: str, first: int, chunks: int):
        if s == "video":
            t, r, c = video_positions(self.cfg, first, chunks)
            return t, r, c
        t = audio_positions(self.cfg, first, chunks)
        return t, None, None

    def _instants(self, s: str, first: int, chunks: int) -> torch.Tensor:
        """(C, N) stream time (s, float64) each frame (video) or latent step (audio) of C chunks describes:
        a video frame the middle of its 40 ms, an audio latent frame the end of its hop (its analysis centre)."""
        cfg = self.cfg
        if s == "video":
            n = cfg.frames_per_chunk
            idx = torch.arange(first * n, (first + chunks) * n, dtype=torch.float64)
            return ((idx + 0.5) / cfg.media.fps).reshape(chunks, n)
        n = cfg.latent_steps_per_chunk
        idx = torch.arange(first * n, (first + chunks) * n, dtype=torch.float64)
        return ((idx + 1) / cfg.audio_codec.latent_rate).reshape(chunks, n)

    def _extra(self, s: str, ph: PhonemeWindow | None, first: int, chunks: int, batch: int, dev,
               anchor: torch.Tensor | None) -> torch.Tensor | float:
        """What is added to the latent tokens: frame-aligned phonemes and, for video, the reference anchor."""
        st, extra = self.streams[s], 0.0
        if self.cfg.aligned_phonemes:
            e = st.aligned(ph, self._instants(s, first, chunks), batch, dev)  # (B, C·N, dim), one per frame / step
            if s == "video":
                e = e.repeat_interleave(self.cfg.video_tokens_per_frame, dim=1)  # every token of a frame
            extra = extra + e
        if s == "video" and anchor is not None:
            frames = chunks * self.cfg.frames_per_chunk
            extra = extra + anchor.repeat(1, frames, 1)  # (B, C·F·h·w/p², dim): tokens are frame-major
        return extra

    def tokens_per_chunk(self, s: str) -> int:
        return self.cfg.video_tokens_per_chunk if s == "video" else self.cfg.audio_tokens_per_chunk

    # --- reference anchor -------------------------------------------------------------
    def to_residual(self, video: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        """Video latents (B, C, F, Cv, h, w) → what the video stream generates. With ``reference_anchor`` it is
        the change from the reference frame's latent (B, Cv, h, w), scaled to unit variance,
        x = (z − z_ref) / anchor_scale, so the stream predicts what moves (mouth, blinks, head) and an all-zero
        sample is the reference face itself; without it, z unchanged."""
        if not self.cfg.reference_anchor:
            return video
        return (video - identity[:, None, None]) / self.anchor_scale

    def from_residual(self, x: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_residual`: generated video (B, C, F, Cv, h, w) → latents for the video decoder."""
        if not self.cfg.reference_anchor:
            return x
        return identity[:, None, None] + x * self.anchor_scale

    # --- sinks -------------------------------------------------------------------------
    def make_sinks(self, identity: torch.Tensor | None = None, audio_ref: torch.Tensor | None = None,
                   batch: int | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per-layer sink keys (time-unrotated) and values, (L, B, H, S, Dh) each, per stream.

        identity: video latent of the reference frame (B, Cv, h, w); audio_ref: speaker reference latents
        (B, R, Ca). Missing references use the stream's learned null sink. Sink tokens attend only to
        each other, at noise level 0.
        """
        batch = batch or (identity.shape[0] if identity is not None else audio_ref.shape[0] if audio_ref is not None else 1)
        out = {}
        for s in self.active:
            st = self.streams[s]
            ref = identity if s == "video" else audio_ref
            dev = st.sink_null.device
            if ref is None:
                h = st.sink_null.expand(batch, -1, -1)
            else:
                ref = self._check_ref(s, ref, batch)
                tok = patchify(ref[:, None, None], self.cfg.patch) if s == "video" else ref
                h = st.sink_in(tok)
            if s == "video":
                row, col = grid(self.cfg.video_codec.latent_size // self.cfg.patch)
            else:
                row = col = None
            zeros = torch.zeros(h.shape[1], dtype=torch.float64, device=dev)
            cis = self.rotary.angles(zeros, row, col)[None]  # (1, S, Dh/2)
            c = st.condition(torch.zeros(batch, 1, device=dev), torch.zeros(batch, 1, device=dev))
            ks, vs = [], []
            mask = torch.ones(1, h.shape[1], dtype=torch.bool, device=dev)  # sink tokens see each other
            for blk in st.blocks:
                sh1, sc1, g1, sh2, sc2, g2 = blk.modulation(c)
                q, k, v = blk.project(h, sh1, sc1)
                q, k = Rotary.rotate(q, cis), Rotary.rotate(k, cis)
                ks.append(k)
                vs.append(v)
                h = blk.self_attention(h, masked_attention(q, k, v, mask), g1)
                h = blk.feed_forward(h, sh2, sc2, g2)
            out[s] = (torch.stack(ks), torch.stack(vs))
        if "video" in self.active and self.cfg.reference_anchor:
            st = self.streams["video"]
            if identity is None:
                out["anchor"] = torch.zeros(batch, st.sink_tokens, st.dim, device=st.sink_null.device)
            else:
                out["anchor"] = st.anchor_in(patchify(identity[:, None, None], self.cfg.patch))  # (B, h·w/p², dim)
        return out

    def _check_ref(self, s: str, ref: torch.Tensor, batch: int) -> torch.Tensor:
        cfg = self.cfg
        if s == "video":
            want = (cfg.video_codec.latent_channels, cfg.video_codec.latent_size, cfg.video_codec.latent_size)
        else:
            want = (cfg.audio_ref_steps, cfg.audio_codec.latent_channels)
        if not isinstance(ref, torch.Tensor) or not ref.is_floating_point() or tuple(ref.shape[1:]) != want or ref.shape[0] != batch:
            raise ValueError(f"{'identity latent' if s == 'video' else 'audio reference'} must be a float tensor "
                             f"({batch}, {', '.join(map(str, want))}), got {tuple(getattr(ref, 'shape', ()))}")
        return ref

    def rotated_sink(self, sink_k: torch.Tensor, chunk: torch.Tensor) -> torch.Tensor:
        """Rotate sink keys (L, B, H, S, Dh) to the start time of each chunk in ``chunk`` (C,) → (L, B, H, C·S, Dh)."""
        cfg = self.cfg
        times = chunk_start_time(cfg, chunk.cpu()).to(sink_k.device)  # (C,)
        cis = self.rotary.angles(times).repeat_interleave(sink_k.shape[-2], 0)  # (C·S, Dh/2) time-only
        rep = sink_k.repeat(1, 1, 1, len(chunk), 1)  # (L, B, H, C·S, Dh)
        return Rotary.rotate(rep, cis)

    # --- the layer loop ----------------------------------------------------------------
    def run_layers(self, passes: dict[str, StreamPass], commit: bool, sublayers: dict | None = None,
             fused_layer: Callable[..., bool] | None = None) -> dict[str, torch.Tensor]:
        """The layer loop. ``sublayers``: replacements for block methods by name (a backend's); ``fused_layer``:
        ``(model, layer, passes, commit) → bool``, a backend's whole-layer path (False: run it here)."""
        names = list(passes)
        sub = sublayers or {}
        modulation = sub.get("modulation", StreamBlock.modulation)
        project = sub.get("project", StreamBlock.project)
        self_attention = sub.get("self_attention", StreamBlock.self_attention)
        cross_query = sub.get("cross_query", StreamBlock.cross_query)
        cross_modal_out = sub.get("cross_modal_out", StreamBlock.cross_modal_out)
        phoneme_query = sub.get("phoneme_query", StreamBlock.phoneme_query)
        phoneme_kv = sub.get("phoneme_kv", StreamBlock.phoneme_kv)
        phoneme_out = sub.get("phoneme_out", StreamBlock.phoneme_out)
        feed_forward = sub.get("feed_forward", StreamBlock.feed_forward)
        for layer in range(len(self.streams[names[0]].blocks)):
            if fused_layer is not None and fused_layer(self, layer, passes, commit):
                continue  # the backend ran the whole layer (fused); else it runs sublayer by sublayer below
            keys, values, mods = {}, {}, {}
            for s, p in passes.items():
                blk = self.streams[s].blocks[layer]
                mods[s] = tuple(_per_token(m, p.group) for m in modulation(blk, p.c))
                q, k, v = project(blk, p.h, mods[s][0], mods[s][1])  # (B, H, N, Dh) each, not rotated yet
                a, keys[s], values[s] = p.self_attend(layer, q, k, v)  # keys/values (B, H, P + N, Dh)
                if commit:  # the chunk's rotated keys and values: the last N positions
                    n = k.shape[2]
                    p.write.append((keys[s][:, :, -n:], values[s][:, :, -n:]))
                p.h = self_attention(blk, p.h, a, mods[s][2])
            if len(names) == 2:
                for s, p in passes.items():
                    other = names[1 - names.index(s)]
                    blk = self.streams[s].blocks[layer]
                    a = p.attend(cross_query(blk, p.h), keys[other], values[other], p.cross_mask, p.rope_t)
                    p.h = cross_modal_out(blk, p.h, a)
            for s, p in passes.items():
                blk = self.streams[s].blocks[layer]
                a = p.attend(phoneme_query(blk, p.h), *p.phoneme_keys(layer, blk, phoneme_kv), p.ph_mask, p.rope_t)
                p.h = phoneme_out(blk, p.h, a)
                p.h = feed_forward(blk, p.h, mods[s][3], mods[s][4], mods[s][5])
        return {s: self.streams[s].head(p.h, _per_token(p.c, p.group)) for s, p in passes.items()}

    def _phonemes(self, s: str, ph: PhonemeWindow | None, batch: int, q_chunk: torch.Tensor, first: int, device,
                  full_mask: bool = True):
        """Phoneme tokens, their angles and the mask letting each query see its chunk's window: (B, 1, N, M)
        additive, or for one chunk (``full_mask`` False) the (B, M) key validity, the same for every query."""
        tok, times, valid = self.streams[s].phoneme_tokens(ph, batch, device)
        if not full_mask:
            return tok, self.rotary.angles(times), valid
        # Windows are (B, P) for one chunk or (B, C, P) for C chunks; None leaves only the null token.
        per_chunk = ph.ids.shape[-1] if ph is not None else 0
        chunks_in_ph = 0 if ph is None else (1 if ph.ids.dim() == 2 else ph.ids.shape[1])
        k_chunk = torch.cat([torch.full((1,), -1, device=device),
                             first + torch.arange(chunks_in_ph, device=device).repeat_interleave(per_chunk)])
        allowed = (k_chunk[None, :] == q_chunk[:, None]) | (k_chunk[None, :] == -1)  # (N, M)
        mask = allowed[None] & valid[:, None, :]  # (B, N, M)
        return tok, self.rotary.angles(times), additive_mask(mask[:, None])  # rotations (B, M, Dh/2)

    def chunk_parts(self, s: str, ph: PhonemeWindow | None, first: int, chunks: int, batch: int, dev,
                    anchor: torch.Tensor | None, full_masks: bool = True, teacher: bool = False) -> ChunkParts:
        """What does not depend on the latents or the noise level (:class:`ChunkParts`); the phoneme mask is
        (B, 1, N, M) additive with ``full_masks`` (for [context | input] queries when ``teacher``), else the
        (B, M) key validity a single chunk needs."""
        extra = self._extra(s, ph, first, chunks, batch, dev, anchor)
        tt, rr, cc_ = self._positions(s, first, chunks)
        cis = self.rotary.angles(tt.to(dev), None if rr is None else rr.to(dev), None if cc_ is None else cc_.to(dev))
        cis_t = self.rotary.angles(tt.to(dev))
        tok_chunk = (first + torch.arange(chunks, device=dev)).repeat_interleave(self.tokens_per_chunk(s))
        q_chunk = tok_chunk.repeat(2) if teacher else tok_chunk
        ph_tok, ph_rope, ph_mask = self._phonemes(s, ph, batch, q_chunk, first, dev, full_mask=full_masks)
        return ChunkParts(extra=extra, rope=cis, rope_t=cis_t, ph=ph_tok, ph_rope=ph_rope, ph_mask=ph_mask)

    def conditioning(self, s: str, t, d, batch: int, chunks: int, dev, memo: dict | None = None) -> torch.Tensor:
        """(B, C, dim) noise-level conditioning of stream ``s``; with ``memo`` (a caller's dict, used without
        autograd) it is kept per (stream, t, d) for number-valued t and d. The step size is shown clipped to
        the range the network was trained on (``ModelConfig.max_step_size``): the one place every caller —
        training losses, rollouts, the sampler — passes through."""
        key = (s, float(t), float(d), batch) if memo is not None and isinstance(t, (int, float)) \
            and isinstance(d, (int, float)) else None
        if key is not None and key in memo:  # type: ignore[operator]
            return memo[key]  # type: ignore[index]
        d = self._per_chunk(d, batch, chunks, dev).clamp(max=self.cfg.max_step_size)  # the trained range of d
        c = self.streams[s].condition(self._per_chunk(t, batch, chunks, dev), d)
        if key is not None:
            if len(memo) >= 256:  # type: ignore[arg-type]
                memo.clear()  # type: ignore[union-attr]
            memo[key] = c  # type: ignore[index]
        return c

    def _build(self, x: dict[str, torch.Tensor], t: dict, d: dict, ph: PhonemeWindow | None, first: int,
               context: dict[str, torch.Tensor] | None, sinks) -> dict[str, StreamPass]:
        """Passes for a full-sequence forward: C chunks, each with its own rotated sink copy, block-causal masks."""
        batch, chunks = self.check_inputs(x, t, d)
        if context is not None:
            cb, cc = self.check_inputs(context, t, d, name="context")
            if (cb, cc) != (batch, chunks):
                raise ValueError(f"context must match x in batch and chunks, got {(cb, cc)} vs {(batch, chunks)}")
        dev = next(self.parameters()).device
        chunk_ids = first + torch.arange(chunks, device=dev)
        entries: dict[str, tuple] = {}
        passes: dict[str, StreamPass] = {}
        for s in self.active:
            st, tpc = self.streams[s], self.tokens_per_chunk(s)
            tok_chunk = chunk_ids.repeat_interleave(tpc)
            parts = self.chunk_parts(s, ph, first, chunks, batch, dev, sinks.get("anchor"), full_masks=True,
                                     teacher=context is not None)
            extra, cis, cis_t = parts.extra, parts.rope, parts.rope_t
            h = self.tokens(s, x[s]) + extra
            c = self.conditioning(s, t[s], d[s], batch, chunks, dev)  # (B, C, dim)
            # With a clean context (teacher forcing) the inputs are INPUT tokens that see CONTEXT chunks; without
            # one (plain block-causal pass) each chunk is context for the next.
            q_kind = torch.full_like(tok_chunk, INPUT if context is not None else CONTEXT)
            if context is not None:  # teacher forcing: [clean context | input], context at t = 0
                h = torch.cat([self.tokens(s, context[s]) + extra, h], dim=1)
                zero = torch.zeros(batch, chunks, device=dev)
                c = torch.cat([st.condition(zero, zero), c], dim=1)  # (B, 2C, dim)
                q_kind = torch.cat([torch.full_like(tok_chunk, CONTEXT), q_kind])
                tok_chunk = tok_chunk.repeat(2)
                cis, cis_t = cis.repeat(2, 1), cis_t.repeat(2, 1)
            sink_k, sink_v = sinks[s]  # one sink copy per chunk, rotated to that chunk's start time
            pk = self.rotated_sink(sink_k, chunk_ids)  # (L, B, H, C·S, Dh)
            pv = sink_v.repeat(1, 1, 1, chunks, 1)
            k_chunk = torch.cat([chunk_ids.repeat_interleave(sink_k.shape[-2]), tok_chunk])
            k_kind = torch.cat([torch.full((pk.shape[-2],), SINK, device=dev), q_kind])
            entries[s] = (tok_chunk, q_kind, k_chunk, k_kind, pk, pv)
            passes[s] = StreamPass(h=h, c=c, group=tpc, rope=cis[None], rope_t=cis_t[None],
                                   self_attend=None, self_mask=None, cross_mask=None,  # type: ignore[arg-type]
                                   ph=parts.ph, ph_rope=parts.ph_rope, ph_mask=parts.ph_mask, attend=rotated_attention)
        w = self.cfg.window_chunks
        for s, p in passes.items():
            other = [o for o in passes if o != s]
            q_chunk, q_kind, k_chunk, k_kind, pk, pv = entries[s]
            p.self_mask = self._mask(q_chunk, q_kind, k_chunk, k_kind, w)
            p.self_attend = _sequence_attention(pk, pv, p.rope, p.self_mask)
            if other:
                _, _, ok_chunk, ok_kind, _, _ = entries[other[0]]
                p.cross_mask = self._mask(q_chunk, q_kind, ok_chunk, ok_kind, w)
        return passes

    @staticmethod
    def _mask(q_chunk, q_kind, k_chunk, k_kind, window) -> torch.Tensor:
        return additive_mask(attention_mask(q_chunk, q_kind, k_chunk, k_kind, window)[None, None])  # (1, 1, Nq, Nk)

    # --- public entry points -----------------------------------------------------------
    def forward_sequence(self, x: dict[str, torch.Tensor], t: dict, d: dict, phonemes: PhonemeWindow | None,
                         sinks: dict, context: dict[str, torch.Tensor] | None = None, first_chunk: int = 0) -> dict[str, torch.Tensor]:
        """Velocity for C chunks at once under the block-causal mask.

        x: per stream latents (B, C, ...); t, d: per stream noise level / step size (number, (B,) or (B, C));
        phonemes: windows (B, C, P) for each chunk or None; sinks: from :meth:`make_sinks`;
        context: clean latents of the same chunks for teacher forcing (input chunk c then sees clean chunks
        < c, exactly like the cache at inference) or None (plain block-causal over x).
        """
        passes = self._build(x, t, d, phonemes, first_chunk, context, sinks)
        chunks = next(iter(x.values())).shape[1]
        out = self.run_layers(passes, commit=False)
        n_in = {s: self.tokens_per_chunk(s) * chunks for s in out}
        return {s: self.untokens(s, y[:, -n_in[s]:], chunks) for s, y in out.items()}
