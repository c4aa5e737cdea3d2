"""Latents ↔ tokens, token positions (time in seconds, row, column) and block-causal masks."""
from __future__ import annotations

import torch

from mfruntime.config import ModelConfig

SINK, CONTEXT, INPUT = 2, 0, 1  # key kinds: sink copy, clean context chunk, the chunk being denoised


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """Video latents (B, C, F, Cv, h, w) → tokens (B, C·F·(h/p)·(w/p), Cv·p·p), chunk-major."""
    b, c, f, ch, h, w = x.shape
    x = x.reshape(b, c, f, ch, h // p, p, w // p, p)  # (B, C, F, Cv, h/p, p, w/p, p)
    x = x.permute(0, 1, 2, 4, 6, 3, 5, 7)  # (B, C, F, h/p, w/p, Cv, p, p)
    return x.reshape(b, c * f * (h // p) * (w // p), ch * p * p)


def unpatchify(tokens: torch.Tensor, c: int, f: int, ch: int, h: int, w: int, p: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: (B, C·F·(h/p)·(w/p), Cv·p·p) → (B, C, F, Cv, h, w)."""
    b = tokens.shape[0]
    x = tokens.reshape(b, c, f, h // p, w // p, ch, p, p)  # (B, C, F, h/p, w/p, Cv, p, p)
    x = x.permute(0, 1, 2, 5, 3, 6, 4, 7)  # (B, C, F, Cv, h/p, p, w/p, p)
    return x.reshape(b, c, f, ch, h, w)


def grid(side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column of each token of a side×side grid, row-major (side²,)."""
    r = torch.arange(side).repeat_interleave(side)
    return r, torch.arange(side).repeat(side)


def video_positions(cfg: ModelConfig, first_chunk: int, chunks: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """time (s, float64), row, col of every video token of ``chunks`` chunks starting at ``first_chunk``."""
    side = cfg.video_codec.latent_size // cfg.patch
    frames = torch.arange(first_chunk * cfg.frames_per_chunk, (first_chunk + chunks) * cfg.frames_per_chunk, dtype=torch.float64)
    t = (frames / cfg.media.fps).repeat_interleave(side * side)
    r, c = grid(side)
    n = frames.numel()
    return t, r.repeat(n), c.repeat(n)


def audio_positions(cfg: ModelConfig, first_chunk: int, chunks: int) -> torch.Tensor:
    """time (s, float64) of every audio token."""
    s = cfg.latent_steps_per_chunk
    steps = torch.arange(first_chunk * s, (first_chunk + chunks) * s, dtype=torch.float64)
    return steps / cfg.audio_codec.latent_rate


def chunk_start_time(cfg: ModelConfig, chunk: int | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(chunk, dtype=torch.float64) * cfg.media.chunk_seconds


def attention_mask(q_chunk: torch.Tensor, q_kind: torch.Tensor, k_chunk: torch.Tensor, k_kind: torch.Tensor,
                   window: int) -> torch.Tensor:
    """Block-causal mask (Nq, Nk) bool, True = may attend.

    A query of chunk c attends to: its own sink copy; clean context chunks j with c − W ≤ j < c (the ring
    cache holds exactly these); and the tokens of its own chunk of its own kind (bidirectional inside a
    chunk). With only clean tokens this is the plain block-causal mask; with [context | input] it is
    teacher forcing, where noisy chunk c sees clean chunks before it, as at inference.
    """
    qc, qk = q_chunk[:, None], q_kind[:, None]
    kc, kk = k_chunk[None, :], k_kind[None, :]
    sink = (kk == SINK) & (kc == qc)
    context = (kk == CONTEXT) & (kc < qc) & (kc >= qc - window)
    own = (kc == qc) & (kk == qk)
    return sink | context | own
